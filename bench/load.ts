/**
 * Load time and resident memory of one checkpoint (not a test):
 *
 *   npm run bench:load -- [--model DIR | --synthetic-8b] [--layers 2] [--backend native|reference] [--repeat 3]
 *
 * Each repeat loads the model in a fresh child process (so page cache is the only thing shared between runs:
 * "warm" = the file is already in the page cache, which the first run guarantees for the later ones) and reports
 * wall time of loadModel and the process's resident memory right after it against the checkpoint's tensor bytes.
 * CPU time (user and system, all threads) is reported beside the wall time: on a shared machine the wall time
 * mostly measures the other processes. DYLLM_MMAP=off in the environment measures the read-into-buffers path.
 * `--drop` first evicts the file from the page cache (posix_fadvise DONTNEED via `dd`, best effort) for a cold-ish run.
 */
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { bundledModelPath } from '../src/load/hub.js';
import { syntheticLladaDir } from './synthetic-llada.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    'synthetic-8b': { type: 'boolean', default: false },
    layers: { type: 'string', default: '2' },
    backend: { type: 'string', default: 'native' },
    repeat: { type: 'string', default: '3' },
    drop: { type: 'boolean', default: false },
    child: { type: 'boolean', default: false },
  },
});

const dir = values['synthetic-8b'] ? syntheticLladaDir(Number(values.layers)) : values.model ?? bundledModelPath;

if (values.child) {
  const { loadModel } = await import('../src/models/load-model.js');
  const { selectBackend } = await import('../src/kernels/select.js');
  const backend = selectBackend(values.backend as 'native' | 'reference');
  const rss0 = process.memoryUsage().rss;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const m = loadModel(dir, { backend });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const rss = process.memoryUsage().rss;
  process.stdout.write(JSON.stringify({ ms, user: cpu.user / 1000, sys: cpu.system / 1000, rss, rss0, weightBytes: (m.model as unknown as { weightBytes: number }).weightBytes }) + '\n');
  process.exit(0);
}

const file = join(dir, 'model.safetensors');
let fileBytes = 0;
try {
  fileBytes = statSync(file).size;
} catch {
  process.stderr.write(`bench:load: ${file} not found (for --synthetic-8b run \`npm run bench:step -- --synthetic-8b --layers ${values.layers}\` once)\n`);
  process.exit(1);
}
const self = fileURLToPath(import.meta.url);
const mib = (b: number) => (b / 2 ** 20).toFixed(0);
console.log(`model ${dir} (${mib(fileBytes)} MiB), backend ${values.backend}`);
for (let r = 0; r < Number(values.repeat); r++) {
  if (values.drop && r === 0) spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  const c = spawnSync(process.execPath, [self, '--child', '--backend', values.backend!, ...(values.model ? ['--model', dir] : values['synthetic-8b'] ? ['--synthetic-8b', '--layers', values.layers!] : [])], { encoding: 'utf8' });
  if (c.status !== 0) {
    process.stderr.write(c.stderr);
    process.exit(1);
  }
  const j = JSON.parse(c.stdout.trim().split('\n').pop()!) as { ms: number; user: number; sys: number; rss: number; rss0: number; weightBytes: number };
  console.log(`run ${r + 1}${r === 0 ? (values.drop ? ' (cold-ish)' : ' (first)') : ' (warm)'}: load ${(j.ms / 1000).toFixed(2)} s (CPU: user ${(j.user / 1000).toFixed(2)} s, system ${(j.sys / 1000).toFixed(2)} s), RSS ${mib(j.rss)} MiB (${mib(j.rss0)} before), weights ${mib(j.weightBytes)} MiB, RSS - before = ${((j.rss - j.rss0) / j.weightBytes).toFixed(3)} x weights`);
}

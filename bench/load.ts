/**
 * Load time and resident memory of one checkpoint (not a test):
 *
 *   npm run bench:load -- [--model DIR | --synthetic-8b] [--layers 2] [--backend native|reference] [--repeat 3] [--pack-cache] [--quant Q]
 *
 * Each repeat loads the model in a fresh child process (so page cache is the only thing shared between runs:
 * "warm" = the file is already in the page cache, which the first run guarantees for the later ones) and reports
 * wall time of loadModel and the process's resident memory right after it against the checkpoint's tensor bytes.
 * CPU time (user and system, all threads) is reported beside the wall time: on a shared machine the wall time
 * mostly measures the other processes. DYLLM_MMAP=off in the environment measures the read-into-buffers path.
 * `--drop` first evicts the file from the page cache (posix_fadvise DONTNEED via `dd`, best effort) for a cold-ish run.
 *
 * `--pack-cache` measures the packed-weight cache file (src/load/pack-cache.ts) against loads without it, in one
 * sitting: a load without the cache (which also warms the checkpoint's pages), then a cache load that packs and
 * writes the file (cold: the file does not exist yet), then `--repeat` pairs of a load without the cache and a
 * load that maps the file (warm: it is in the page cache from being written). The file goes to a fresh temporary
 * directory, removed at the end. RSS is split into anonymous memory and mapped file pages (/proc/self/status).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
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
    'pack-cache': { type: 'boolean', default: false },
    quant: { type: 'string', default: 'none' },
    child: { type: 'boolean', default: false },
    cache: { type: 'string' },
  },
});

const dir = values['synthetic-8b'] ? syntheticLladaDir(Number(values.layers)) : values.model ?? bundledModelPath;

/** RssAnon and RssFile of this process (kB lines of /proc/self/status), in bytes; 0 where not available. */
function rssParts(): { anon: number; file: number } {
  try {
    const st = readFileSync('/proc/self/status', 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(st)?.[1] ?? 0) * 1024;
    return { anon: kb('RssAnon'), file: kb('RssFile') + kb('RssShmem') };
  } catch {
    return { anon: 0, file: 0 };
  }
}

interface Result {
  ms: number; user: number; sys: number; rss: number; rss0: number; anon: number; file: number; weightBytes: number;
  cache: { mapped: number; packed: number; written: boolean } | null;
}

if (values.child) {
  const { loadModel } = await import('../src/models/load-model.js');
  const { selectBackend } = await import('../src/kernels/select.js');
  const backend = selectBackend(values.backend as 'native' | 'reference');
  const rss0 = process.memoryUsage().rss;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const m = loadModel(dir, { backend, quant: values.quant as 'none', packCache: values.cache ? { dir: values.cache } : false });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const rss = process.memoryUsage().rss;
  const r: Result = {
    ms, user: cpu.user / 1000, sys: cpu.system / 1000, rss, rss0, ...rssParts(), weightBytes: (m.model as unknown as { weightBytes: number }).weightBytes,
    cache: m.packCache ? { mapped: m.packCache.mapped, packed: m.packCache.packed, written: m.packCache.written } : null,
  };
  process.stdout.write(JSON.stringify(r) + '\n');
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
const modelArgs = values.model ? ['--model', dir] : values['synthetic-8b'] ? ['--synthetic-8b', '--layers', values.layers!] : [];

function child(cache: string | null): Result {
  const c = spawnSync(process.execPath, [self, '--child', '--backend', values.backend!, '--quant', values.quant!, ...modelArgs, ...(cache ? ['--cache', cache] : [])], { encoding: 'utf8' });
  if (c.status !== 0) {
    process.stderr.write(c.stderr);
    process.exit(1);
  }
  if (c.stderr) process.stderr.write(c.stderr);
  return JSON.parse(c.stdout.trim().split('\n').pop()!) as Result;
}

function line(label: string, j: Result): string {
  const split = j.anon || j.file ? ` (anon ${mib(j.anon)}, file ${mib(j.file)})` : '';
  const cache = j.cache ? `, cache: ${j.cache.mapped} mapped, ${j.cache.packed} packed${j.cache.written ? ', file written' : ''}` : '';
  return `${label}: load ${(j.ms / 1000).toFixed(2)} s (CPU: user ${(j.user / 1000).toFixed(2)} s, system ${(j.sys / 1000).toFixed(2)} s), RSS ${mib(j.rss)} MiB${split} (${mib(j.rss0)} before), weights ${mib(j.weightBytes)} MiB, RSS - before = ${((j.rss - j.rss0) / j.weightBytes).toFixed(3)} x weights${cache}`;
}

console.log(`model ${dir} (${mib(fileBytes)} MiB), backend ${values.backend}, quant ${values.quant}, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
if (values['pack-cache']) {
  const cacheDir = mkdtempSync(join(tmpdir(), 'dyllm-bench-pack-'));
  try {
    console.log(line('no cache (first)', child(null)));
    console.log(line('cache, cold: pack + write', child(cacheDir)));
    for (let r = 0; r < Number(values.repeat); r++) {
      console.log(line(`no cache, run ${r + 1}`, child(null)));
      console.log(line(`cache, warm, run ${r + 1}`, child(cacheDir)));
    }
    console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
  process.exit(0);
}
for (let r = 0; r < Number(values.repeat); r++) {
  if (values.drop && r === 0) spawnSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
  console.log(line(`run ${r + 1}${r === 0 ? (values.drop ? ' (cold-ish)' : ' (first)') : ' (warm)'}`, child(null)));
}

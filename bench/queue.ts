/**
 * Queue fan-out benchmark (not a test): `npm run bench:queue` (= tsc -p . && node dist/bench/queue.js).
 *
 * Starts redis-server on a free loopback port (temporary folder, no persistence), then for W = 1, 2, 3 local
 * `dyllm worker` processes runs the same queued eval (`dyllm eval --queue`, one job per problem) and reports
 * problems per minute: wall time from the coordinator's start to its exit, with the workers already loaded. The
 * answers of every W must be identical (greedy). On a machine with fewer cores than workers this shows the
 * mechanism (jobs spread over the workers, results gathered), not speed.
 * Flags: --problems N (24), --workers LIST (1,2,3), --accel M (none), --model DIR (bundled). Prints a markdown
 * table and one JSON line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    problems: { type: 'string', default: '24' },
    workers: { type: 'string', default: '1,2,3' },
    accel: { type: 'string', default: 'none' },
    model: { type: 'string' },
  },
});
const root = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(root, 'bin', 'dyllm.js');
const TASKS = join(root, 'data', 'arith-test.jsonl');
const N = Number(values.problems);
const COUNTS = values.workers.split(',').map(Number);
const model = values.model ?? join(root, 'models', 'dyllm-demo');

interface Proc { child: ChildProcess; out: string; err: string; exited: Promise<number | null> }

function run(cmd: string, args: string[]): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, out: '', err: '', exited: new Promise((r) => child.on('exit', r)) };
  child.stdout!.on('data', (d) => (p.out += d));
  child.stderr!.on('data', (d) => (p.err += d));
  return p;
}

async function waitFor(p: Proc, re: RegExp): Promise<void> {
  for (let t = 0; !re.test(p.out + p.err); t++) {
    if (p.child.exitCode !== null) throw new Error(`exited: ${p.err}`);
    if (t > 3000) throw new Error(`timed out waiting for ${re}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const port = await new Promise<number>((resolve) => {
  const s = createServer();
  s.listen(0, '127.0.0.1', () => {
    const q = (s.address() as { port: number }).port;
    s.close(() => resolve(q));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'dyllm-bench-queue-'));
const redis = run('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no']);
const url = `redis://127.0.0.1:${port}/0`;
const rows: { workers: number; seconds: number; perMin: number; answer: string }[] = [];
try {
  await waitFor(redis, /Ready to accept connections/);
  for (const w of COUNTS) {
    const workers = Array.from({ length: w }, (_, i) => run(process.execPath, [BIN, 'worker', '--queue', url, '--model', model, '--id', `bench-${w}-${i}`]));
    await Promise.all(workers.map((p) => waitFor(p, /taking jobs from queue/)));
    const t0 = performance.now();
    const coord = run(process.execPath, [BIN, 'eval', '--queue', url, '--run-id', `bench-${w}-${Date.now()}`, '--model', model, '--tasks', TASKS, '--chat', '--limit', String(N), '--accel', values.accel, '--json']);
    const code = await coord.exited;
    const seconds = (performance.now() - t0) / 1000;
    if (code !== 0) throw new Error(`eval --queue exited with ${code}: ${coord.err}`);
    const o = JSON.parse(coord.out) as Record<string, unknown>;
    rows.push({ workers: w, seconds, perMin: (N / seconds) * 60, answer: JSON.stringify([o.correct, o.generated_tokens, o.nfe, o.salient_fraction]) });
    const perWorker = workers.map((p) => (p.err.match(/ done in /g) ?? []).length);
    process.stderr.write(`${w} worker(s): ${seconds.toFixed(1)} s, jobs per worker ${perWorker.join('/')}\n`);
    for (const p of workers) p.child.kill('SIGTERM');
    await Promise.all(workers.map((p) => p.exited));
  }
} finally {
  redis.child.kill('SIGTERM');
  await redis.exited;
  rmSync(dir, { recursive: true, force: true });
}
if (new Set(rows.map((r) => r.answer)).size !== 1) throw new Error(`answers differ between worker counts: ${rows.map((r) => r.answer).join(' ')}`);
process.stdout.write(`${N} problems (bundled model, chat template, --accel ${values.accel}), ${cpus().length} cores; same answers for every worker count\n\n`);
process.stdout.write('| workers | wall time (s) | problems/min |\n|---|---|---|\n');
for (const r of rows) process.stdout.write(`| ${r.workers} | ${r.seconds.toFixed(1)} | ${r.perMin.toFixed(1)} |\n`);
process.stdout.write(JSON.stringify({ problems: N, accel: values.accel, cores: cpus().length, rows: rows.map(({ answer: _a, ...r }) => r) }) + '\n');

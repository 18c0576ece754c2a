/**
 * `dyllm eval|bench|generate --queue` and `dyllm worker` against a real Redis: redis-server started here on a
 * free port in a temporary folder, worker and coordinator processes as users run them (bin/dyllm.js), the bundled
 * demo model. A queued run must equal a local evaluation of the same problems token for token (greedy), with no
 * problem missing or answered twice, through a worker killed with SIGKILL mid-job, a coordinator killed and
 * resumed, and Redis itself killed and restarted.
 *
 * redis-server missing is a failure with a one-line message (apt-get install -y redis-server);
 * DYLLM_SKIP_REDIS=1 skips these tests explicitly.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { defaultStops, readTasks, runEval, type EvalMethod, type EvalSummary, type PromptStyle } from '../../src/eval/tasks.js';
import { benchMethods } from '../../src/cli/bench.js';
import { loadConfig } from '../../src/load/config.js';
import { loadPipeline, type Pipeline } from '../../src/engine/pipeline.js';
import { generate } from '../../src/engine/generate.js';
import { encodePrompt, decodeAnswer } from '../../src/engine/pipeline.js';
import { resolveOptions } from '../../src/engine/options.js';
import { resolveAccel } from '../../src/engine/accel.js';
import { modelHash } from '../../src/queue/model-hash.js';
import { readPrompts } from '../../src/queue/generate.js';
import { parseRedisUrl } from '../../src/queue/connection.js';
import { LoadError } from '../../src/load/errors.js';
import { LIMITS, methodSlug, queueName, resultsKey, type EvalResult } from '../../src/queue/protocol.js';
import { repoRoot } from '../helpers/paths.js';

const BIN = join(repoRoot, 'bin', 'dyllm.js');
const DEMO = join(repoRoot, 'models', 'dyllm-demo');
const OTHER_MODEL = join(repoRoot, 'test', 'fixtures', 'llada-tiny');
const TASKS = join(repoRoot, 'data', 'arith-test.jsonl');
const SKIP = process.env.DYLLM_SKIP_REDIS === '1';
const HAVE_REDIS = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
/** Short locks so a killed worker's job is taken over in ~3 s (production defaults: 60 s / 30 s). */
const FAST_LOCKS = ['--lock-ms', '2000', '--stalled-ms', '1000'];
const STYLE: PromptStyle = { chat: true, template: 'Q: {question}\nA:', fewshot: [], stop: defaultStops(true, 'Q: {question}\nA:') };
const T = 120_000;
/** A shorter canvas than the model's 48 (its answers fit in 32): the suite stays quick on a busy 2-core machine. */
const GEN = ['--gen-length', '32', '--steps', '32', '--block-length', '16'];
const GEN_OPTS = { genLength: 32, steps: 32, blockLength: 16 };

if (!SKIP && !HAVE_REDIS) {
  test('the queue tests need redis-server', () => {
    assert.fail('redis-server not found on PATH: install it (apt-get install -y redis-server), or set DYLLM_SKIP_REDIS=1 to skip the queue tests');
  });
}
const skip = SKIP ? 'DYLLM_SKIP_REDIS=1' : HAVE_REDIS ? false : 'redis-server is not installed (see the failing test)';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A child process whose output is kept, line by line. */
class Proc {
  readonly child: ChildProcess;
  out = '';
  err = '';
  readonly exited: Promise<number | null>;

  constructor(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.out += d));
    this.child.stderr!.on('data', (d) => (this.err += d));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Resolves with the first match of `re` in stdout + stderr; rejects on timeout or exit. */
  async waitFor(re: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> {
    const t0 = Date.now();
    let gone = false;
    this.exited.then(() => (gone = true));
    for (;;) {
      const m = (this.out + this.err).match(re);
      if (m) return m;
      if (gone) throw new Error(`process exited before ${re}: ${this.err.slice(-500)}`);
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${re}: ${this.err.slice(-500)}`);
      await sleep(20);
    }
  }

  kill(sig: NodeJS.Signals): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
    return this.exited;
  }
}

/** redis-server on a free loopback port in its own folder: no persistence, or an fsync-always append-only file. */
class RedisServer {
  proc: Proc | null = null;
  constructor(readonly dir: string, readonly port: number, readonly aof: boolean) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async start(): Promise<void> {
    this.proc = new Proc('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '',
      '--appendonly', this.aof ? 'yes' : 'no', '--appendfsync', 'always', '--daemonize', 'no',
    ]);
    await this.proc.waitFor(/Ready to accept connections/, 20_000);
  }

  async stop(sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.proc?.kill(sig);
  }
}

const workerProc = (url: string, id: string, model = DEMO) => new Proc(process.execPath, [BIN, 'worker', '--queue', url, '--id', id, '--model', model, ...FAST_LOCKS]);
const dyllm = (...args: string[]) => new Proc(process.execPath, [BIN, ...args]);

/** Job ids a worker's log says it started / finished. */
const started = (w: Proc) => [...w.err.matchAll(/: (\S+) start \(try \d+\)/g)].map((m) => m[1]);
const finished = (w: Proc) => [...w.err.matchAll(/: (\S+) done in /g)].map((m) => m[1]);

function count(ids: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const id of ids) m.set(id, (m.get(id) ?? 0) + 1);
  return m;
}

async function results(redis: Redis, run: string): Promise<Map<string, EvalResult>> {
  const raw = await redis.hgetall(resultsKey(run));
  return new Map(Object.entries(raw).map(([k, v]) => [k, JSON.parse(v) as EvalResult]));
}

async function waitForResults(redis: Redis, run: string, n: number, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while ((await redis.hlen(resultsKey(run))) < n) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${n} results of ${run}`);
    await sleep(25);
  }
}

/** The JSON line of `dyllm eval --json` without the timing fields. */
function evalJson(stdout: string): Record<string, unknown> {
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, stdout);
  const o = JSON.parse(lines[0]) as Record<string, unknown>;
  delete o.tokens_per_s;
  delete o.gen_seconds;
  return o;
}

/** What a local eval prints as JSON (without timings), for comparison. */
function localJson(s: EvalSummary, p: Pipeline): Record<string, unknown> {
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return { method: s.method, n: s.n, correct: s.correct, accuracy: s.accuracy, strict_correct: s.strictCorrect, strict_accuracy: s.strictAccuracy, chat: true, generated_tokens: s.generatedTokens, nfe: s.nfe, salient_fraction: r3(s.salientFraction), backend: p.model.backend.name };
}

describe('queued runs on a real Redis (bundled model)', { skip, timeout: 5 * T }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-queue-'));
  let server: RedisServer;
  let redis: Redis;
  let p: Pipeline;
  const workers: Proc[] = [];
  let stranger: Proc;
  const tasks = readTasks(TASKS).slice(0, 12);
  const dyllmMethod: EvalMethod = { name: 'dyllm τ=0.99', gen: GEN_OPTS, accel: { method: 'dyllm' } };
  let localDyllm: EvalSummary;

  before(async () => {
    server = new RedisServer(dir, await freePort(), false);
    await server.start();
    redis = new Redis(server.url, { maxRetriesPerRequest: null });
    for (const id of ['w1', 'w2', 'w3']) workers.push(workerProc(server.url, id));
    // A worker with another model: it listens on its own model's queue and must never get these jobs.
    stranger = workerProc(server.url, 'stranger', OTHER_MODEL);
    p = await loadPipeline(DEMO);
    localDyllm = await runEval(p, tasks, STYLE, dyllmMethod, 1);
    await Promise.all([...workers, stranger].map((w) => w.waitFor(/taking jobs from queue/)));
  });

  after(async () => {
    await Promise.all([...workers, stranger].map((w) => w?.kill('SIGKILL')));
    redis?.disconnect();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('bench over 3 workers, one killed with SIGKILL mid-job: the table and every answer equal a local run; each job answered once', { timeout: T }, async () => {
    const limit = 4;
    const run = 'kill-test';
    const victim = workers[2];
    const coord = dyllm('bench', '--queue', server.url, '--run-id', run, '--tasks', TASKS, '--chat', '--limit', String(limit), '--no-parallel', '--out', mkdtempSync(join(tmpdir(), 'dyllm-qbench-')), ...GEN);
    // Kill w3 right after it starts its second job: that job's lock is then never renewed.
    await victim.waitFor(/done in [\s\S]*start \(try \d+\)/);
    await victim.kill('SIGKILL');
    const killedJob = started(victim).at(-1)!;
    assert.ok(!finished(victim).includes(killedJob), `w3 finished ${killedJob} before it was killed`);
    assert.equal(await coord.exited, 0, coord.err);

    // The same matrix computed here, in process, with the local eval's code.
    const { methods } = benchMethods({ 'no-parallel': true, 'gen-length': '32', steps: '32', 'block-length': '16' }, loadConfig(DEMO));
    const local: EvalSummary[] = [];
    for (const m of methods) local.push(await runEval(p, tasks.slice(0, limit), STYLE, m, 1));

    const res = await results(redis, run);
    assert.equal(res.size, limit * methods.length);
    for (const [id, r] of res) {
      const [, t, slug] = /^kill-test\.(\d+)\.(.+)$/.exec(id)!;
      const mi = methods.findIndex((m) => methodSlug(m.name) === slug);
      assert.ok(mi >= 0, id);
      assert.equal(r.ok, true, `${id}: ${JSON.stringify(r)}`);
      assert.deepEqual(r.tokens, local[mi].outputs[Number(t)], `${id}: tokens differ from the local run`);
      assert.equal(r.prediction, local[mi].predictions[Number(t)]);
    }
    // The killed job was taken over by another worker, on a later try.
    const taken = res.get(killedJob)!;
    assert.ok(taken.worker !== 'w3' && taken.attempt >= 2, `${killedJob}: ${JSON.stringify({ worker: taken.worker, attempt: taken.attempt })}`);
    // Each job finished exactly once over all workers; the stranger took none.
    const done = count(workers.flatMap(finished));
    assert.deepEqual([...done.keys()].sort(), [...res.keys()].sort());
    assert.ok([...done.values()].every((n) => n === 1), JSON.stringify([...done]));
    assert.equal(started(stranger).length, 0);

    // Same table as a local bench, apart from the timing columns (tokens/s, speed-up).
    const rows = coord.out.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| method'));
    assert.equal(rows.length, methods.length, coord.out);
    rows.forEach((row, i) => {
      const c = row.split('|').map((x) => x.trim());
      const s = local[i];
      const dense = local[methods[i].dense];
      const same = s.outputs.filter((o, j) => o.length === dense.outputs[j].length && o.every((x, k) => x === dense.outputs[j][k])).length;
      assert.deepEqual([c[1], c[2], c[3], c[4], c[7], c[8], c[9]], [
        s.method, '32', `${(s.accuracy * 100).toFixed(1)} %`, `${(s.strictAccuracy * 100).toFixed(1)} %`, s.salientFraction.toFixed(3), s.nfe.toFixed(1), `${((same / s.n) * 100).toFixed(0)} %`,
      ]);
    });
    assert.ok(coord.out.startsWith(`${limit} problems, gen 32 / block 16, chat template, batch 1, backend ${p.model.backend.name};`), coord.out);
  });

  test('a job that fails deterministically is failed after its attempts, shown in the output; the others are answered', { timeout: T }, async () => {
    const file = join(dir, 'tasks-bad.jsonl');
    const long = 'Tom has 1 apple. '.repeat(200);
    writeFileSync(file, [tasks[0], { question: long, answer: '#### 1' }, tasks[1]].map((t) => JSON.stringify({ question: t.question, answer: t.answer })).join('\n') + '\n');
    const coord = dyllm('eval', '--queue', server.url, '--run-id', 'bad-input', '--tasks', file, '--chat', '--attempts', '2', '--backoff-ms', '50', '--json');
    assert.equal(await coord.exited, 0, coord.err);
    const o = JSON.parse(coord.out) as Record<string, number>;
    assert.equal(o.n, 3);
    assert.equal(o.failed, 1);
    assert.equal(o.generated_tokens, 2 * 48);
    assert.match(coord.err, /dyllm: problem 2 × dense failed after 2 tries: genLength: prompt 0 has \d+ tokens, and \d+ \+ 48 positions exceed the model's maximum sequence length 1024/);
    const res = await results(redis, 'bad-input');
    const failed = res.get('bad-input.1.dense') as unknown as { ok: false; attempts: number };
    assert.equal(failed.ok, false);
    assert.equal(failed.attempts, 2);
    // Two tries, then no more: the workers' logs show exactly two starts.
    assert.equal(count(workers.flatMap(started)).get('bad-input.1.dense'), 2);
  });

  test('a job for another model is refused by the worker, failed at once with a clear message', { timeout: T }, async () => {
    const hash = modelHash(DEMO);
    const q = new Queue(queueName(hash), { connection: { host: '127.0.0.1', port: server.port, maxRetriesPerRequest: null } });
    try {
      await redis.set('dyllm:run:handmade', JSON.stringify({ kind: 'eval', version: 1, run: 'handmade', inputs: 'x', model: 'f'.repeat(64), modelName: 'elsewhere', total: 1, created: '', style: STYLE, methods: [dyllmMethod] }));
      const job = await q.add('eval', { kind: 'eval', run: 'handmade', model: 'f'.repeat(64), task: 0, method: 0, question: tasks[0].question, gold: tasks[0].gold }, { jobId: 'handmade.0.x', attempts: 5 });
      const t0 = Date.now();
      while ((await job.getState()) !== 'failed') {
        assert.ok(Date.now() - t0 < 30_000, 'the job was not failed');
        await sleep(50);
      }
      const j = (await q.getJob('handmade.0.x'))!;
      assert.match(j.failedReason, /^job handmade\.0\.x needs model ffffffffffff, worker w[12] has [0-9a-f]{12} \(.*dyllm-demo\); run a worker with the coordinator's model folder$/);
      assert.equal(j.attemptsMade, 1);
    } finally {
      await q.close();
    }
  });

  test('generate --queue writes every answer in input order, equal to local generation; bad input is one line', { timeout: T }, async () => {
    const input = join(dir, 'prompts.jsonl');
    const output = join(dir, 'answers.jsonl');
    const prompts = [tasks[0].question, tasks[1].question, tasks[2].question];
    writeFileSync(input, `${JSON.stringify({ prompt: prompts[0] })}\n\n${JSON.stringify({ messages: [{ role: 'user', content: prompts[1] }] })}\n${JSON.stringify({ prompt: prompts[2] })}\n`);
    const coord = dyllm('generate', '--queue', server.url, '--input', input, '--output', output, '--accel', 'dyllm');
    assert.equal(await coord.exited, 0, coord.err);
    const lines = readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.index), [0, 1, 2]);
    const options = resolveOptions(p.config, {}, p.generation);
    const accel = resolveAccel(p.config, { method: 'dyllm' }, options);
    for (let i = 0; i < prompts.length; i++) {
      const it = generate(p.model, p.ids, { prompts: [encodePrompt(p, prompts[i], true)], options, accel });
      let r = await it.next();
      while (!r.done) r = await it.next();
      assert.deepEqual(lines[i].tokens, Array.from(r.value.tokens[0]));
      assert.equal(lines[i].text, decodeAnswer(p, r.value.tokens[0]));
      assert.equal(lines[i].stats.accel, 'dyllm');
      assert.equal(lines[i].stats.nfe, 48);
    }
    // Bad input: refused before anything is queued, one line naming the file and line; no output written.
    writeFileSync(input, `${JSON.stringify({ prompt: 'a' })}\n{"prompt": 3}\n`);
    rmSync(output);
    const bad = dyllm('generate', '--queue', server.url, '--input', input, '--output', output);
    assert.equal(await bad.exited, 1);
    assert.equal(bad.err, `dyllm: error: ${input}:2: expected an object with exactly one of "prompt" (a string) or "messages" (a non-empty list of {"role", "content"} strings), found {"prompt":3}\n`);
    const noQueue = dyllm('generate', '--input', input, '--output', output);
    assert.equal(await noQueue.exited, 2);
    assert.match(noQueue.err, /^dyllm: --input\/--output: batch generation runs on queue workers; give --queue URL .*\n$/);
  });

  test('coordinator and workers stopped mid-run: --resume finishes without rerunning finished jobs', { timeout: T }, async () => {
    const args = ['eval', '--queue', server.url, '--tasks', TASKS, '--chat', '--limit', '12', '--accel', 'dyllm', '--json', ...GEN];
    const first = dyllm(...args);
    const run = (await first.waitFor(/dyllm: run (eval-[0-9a-f]{12}):/))[1];
    await waitForResults(redis, run, 4);
    await first.kill('SIGKILL');
    // Stop the workers too (each finishes the job in hand): nothing runs while the run is stopped.
    await Promise.all(workers.map((w) => w.kill('SIGTERM')));
    const before = await results(redis, run);
    assert.ok(before.size >= 4 && before.size < 12, `${before.size} results before the resume`);

    const again = dyllm(...args);
    assert.equal(await again.exited, 2);
    assert.match(again.err, new RegExp(`^dyllm: run ${run} already exists at ${server.url.replace(/[/.]/g, '\\$&')} \\(${before.size}/12 jobs finished\\): add --resume to continue it, or give --run-id NAME for a new run\\n$`), again.err);

    const fresh = workerProc(server.url, 'w4');
    workers.push(fresh);
    await fresh.waitFor(/taking jobs from queue/);
    const resumed = dyllm(...args, '--resume');
    assert.equal(await resumed.exited, 0, resumed.err);
    assert.deepEqual(evalJson(resumed.out), localJson(localDyllm, p));
    // The queue kept the unfinished jobs: the new worker may have run some before the coordinator came back.
    const k = Number(resumed.err.match(new RegExp(`resuming run ${run}: (\\d+)/12 jobs already finished`))?.[1]);
    assert.ok(k >= before.size, resumed.err);
    // The new worker ran exactly the jobs that had no result; over all workers each job finished once.
    assert.deepEqual(finished(fresh).sort(), Array.from({ length: 12 }, (_, i) => `${run}.${i}.dyllm-t0.99`).filter((id) => !before.has(id)).sort());
    const runDone = count(workers.flatMap(finished).filter((id) => id.startsWith(`${run}.`)));
    assert.equal(runDone.size, 12);
    assert.ok([...runDone.values()].every((n) => n === 1));
    const res = await results(redis, run);
    tasks.forEach((_, i) => assert.deepEqual(res.get(`${run}.${i}.dyllm-t0.99`)!.tokens, localDyllm.outputs[i]));
  });
});

describe('Redis restarted mid-run (append-only file)', { skip, timeout: 3 * T }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'dyllm-queue-aof-'));
  let server: RedisServer;
  let redis: Redis;
  const workers: Proc[] = [];

  before(async () => {
    server = new RedisServer(dir, await freePort(), true);
    await server.start();
    redis = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
    redis.on('error', () => {});
    for (const id of ['r1', 'r2']) workers.push(workerProc(server.url, id));
    await Promise.all(workers.map((w) => w.waitFor(/taking jobs from queue/)));
  });

  after(async () => {
    await Promise.all(workers.map((w) => w.kill('SIGKILL')));
    redis?.disconnect();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('workers and coordinator reconnect and the run completes with the local answers', { timeout: T }, async () => {
    const n = 8;
    const coord = dyllm('eval', '--queue', server.url, '--run-id', 'restart', '--tasks', TASKS, '--chat', '--limit', String(n), '--json', ...GEN);
    await waitForResults(redis, 'restart', 2);
    await server.stop('SIGKILL');
    await sleep(500);
    await server.start();
    assert.equal(await coord.exited, 0, coord.err);
    assert.match(coord.err, /coordinator: Redis unreachable \(.*\); reconnecting/);
    assert.match(coord.err, /coordinator: Redis reconnected/);
    assert.ok(workers.some((w) => /Redis reconnected/.test(w.err)));
    const p = await loadPipeline(DEMO);
    const local = await runEval(p, readTasks(TASKS).slice(0, n), STYLE, { name: 'dense', gen: GEN_OPTS, accel: {} }, 1);
    assert.deepEqual(evalJson(coord.out), localJson(local, p));
    const res = await results(redis, 'restart');
    assert.equal(res.size, n);
    for (let i = 0; i < n; i++) assert.deepEqual(res.get(`restart.${i}.dense`)!.tokens, local.outputs[i]);
  });
});

describe('queue flags without a queue, and an unreachable Redis', { timeout: T }, () => {
  test('one-line errors; commands without --queue never import bullmq or ioredis', async () => {
    const r = spawnSync(process.execPath, [BIN, 'eval', '--tasks', TASKS, '--resume'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.equal(r.stderr, 'dyllm: --resume needs --queue URL (it sets how a queued run behaves)\n');
    const u = spawnSync(process.execPath, [BIN, 'eval', '--tasks', TASKS, '--queue', 'http://x'], { encoding: 'utf8' });
    assert.equal(u.status, 2);
    assert.equal(u.stderr, 'dyllm: --queue: expected redis://[USER[:PASSWORD]@]HOST[:PORT][/DB] (or rediss:// for TLS), found the scheme "http:"\n');
    const port = await freePort();
    const down = spawnSync(process.execPath, [BIN, 'eval', '--tasks', TASKS, '--limit', '1', '--queue', `redis://127.0.0.1:${port}/0`], { encoding: 'utf8' });
    assert.equal(down.status, 1);
    assert.match(down.stderr, new RegExp(`^dyllm: error: cannot use Redis at redis://127\\.0\\.0\\.1:${port}/0: .*ECONNREFUSED.* \\(start redis-server there, or fix --queue\\)\\n$`));
    const w = spawnSync(process.execPath, [BIN, 'worker'], { encoding: 'utf8' });
    assert.equal(w.status, 2);
    assert.match(w.stderr, /^dyllm: --queue URL is required/);

    // The static import graph of the CLI reaches neither package: they are imported with --queue only.
    const seen = new Set<string>();
    const bare = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const src = readFileSync(file, 'utf8');
      for (const m of src.matchAll(/^(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)) {
        if (/^import\s+type\s/.test(m[0])) continue;
        const spec = m[1];
        if (spec.startsWith('.')) visit(join(file, '..', spec));
        else bare.add(spec.split('/')[0]);
      }
    };
    visit(join(repoRoot, 'dist', 'src', 'cli', 'main.js'));
    assert.ok(seen.size > 20, `only ${seen.size} modules seen`);
    assert.ok(!bare.has('bullmq') && !bare.has('ioredis'), [...bare].join(', '));
  });
});

describe('inputs a queued run checks before anything is queued', () => {
  test('prompts files: lines, bytes per line and shapes are bounded; each error names the file and line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dyllm-prompts-'));
    try {
      const f = join(dir, 'p.jsonl');
      const err = (text: string): string => {
        writeFileSync(f, text);
        try {
          readPrompts(f);
        } catch (e) {
          assert.ok(e instanceof LoadError && !e.message.includes('\n'), String(e));
          return e.message;
        }
        throw new Error('no error');
      };
      writeFileSync(f, '{"prompt": "a"}\n\n{"messages": [{"role": "user", "content": "b"}]}\n');
      assert.deepEqual(readPrompts(f), ['a', [{ role: 'user', content: 'b' }]]);
      assert.equal(err('\n\n'), `${f}: expected at least one prompt line, found none`);
      assert.equal(err('{"prompt": "a", "extra": 1}\n'), `${f}:1: expected an object with exactly one of "prompt" (a string) or "messages" (a non-empty list of {"role", "content"} strings), found {"prompt":"a","extra":1}`);
      assert.match(err('{"messages": []}\n'), /:1: expected an object with exactly one of/);
      assert.equal(err(`{"prompt": "${'x'.repeat(LIMITS.maxLineBytes)}"}\n`), `${f}:1: expected a line of at most ${LIMITS.maxLineBytes} bytes, found ${LIMITS.maxLineBytes + 14} bytes`);
      assert.equal(err('{"prompt": "a"}\n'.repeat(LIMITS.maxInputLines + 1)), `${f}: expected at most ${LIMITS.maxInputLines} prompts, found more (split it into several runs)`);
      assert.equal(err('{"prompt": "a"}\nnot json\n'), `${f}:2: expected a JSON object {"prompt": "…"} or {"messages": […]}, found text that is not JSON`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Redis URLs: host, port, database; the password never shown', () => {
    const t = parseRedisUrl('redis://:s3cret@example.org:7000/3');
    assert.deepEqual([t.host, t.port, t.db, t.password, t.tls, t.display], ['example.org', 7000, 3, 's3cret', false, 'redis://:***@example.org:7000/3']);
    assert.deepEqual([parseRedisUrl('rediss://h').port, parseRedisUrl('rediss://h').tls, parseRedisUrl('redis://h').db], [6379, true, 0]);
    assert.throws(() => parseRedisUrl('redis://h/x'), /^UsageError: --queue: expected a database number 0\.\.65535 after the port, found "\/x"$/);
    assert.throws(() => parseRedisUrl('localhost:6379'), /--queue: expected redis:\/\//);
  });

  test('model hash: stable, and changed by a weight byte inside a sample, the config, or a file size', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dyllm-hash-'));
    try {
      for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'model.safetensors']) {
        writeFileSync(join(dir, f), readFileSync(join(DEMO, f)));
      }
      const h0 = modelHash(dir);
      assert.match(h0, /^[0-9a-f]{64}$/);
      assert.equal(modelHash(dir), h0);
      assert.equal(modelHash(DEMO), h0);
      const st = join(dir, 'model.safetensors');
      const bytes = readFileSync(st);
      const headerEnd = 8 + Number(bytes.readBigUInt64LE(0));
      bytes[headerEnd] ^= 1; // the first data byte: inside the first sample
      writeFileSync(st, bytes);
      assert.notEqual(modelHash(dir), h0);
      bytes[headerEnd] ^= 1;
      writeFileSync(st, bytes);
      assert.equal(modelHash(dir), h0);
      writeFileSync(join(dir, 'generation_config.json'), readFileSync(join(DEMO, 'generation_config.json'), 'utf8').replace('"steps": 48', '"steps": 24'));
      assert.notEqual(modelHash(dir), h0);
      assert.notEqual(modelHash(OTHER_MODEL), h0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

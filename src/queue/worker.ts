/**
 * `dyllm worker --queue URL`: load a model once, then take jobs from that model's BullMQ queue — eval and bench
 * problems, batch-generation prompts — until SIGTERM/SIGINT (the job in hand is finished first). Any number of
 * workers on any machines that have the model folder can serve one queue.
 *
 * Faults, by the queue's own mechanisms: each job holds a lock the worker renews while it computes (the denoising
 * loop yields to the event loop between steps for that); a worker killed mid-job stops renewing, another worker's
 * stalled-job check puts the job back, and it runs again. A job that throws is retried with backoff up to its
 * attempts and then kept as failed with its error; the worker records that final failure in the run's results. A
 * Redis restart pauses the worker (ioredis reconnects, `maxRetriesPerRequest: null`) and it carries on.
 */
import { hostname } from 'node:os';
import type { Job, Worker as BullWorker } from 'bullmq';
import type { Redis } from 'ioredis';
import { BACKEND_HELP, UsageError, backendName, modelDir as resolveModelArg, parse } from '../cli/args.js';
import { evaluateTasks } from '../eval/tasks.js';
import { answerJson } from '../cli/answer.js';
import { resolveOptions } from '../engine/options.js';
import { resolveAccel } from '../engine/accel.js';
import { encodePrompt, loadPipeline, type Pipeline } from '../engine/pipeline.js';
import { generateAll } from '../engine/generate.js';
import type { BackendName } from '../kernels/select.js';
import type { ChatMessage } from '../load/chat-template.js';
import { checkRedis, connectionOptions, parseRedisUrl, queueLibs, type RedisTarget } from './connection.js';
import { watchConnection } from './coordinator.js';
import { modelHash } from './model-hash.js';
import { queueName, resultsKey, runKey, type EvalJob, type EvalResult, type FailedRecord, type GenerateJob, type GenerateRecord, type JobData, type ResultRecord, type RunSpec } from './protocol.js';

export const WORKER_DEFAULTS = Object.freeze({ lockMs: 60_000, stalledMs: 30_000, maxStalled: 2 });

export const WORKER_HELP = `Usage: dyllm worker --queue URL [options]

Takes eval, bench and batch-generation jobs for its model from a Redis job queue (BullMQ) until SIGTERM or
SIGINT (the job in hand is finished first). Start any number, on any machines that have the model folder;
coordinators are "dyllm eval|bench|generate --queue URL".

  --queue URL         redis://[:PASSWORD@]HOST[:PORT][/DB] (required)
  --model M           model folder, HF id org/name[@rev] or bundled name (default: dyllm-demo); jobs are
                      routed by the model's content hash, so a worker only gets jobs for its own model
  --backend B         ${BACKEND_HELP}
  --id NAME           worker name in results and logs (default HOST-PID)
  --lock-ms N         job lock, renewed while a job runs; one denoising step must take less (default ${WORKER_DEFAULTS.lockMs})
  --stalled-ms N      how often this worker looks for jobs whose worker died (default ${WORKER_DEFAULTS.stalledMs})
  --max-stalled N     times a job may lose its worker before it is failed (default ${WORKER_DEFAULTS.maxStalled})`;

export interface WorkerConfig {
  readonly target: RedisTarget;
  readonly modelDir: string;
  readonly backend: BackendName;
  readonly id: string;
  readonly lockMs: number;
  readonly stalledMs: number;
  readonly maxStalled: number;
}

const MAX_SPECS = 32;

/** Computes jobs on one loaded model; the BullMQ wiring is in runWorker. */
export class JobRunner {
  private readonly specs = new Map<string, RunSpec>();

  constructor(readonly p: Pipeline, readonly hash: string, readonly id: string, private readonly redis: Redis) {}

  private async spec(run: string): Promise<RunSpec> {
    let s = this.specs.get(run);
    if (s) return s;
    const text = await this.redis.get(runKey(run));
    if (text === null) throw new Error(`run ${run} has no spec in Redis (${runKey(run)}); its coordinator records it before adding jobs`);
    s = JSON.parse(text) as RunSpec;
    if (this.specs.size >= MAX_SPECS) this.specs.delete(this.specs.keys().next().value!);
    this.specs.set(run, s);
    return s;
  }

  async run(job: Job<JobData>): Promise<ResultRecord> {
    const d = job.data;
    if (d.model !== this.hash) {
      // Only a job added to this queue by hand can get here: queues are per model hash.
      const { bullmq } = await queueLibs();
      throw new bullmq.UnrecoverableError(`job ${job.id} needs model ${String(d.model).slice(0, 12)}, worker ${this.id} has ${this.hash.slice(0, 12)} (${this.p.dir}); run a worker with the coordinator's model folder`);
    }
    const spec = await this.spec(d.run);
    const prov = { worker: this.id, backend: this.p.model.backend.name, model: this.hash, attempt: job.attemptsStarted };
    let rec: ResultRecord;
    if (d.kind === 'eval' && spec.kind === 'eval') rec = { ...(await this.evalJob(d, spec)), ...prov };
    else if (d.kind === 'generate' && spec.kind === 'generate') rec = { ...(await this.generateJob(d, spec)), ...prov };
    else throw new Error(`job ${job.id} is a ${String(d.kind)} job but run ${d.run} is a ${spec.kind} run`);
    // Keyed by job id: a rerun (this worker dies before BullMQ marks the job done) writes the same field again.
    await this.redis.hset(resultsKey(d.run), String(job.id), JSON.stringify(rec));
    return rec;
  }

  private async evalJob(d: EvalJob, spec: RunSpec & { kind: 'eval' }): Promise<Omit<EvalResult, 'worker' | 'backend' | 'model' | 'attempt'>> {
    const m = spec.methods[d.method];
    if (!m) throw new Error(`run ${d.run} has no method ${d.method}`);
    const c = await evaluateTasks(this.p, [{ question: d.question, answer: '', gold: d.gold }], spec.style, m);
    const t = c.tasks[0];
    return {
      ok: true, kind: 'eval', text: t.text, tokens: t.tokens, prediction: t.prediction, correct: t.correct, strictPrediction: t.strictPrediction, strictCorrect: t.strictCorrect,
      generatedTokens: c.generatedTokens, elapsedMs: c.elapsedMs, nfe: c.nfe, salientFraction: c.salientFraction,
    };
  }

  private async generateJob(d: GenerateJob, spec: RunSpec & { kind: 'generate' }): Promise<Omit<GenerateRecord, 'worker' | 'backend' | 'model' | 'attempt'>> {
    const p = this.p;
    const options = resolveOptions(p.config, spec.gen, p.generation);
    const accel = resolveAccel(p.config, spec.accel, options);
    const chat = typeof d.prompt !== 'string' || spec.chat === 'chat' || (spec.chat === 'auto' && p.chatTemplate !== null);
    const prompt = encodePrompt(p, d.prompt as string | ChatMessage[], chat);
    const r = await generateAll(p.model, p.ids, { prompts: [prompt], options, accel });
    return { ok: true, kind: 'generate', ...answerJson(p, r.tokens[0], r.stats, accel) };
  }
}

/** Runs a worker until SIGTERM/SIGINT; resolves once it has stopped. */
export async function runWorker(cfg: WorkerConfig, log: (s: string) => void = (s) => process.stderr.write(`dyllm worker ${cfg.id}: ${s}\n`)): Promise<void> {
  await checkRedis(cfg.target);
  const p = await loadPipeline(cfg.modelDir, { backend: cfg.backend });
  const hash = modelHash(cfg.modelDir);
  const { bullmq, Redis: RedisClient } = await queueLibs();
  const redis: Redis = new RedisClient(connectionOptions(cfg.target));
  watchConnection(redis, 'results', log);
  const runner = new JobRunner(p, hash, cfg.id, redis);
  let done = 0;
  let failed = 0;
  const name = queueName(hash);
  const worker: BullWorker<JobData, ResultRecord> = new bullmq.Worker<JobData, ResultRecord>(name, async (job) => {
    log(`${job.id} start (try ${job.attemptsStarted})`);
    const t0 = Date.now();
    const r = await runner.run(job);
    done++;
    log(`${job.id} done in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
    return r;
  }, {
    connection: connectionOptions(cfg.target),
    name: cfg.id,
    concurrency: 1,
    lockDuration: cfg.lockMs,
    stalledInterval: cfg.stalledMs,
    maxStalledCount: cfg.maxStalled,
  });
  // Connection loss is reported by the results client (same Redis); other queue errors (a lost lock, …) once per
  // message and minute, so a Redis outage does not flood the log.
  const seen = new Map<string, number>();
  worker.on('error', (e) => {
    const msg = e.message.split('\n')[0];
    if (/ECONNREFUSED|ECONNRESET|Connection is closed|EPIPE|ETIMEDOUT/.test(msg)) return;
    const last = seen.get(msg) ?? 0;
    if (Date.now() - last < 60_000) return;
    if (seen.size >= 100) seen.clear();
    seen.set(msg, Date.now());
    log(`queue error: ${msg}`);
  });
  worker.on('failed', (job, err) => {
    if (!job) return;
    const final = typeof job.finishedOn === 'number';
    log(`${job.id} failed (try ${job.attemptsMade} of ${job.opts.attempts ?? 1}${final ? ', final' : ', will retry'}): ${err.message.split('\n')[0]}`);
    if (!final) return;
    failed++;
    const rec: FailedRecord = { ok: false, error: err.message.split('\n')[0], attempts: job.attemptsMade, worker: cfg.id };
    redis.hsetnx(resultsKey((job.data as JobData).run), String(job.id), JSON.stringify(rec)).catch(() => {});
  });
  await worker.waitUntilReady();
  log(`model ${p.dir} (${hash.slice(0, 12)}, ${p.config.arch}, ${p.model.backend.name}); taking jobs from queue ${name} at ${cfg.target.display}`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => (): void => {
      log(`${sig}: finishing the job in hand, then stopping`);
      worker.close().then(resolve, resolve);
    };
    process.once('SIGTERM', stop('SIGTERM'));
    process.once('SIGINT', stop('SIGINT'));
  });
  await redis.quit().catch(() => redis.disconnect());
  log(`stopped after ${done} job${done === 1 ? '' : 's'}${failed ? ` (${failed} failed for good)` : ''}`);
}

function intFlag(values: Record<string, unknown>, flag: string, min: number, dflt: number): number {
  const v = values[flag];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isSafeInteger(n) || n < min || n > 86_400_000) {
    throw new UsageError(`--${flag}: expected an integer ${min}..86400000, found "${String(v)}"`);
  }
  return n;
}

/** `dyllm worker`'s flags. */
export const WORKER_FLAGS = {
  queue: { type: 'string' },
  model: { type: 'string' },
  backend: { type: 'string' },
  id: { type: 'string' },
  'lock-ms': { type: 'string' },
  'stalled-ms': { type: 'string' },
  'max-stalled': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function cmdWorker(argv: string[]): Promise<void> {
  const { values } = parse(argv, WORKER_FLAGS, false);
  if (values.help) {
    process.stdout.write(WORKER_HELP + '\n');
    return;
  }
  if (values.queue === undefined) throw new UsageError('--queue URL is required (the Redis the coordinators use, e.g. redis://127.0.0.1:6379/0)');
  const target = parseRedisUrl(values.queue);
  const backend = backendName(values.backend);
  const id = values.id ?? `${hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 48)}-${process.pid}`;
  if (typeof id !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new UsageError(`--id: expected 1-64 letters, digits, ".", "_" or "-", found "${String(id)}"`);
  const lockMs = intFlag(values, 'lock-ms', 1000, WORKER_DEFAULTS.lockMs);
  const stalledMs = intFlag(values, 'stalled-ms', 100, WORKER_DEFAULTS.stalledMs);
  const maxStalled = intFlag(values, 'max-stalled', 0, WORKER_DEFAULTS.maxStalled);
  await runWorker({ target, modelDir: resolveModelArg(values.model), backend, id, lockMs, stalledMs, maxStalled });
}

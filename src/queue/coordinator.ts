/**
 * The coordinator side of a queued run: record the run's spec, add its jobs to the model's BullMQ queue (ids are
 * deterministic, so adding a job that exists adds nothing), draw a progress bar over all workers, and collect the
 * results by job id once every job has finished (completed, or failed for good).
 *
 * The coordinator holds no state Redis does not: kill it and start it again with --resume and it picks up where
 * the queue is. Faults are the queue's: a dead worker's job is retried by another (BullMQ's stalled-job check),
 * a failing job is retried with backoff and then kept as failed, and a Redis restart pauses everyone until ioredis
 * reconnects. What the coordinator adds is reconciliation when results stop arriving: a job that failed for good
 * without its worker recording it (the worker died, or the stalled check failed it) is recorded from BullMQ's own
 * record, and a job Redis lost (restarted without persistence) is added again.
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { UsageError } from '../cli/args.js';
import { checkRedis, connectionOptions, queueLibs, type RedisTarget } from './connection.js';
import { LIMITS, queueName, resultsKey, runKey, type JobData, type ResultRecord, type RunSpec } from './protocol.js';

export interface QueuedJob {
  readonly id: string;
  readonly data: JobData;
}

export interface RunRequest {
  readonly target: RedisTarget;
  readonly spec: RunSpec;
  /** Every job of the run, in the order they should start. */
  readonly jobs: readonly QueuedJob[];
  readonly resume: boolean;
  readonly attempts: number;
  readonly backoffMs: number;
  /** Progress bar label. */
  readonly label: string;
  /** What the jobs are, for the line that announces the run ("24 jobs (4 problems × 6 methods)"). */
  readonly what: string;
}

export interface RunOutcome {
  /** By job id: every job of the run. */
  readonly results: ReadonlyMap<string, ResultRecord>;
  /** Distinct workers that produced a result. */
  readonly workers: number;
  /** Wall time from the first poll to the last result (this coordinator's share of the run). */
  readonly wallMs: number;
}

const POLL_MS = 250;
/** Results stalled this long: look for jobs that finished without a result (cheap checks). */
const RECONCILE_MS = 2000;
/** Stalled this long: check every missing job by id, even while the queue has other work. */
const DEEP_RECONCILE_MS = 30_000;
const ADD_CHUNK = 500;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** One line when a client loses Redis and one when it is back, instead of an error per retry. */
export function watchConnection(client: { on(ev: string, f: (...a: unknown[]) => void): unknown }, what: string, log: (s: string) => void): void {
  let down = false;
  client.on('error', (e) => {
    if (down) return;
    down = true;
    log(`${what}: Redis unreachable (${(e as Error).message.split('\n')[0]}); reconnecting`);
  });
  client.on('ready', () => {
    if (!down) return;
    down = false;
    log(`${what}: Redis reconnected`);
  });
}

function progressLine(label: string, done: number, total: number, workers: number | null, rate: number | null): string {
  const w = 30;
  const f = Math.round((done / total) * w);
  return `${label} [${'#'.repeat(f)}${'.'.repeat(w - f)}] ${done}/${total} jobs` +
    `${workers === null ? '' : `, ${workers} worker${workers === 1 ? '' : 's'}`}${rate === null ? '' : `, ${rate.toFixed(1)} jobs/min`}`;
}

/** Runs a queued run to its end and returns every job's result. */
export async function runOnQueue(req: RunRequest, log: (s: string) => void = (s) => process.stderr.write(`dyllm: ${s}\n`)): Promise<RunOutcome> {
  const { target, spec, jobs } = req;
  const total = jobs.length;
  if (total === 0 || total > LIMITS.maxJobs) throw new UsageError(`expected 1..${LIMITS.maxJobs} jobs in one run, found ${total} (use --limit, or fewer methods)`);
  const specText = JSON.stringify(spec);
  if (Buffer.byteLength(specText) > LIMITS.maxSpecBytes) {
    throw new UsageError(`expected a run spec (prompt style with few-shot examples, methods) of at most ${LIMITS.maxSpecBytes} bytes, found ${Buffer.byteLength(specText)} (use fewer or shorter few-shot examples)`);
  }
  await checkRedis(target);
  const { bullmq, Redis: RedisClient } = await queueLibs();
  const redis: Redis = new RedisClient(connectionOptions(target));
  watchConnection(redis, 'coordinator', log);
  const queue: Queue = new bullmq.Queue(queueName(spec.model), { connection: connectionOptions(target) });
  // Connection trouble is reported once by the client above (same Redis); the queue's own copies are dropped.
  queue.on('error', () => {});
  const rk = resultsKey(spec.run);
  let interrupted: string | null = null;
  const onSignal = (sig: string) => () => (interrupted = sig);
  const onInt = onSignal('SIGINT');
  const onTerm = onSignal('SIGTERM');
  process.once('SIGINT', onInt);
  process.once('SIGTERM', onTerm);
  try {
    const existing = await redis.get(runKey(spec.run));
    if (existing !== null) {
      const old = JSON.parse(existing) as RunSpec;
      if (old.inputs !== spec.inputs) {
        throw new UsageError(`--run-id ${spec.run}: that run exists at ${target.display} for other inputs (model, tasks, prompt style or methods); choose another --run-id`);
      }
      if (!req.resume) {
        const done = await redis.hlen(rk);
        throw new UsageError(`run ${spec.run} already exists at ${target.display} (${done}/${total} jobs finished): add --resume to continue it, or give --run-id NAME for a new run`);
      }
    } else {
      if (req.resume) {
        throw new UsageError(`--resume: no run ${spec.run} at ${target.display} (the run id hashes the model, the tasks, the prompt style and the methods: repeat the first run's flags, or give its --run-id)`);
      }
      await redis.set(runKey(spec.run), specText, 'NX');
    }
    const jobOpts = { attempts: req.attempts, backoff: { type: 'exponential', delay: req.backoffMs }, removeOnComplete: false, removeOnFail: false };
    const add = async (list: readonly QueuedJob[]): Promise<void> => {
      for (let i = 0; i < list.length; i += ADD_CHUNK) {
        await queue.addBulk(list.slice(i, i + ADD_CHUNK).map((j) => ({ name: j.data.kind, data: j.data, opts: { ...jobOpts, jobId: j.id } })));
      }
    };
    const finished = new Set(await redis.hkeys(rk));
    const todo = jobs.filter((j) => !finished.has(j.id));
    await add(todo);
    log(`run ${spec.run}: ${req.what} on queue ${queueName(spec.model)} at ${target.display}`);
    if (req.resume) log(`resuming run ${spec.run}: ${total - todo.length}/${total} jobs already finished`);

    const byId = new Map(jobs.map((j) => [j.id, j]));
    const reconcile = async (deep: boolean): Promise<void> => {
      await redis.set(runKey(spec.run), specText, 'NX');
      const have = new Set(await redis.hkeys(rk));
      const missing = jobs.filter((j) => !have.has(j.id)).map((j) => j.id);
      if (missing.length === 0) return;
      const missingSet = new Set(missing);
      const record = async (id: string): Promise<void> => {
        const job = await queue.getJob(id);
        if (!job) {
          await add([byId.get(id)!]);
          return;
        }
        const state = await job.getState();
        if (state === 'failed') {
          const rec: ResultRecord = { ok: false, error: job.failedReason || 'failed', attempts: job.attemptsMade };
          await redis.hsetnx(rk, id, JSON.stringify(rec));
        } else if (state === 'completed' && job.returnvalue) {
          await redis.hsetnx(rk, id, JSON.stringify(job.returnvalue));
        } else if (state === 'unknown') {
          await add([byId.get(id)!]);
        }
      };
      for (const id of await queue.getRanges(['failed'], 0, -1)) if (missingSet.has(id)) await record(id);
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
      const pending = Object.values(c).reduce((a, b) => a + b, 0);
      if (pending === 0 || deep) for (const id of missing) await record(id);
    };

    const tty = process.stderr.isTTY === true;
    const t0 = Date.now();
    let done = finished.size;
    const startDone = done;
    let lastChange = Date.now();
    let lastReconcile = Date.now();
    let lastDeep = Date.now();
    let workers: number | null = null;
    let lastWorkers = 0;
    let lastLine = 0;
    let lastDecile = -1;
    const show = (final: boolean): void => {
      const rate = done > startDone ? ((done - startDone) / (Date.now() - t0)) * 60_000 : null;
      const line = progressLine(req.label, done, total, workers, rate);
      if (tty) {
        process.stderr.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
        return;
      }
      // Not a terminal: a plain line per tenth of the run (or every 30 s), and the last one.
      const decile = Math.floor((done / total) * 10);
      if (final || decile > lastDecile || Date.now() - lastLine > 30_000) {
        process.stderr.write(line + '\n');
        lastDecile = decile;
        lastLine = Date.now();
      }
    };
    while (done < total) {
      if (interrupted !== null) {
        throw new Error(`${interrupted}: stopped watching run ${spec.run} at ${done}/${total} jobs; its queued jobs keep running on the workers: repeat the command with --resume to collect them`);
      }
      const now = Date.now();
      if (now - lastWorkers > 2000) {
        lastWorkers = now;
        workers = await queue.getWorkersCount().catch(() => workers);
      }
      show(false);
      await sleep(POLL_MS);
      const n = await redis.hlen(rk);
      if (n !== done) {
        done = n;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > RECONCILE_MS && Date.now() - lastReconcile > RECONCILE_MS) {
        const deep = Date.now() - lastDeep > DEEP_RECONCILE_MS;
        await reconcile(deep);
        lastReconcile = Date.now();
        if (deep) lastDeep = lastReconcile;
        done = await redis.hlen(rk);
      }
    }
    show(true);
    const raw = await redis.hgetall(rk);
    const results = new Map<string, ResultRecord>();
    const who = new Set<string>();
    for (const j of jobs) {
      const text = raw[j.id];
      let rec: ResultRecord = text === undefined ? { ok: false, error: 'no result recorded', attempts: 0 } : JSON.parse(text) as ResultRecord;
      if (rec.ok && rec.model !== spec.model) {
        rec = { ok: false, error: `computed by worker ${rec.worker} with model ${rec.model.slice(0, 12)}, not the run's ${spec.model.slice(0, 12)}`, attempts: rec.attempt, worker: rec.worker };
      }
      if (rec.ok) who.add(rec.worker);
      results.set(j.id, rec);
    }
    return { results, workers: who.size, wallMs: Date.now() - t0 };
  } finally {
    process.removeListener('SIGINT', onInt);
    process.removeListener('SIGTERM', onTerm);
    redis.disconnect();
    // Bounded: with Redis gone, close() would wait for it; the timer must not hold the process open either.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([queue.close().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
}

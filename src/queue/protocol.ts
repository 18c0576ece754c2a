/**
 * What coordinators and workers exchange through Redis, and where it lives.
 *
 * - One BullMQ queue per model content hash (`dyllm-<first 16 hex digits>`): a worker listens only on its own
 *   model's queue, so a job never reaches a worker with a different model (and a worker still checks each job).
 * - A run (one `eval`, `bench` or `generate --queue` invocation) is a spec at `dyllm:run:<id>` (prompt style,
 *   methods or generation options: what every job of the run shares) and one job per problem × method, or per
 *   prompt. Job ids are `<run>.<index>[.<method>]`, so resubmitting a run adds nothing that exists.
 * - Results go to the hash `dyllm:run:<id>:results`, keyed by job id: a job that runs twice (its worker died after
 *   it wrote its result) overwrites the same field with the same answer, so nothing is counted twice.
 */
import type { GenerateOptionsInput } from '../engine/options.js';
import type { AccelOptionsInput } from '../engine/accel.js';
import type { EvalMethod, PromptStyle } from '../eval/tasks.js';
import type { ChatMessage } from '../load/chat-template.js';

/** Bounds on what one run may ask for; every size is checked before anything is sent to Redis. */
export const LIMITS = Object.freeze({
  /** Jobs per run (problems × methods, or prompts). */
  maxJobs: 100_000,
  /** Lines of a --input file. */
  maxInputLines: 100_000,
  /** Bytes of one --input line (and of one task's question). */
  maxLineBytes: 1 << 20,
  /** Bytes of a --input file. */
  maxInputBytes: 256 << 20,
  /** Bytes of a run's spec (prompt style with its few-shot examples, methods). */
  maxSpecBytes: 16 << 20,
  /** Tries per job. */
  maxAttempts: 100,
  /** First retry delay (ms). */
  maxBackoffMs: 3_600_000,
});

export const RUN_ID = /^[A-Za-z0-9_-]{1,64}$/;

export const queueName = (modelHash: string): string => `dyllm-${modelHash.slice(0, 16)}`;
export const runKey = (run: string): string => `dyllm:run:${run}`;
export const resultsKey = (run: string): string => `dyllm:run:${run}:results`;

interface SpecBase {
  readonly version: 1;
  readonly run: string;
  /** sha256 of the run's inputs: a run id reused for other inputs is refused. */
  readonly inputs: string;
  readonly model: string;
  /** The coordinator's model folder, for messages only. */
  readonly modelName: string;
  readonly total: number;
  readonly created: string;
}

export interface EvalSpec extends SpecBase {
  readonly kind: 'eval';
  readonly style: PromptStyle;
  readonly methods: readonly EvalMethod[];
}

/** How a --input prompt is encoded: the chat template when the model has one (auto), always (chat), never (raw). */
export type ChatMode = 'auto' | 'chat' | 'raw';

export interface GenerateSpec extends SpecBase {
  readonly kind: 'generate';
  readonly chat: ChatMode;
  readonly gen: GenerateOptionsInput;
  readonly accel: AccelOptionsInput;
}

export type RunSpec = EvalSpec | GenerateSpec;

export interface EvalJob {
  readonly kind: 'eval';
  readonly run: string;
  readonly model: string;
  readonly task: number;
  readonly method: number;
  readonly question: string;
  readonly gold: string;
}

export interface GenerateJob {
  readonly kind: 'generate';
  readonly run: string;
  readonly model: string;
  readonly index: number;
  readonly prompt: string | readonly ChatMessage[];
}

export type JobData = EvalJob | GenerateJob;

/** Who computed a result, and on which try. */
interface Provenance {
  readonly worker: string;
  readonly backend: string;
  readonly model: string;
  readonly attempt: number;
}

export interface EvalResult extends Provenance {
  readonly ok: true;
  readonly kind: 'eval';
  readonly text: string;
  readonly tokens: readonly number[];
  readonly prediction: string | null;
  readonly correct: boolean;
  /** Strict-match's answer (absent from a worker older than strict-match: then not correct). */
  readonly strictPrediction?: string | null;
  readonly strictCorrect?: boolean;
  readonly generatedTokens: number;
  readonly elapsedMs: number;
  readonly nfe: number;
  readonly salientFraction: number;
}

export interface GenerateRecord extends Provenance {
  readonly ok: true;
  readonly kind: 'generate';
  readonly text: string;
  readonly tokens: readonly number[];
  /** As `dyllm generate --json` reports them. */
  readonly stats: Record<string, unknown>;
}

/** A job that failed for good (its tries used up, or refused): the last error. */
export interface FailedRecord {
  readonly ok: false;
  readonly error: string;
  readonly attempts: number;
  readonly worker?: string;
}

export type ResultRecord = EvalResult | GenerateRecord | FailedRecord;

/** A method name as a job-id part: "DyLLM τ=0.99 +parallel 0.9" -> "dyllm-t0.99-parallel-0.9". */
export function methodSlug(name: string): string {
  const s = name.toLowerCase().replace(/τ=/g, 't').replace(/[^a-z0-9.]+/g, '-').replace(/^-+|-+$/g, '');
  return s === '' ? 'm' : s;
}

/** Distinct id parts for a run's methods, in order (a repeated slug gets its index appended). */
export function methodSlugs(names: readonly string[]): string[] {
  const seen = new Set<string>();
  return names.map((n, i) => {
    let s = methodSlug(n);
    if (seen.has(s)) s = `${s}-${i}`;
    seen.add(s);
    return s;
  });
}

/** A coordinator's queue flags (flags.ts) as checked values, and the run id derived from a run's inputs. */
import { createHash } from 'node:crypto';
import { UsageError } from '../cli/args.js';
import { parseRedisUrl, type RedisTarget } from './connection.js';
import { LIMITS, RUN_ID } from './protocol.js';

export interface QueueSettings {
  readonly target: RedisTarget;
  readonly runId: string | undefined;
  readonly resume: boolean;
  readonly attempts: number;
  readonly backoffMs: number;
}

function intIn(values: Record<string, unknown>, flag: string, min: number, max: number, dflt: number): number {
  const v = values[flag];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag}: expected an integer ${min}..${max}, found "${String(v)}"`);
  }
  return n;
}

export function queueSettings(values: Record<string, unknown>): QueueSettings {
  const target = parseRedisUrl(values.queue);
  const runId = values['run-id'];
  if (runId !== undefined && (typeof runId !== 'string' || !RUN_ID.test(runId))) {
    throw new UsageError(`--run-id: expected 1-64 letters, digits, "_" or "-", found "${String(runId)}"`);
  }
  if (values.backend !== undefined) {
    throw new UsageError('--backend: with --queue the workers compute, each with its own backend (dyllm worker --backend B)');
  }
  if (values.quant !== undefined) {
    throw new UsageError('--quant: with --queue the workers load the model; write a quantised folder (dyllm quantize IN OUT --quant Q) and give it as --model to the coordinator and the workers');
  }
  return {
    target,
    runId: runId as string | undefined,
    resume: values.resume === true,
    attempts: intIn(values, 'attempts', 1, LIMITS.maxAttempts, 3),
    backoffMs: intIn(values, 'backoff-ms', 0, LIMITS.maxBackoffMs, 2000),
  };
}

/** sha256 of a run's inputs (hex); a run id is its kind plus the first 12 digits unless --run-id names it. */
export function inputsHash(inputs: unknown): string {
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex');
}

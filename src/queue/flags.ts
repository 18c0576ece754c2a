/**
 * The flags a coordinator command (`dyllm eval|bench|generate --queue`) adds, and their help. Kept apart from the
 * rest of src/queue so the commands can declare them without loading a Redis client.
 */
import { UsageError } from '../cli/args.js';

export const QUEUE_FLAGS = {
  queue: { type: 'string' },
  'run-id': { type: 'string' },
  resume: { type: 'boolean' },
  attempts: { type: 'string' },
  'backoff-ms': { type: 'string' },
} as const;

export const QUEUE_HELP = `Fan-out over a Redis job queue (BullMQ; start workers with "dyllm worker --queue URL --model M"):
  --queue URL             redis://[:PASSWORD@]HOST[:PORT][/DB]: one job per problem × method (eval, bench) or
                          per prompt (generate), computed by the workers
  --run-id ID             name the run (default: a hash of the model, the inputs and the methods)
  --resume                continue a stopped run: finished jobs are kept, the rest run
  --attempts N            tries per job before it is recorded as failed (default 3)
  --backoff-ms N          first retry delay, doubled per retry (default 2000)`;

/** Queue flags given without --queue are mistakes, not silently ignored. */
export function refuseQueueFlagsWithoutQueue(values: Record<string, unknown>): void {
  if (values.queue !== undefined) return;
  for (const f of ['run-id', 'resume', 'attempts', 'backoff-ms']) {
    if (values[f] !== undefined) throw new UsageError(`--${f} needs --queue URL (it sets how a queued run behaves)`);
  }
}

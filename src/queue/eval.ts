/**
 * `dyllm eval|bench --queue`: the problems × methods of an eval or bench become jobs on the model's queue; the
 * results are summarised by the same code as a local run (summarize in cli/eval.ts), so the table and JSON have
 * the same format. Each job is one problem with one method: a local eval with --batch 1 computes the same calls.
 */
import { LoadError } from '../load/errors.js';
import { UsageError } from '../cli/args.js';
import { summarize, type CallOutcome, type EvalInputs, type EvalMethod, type EvalSummary } from '../eval/tasks.js';
import { runOnQueue, type QueuedJob } from './coordinator.js';
import { modelHash } from './model-hash.js';
import { LIMITS, methodSlugs, type EvalJob, type EvalSpec } from './protocol.js';
import { inputsHash, queueSettings } from './settings.js';

export interface QueuedEval {
  /** One summary per method, in the order given. */
  readonly summaries: EvalSummary[];
  /** The workers' backend (several joined with "+"). */
  readonly backend: string;
}

const MAX_FAILURE_LINES = 20;

export async function queuedEval(values: Record<string, unknown>, inputs: EvalInputs, methods: readonly EvalMethod[], command: 'eval' | 'bench'): Promise<QueuedEval> {
  const q = queueSettings(values);
  if (inputs.batch !== 1) throw new UsageError('--batch: each queued job is one problem; drop --batch with --queue');
  const total = inputs.tasks.length * methods.length;
  if (total > LIMITS.maxJobs) throw new UsageError(`expected at most ${LIMITS.maxJobs} jobs (problems × methods) in one run, found ${total}; use --limit`);
  inputs.tasks.forEach((t, i) => {
    const bytes = Buffer.byteLength(t.question) + Buffer.byteLength(t.gold);
    if (bytes > LIMITS.maxLineBytes) throw new LoadError(`task ${i + 1}`, `a question of at most ${LIMITS.maxLineBytes} bytes`, `${bytes} bytes`, 'shorten it or leave it out');
  });
  const model = modelHash(inputs.dir);
  const inputsDigest = inputsHash({ command, model, tasks: inputs.tasks.map((t) => [t.question, t.answer]), style: inputs.style, methods });
  const run = q.runId ?? `${command}-${inputsDigest.slice(0, 12)}`;
  const spec: EvalSpec = {
    kind: 'eval', version: 1, run, inputs: inputsDigest, model, modelName: inputs.dir, total, created: new Date().toISOString(),
    style: inputs.style, methods,
  };
  const slugs = methodSlugs(methods.map((m) => m.name));
  const id = (t: number, m: number) => `${run}.${t}.${slugs[m]}`;
  const jobs: QueuedJob[] = [];
  // Problem-major, so a partial run has every method on its first problems.
  inputs.tasks.forEach((t, ti) => methods.forEach((_, mi) => {
    const data: EvalJob = { kind: 'eval', run, model, task: ti, method: mi, question: t.question, gold: t.gold };
    jobs.push({ id: id(ti, mi), data });
  }));
  const out = await runOnQueue({
    target: q.target, spec, jobs, resume: q.resume, attempts: q.attempts, backoffMs: q.backoffMs,
    label: methods.length === 1 ? methods[0].name : command,
    what: `${total} jobs (${inputs.tasks.length} problems × ${methods.length} method${methods.length === 1 ? '' : 's'})`,
  });
  const backends = new Set<string>();
  let failures = 0;
  const summaries = methods.map((m, mi) => {
    const calls: (CallOutcome | null)[] = inputs.tasks.map((_, ti) => {
      const r = out.results.get(id(ti, mi))!;
      if (!r.ok || r.kind !== 'eval') {
        if (failures++ < MAX_FAILURE_LINES) {
          process.stderr.write(`dyllm: problem ${ti + 1} × ${m.name} failed${r.ok ? ': not an eval result' : ` after ${r.attempts} tr${r.attempts === 1 ? 'y' : 'ies'}: ${r.error}`}\n`);
        }
        return null;
      }
      backends.add(r.backend);
      return {
        tasks: [{ text: r.text, tokens: r.tokens, prediction: r.prediction, correct: r.correct, strictPrediction: r.strictPrediction ?? null, strictCorrect: r.strictCorrect === true }],
        generatedTokens: r.generatedTokens, elapsedMs: r.elapsedMs, nfe: r.nfe, salientFraction: r.salientFraction,
      };
    });
    return summarize(m.name, calls);
  });
  if (failures > MAX_FAILURE_LINES) process.stderr.write(`dyllm: … and ${failures - MAX_FAILURE_LINES} more failed jobs\n`);
  const perMin = (total / Math.max(out.wallMs, 1)) * 60_000;
  process.stderr.write(`dyllm: run ${run}: ${total - failures}/${total} jobs answered by ${out.workers} worker${out.workers === 1 ? '' : 's'}` +
    `${failures ? `, ${failures} failed` : ''}; ${(out.wallMs / 1000).toFixed(1)} s watched, ${perMin.toFixed(1)} jobs/min\n`);
  return { summaries, backend: [...backends].sort().join('+') || 'none' };
}

/**
 * Evaluation on a GSM8K-format task file, independent of any front end: the tasks, the prompt built for each
 * (raw template, few-shot, or the model's chat template), the answer extracted from the response and the per-method
 * summary (accuracy, throughput, NFE, salient fraction). `dyllm eval` / `dyllm bench` (cli/) and the queue workers
 * (queue/) both call evaluateTasks, so a queued run computes exactly what a local one does.
 *
 * Tasks are JSONL lines {"question", "answer" ending "#### N"}. As lm-eval's gsm8k task does
 * (EleutherAI/lm-evaluation-harness, lm_eval/tasks/gsm8k/gsm8k.yaml): the response is cut at the first stop string
 * (`until`), then scored two ways against the number after "####": strict-match (the first `#### N`, regex
 * `#### (\-?[0-9\.\,]+)`) and flexible-extract (the last number in the response). Flexible-extract is the
 * headline `accuracy` everywhere (eval, bench, queue); strict-match is reported beside it. Throughput counts
 * generated tokens only (Σ stats.generatedTokens ÷ Σ generation time).
 */
import { readFileSync } from 'node:fs';
import { LoadError } from '../load/errors.js';
import { resolveOptions, type GenerateOptions } from '../engine/options.js';
import { decodeAnswer, encodePrompt, type Pipeline } from '../engine/pipeline.js';
import { generateAll } from '../engine/generate.js';
import { resolveAccel, type AccelOptions, type AccelOptionsInput } from '../engine/accel.js';
import { accelMethod } from '../engine/accel/registry.js';
import type { GenerateOptionsInput } from '../engine/options.js';
import type { BackendName } from '../kernels/select.js';
import type { ChatMessage } from '../load/chat-template.js';

export const DEFAULT_TEMPLATE = 'Q: {question}\nA:';

/** lm-eval gsm8k's `until` (lm_eval/tasks/gsm8k/gsm8k.yaml): a response is cut at the first of these. */
export const LM_EVAL_STOP: readonly string[] = ['Question:', '</s>', '<|im_end|>'];

/** Stop strings per prompt, and bytes per stop string (a user's --stop). */
export const MAX_STOPS = 32;
export const MAX_STOP_BYTES = 256;

/**
 * The default stop strings for a prompt style: lm-eval's, plus the raw template's few-shot separator (the blank
 * line and the template's text before {question}, e.g. "\n\nQ:"), where a raw-prompted model starts the next
 * question itself.
 */
export function defaultStops(chat: boolean, template: string): string[] {
  const out = [...LM_EVAL_STOP];
  const head = template.split('{question}')[0].trimEnd();
  if (!chat && head !== '') out.push(`\n\n${head}`);
  return out;
}

/** The response up to (not including) the earliest stop string found in it. */
export function cutAtStop(text: string, stops: readonly string[]): string {
  let end = text.length;
  for (const s of stops) {
    if (s === '') continue;
    const i = text.indexOf(s);
    if (i >= 0 && i < end) end = i;
  }
  return text.slice(0, end);
}

export interface Task {
  readonly question: string;
  readonly answer: string;
  /** The gold number (after "####", commas removed). */
  readonly gold: string;
}

/** Read a GSM8K-format JSONL file; a bad line is a LoadError naming the file and line. */
export function readTasks(file: string): Task[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new LoadError(file, 'a readable JSONL task file', (e as NodeJS.ErrnoException).code ?? 'an unreadable file');
  }
  const out: Task[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${file}:${i + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new LoadError(where, 'a JSON object {"question", "answer"}', 'text that is not JSON');
    }
    const o = obj as Record<string, unknown>;
    if (typeof o !== 'object' || o === null || typeof o.question !== 'string' || typeof o.answer !== 'string') {
      throw new LoadError(where, 'a JSON object with string fields "question" and "answer"', JSON.stringify(obj).slice(0, 60));
    }
    const m = /####\s*(.+?)\s*$/.exec(o.answer);
    if (!m) throw new LoadError(where, 'an "answer" ending "#### N"', JSON.stringify(o.answer.slice(-40)));
    out.push({ question: o.question, answer: o.answer, gold: normalizeNumber(m[1]) });
  });
  if (out.length === 0) throw new LoadError(file, 'at least one task line', 'an empty file');
  return out;
}

/** lm-eval's exact_match normalisation for gsm8k: drop "," and "$", a trailing ".", surrounding space. */
export function normalizeNumber(s: string): string {
  return s.replace(/[,$]/g, '').replace(/\.$/, '').trim();
}

/** lm-eval gsm8k strict-match: the first `#### N` (regex `#### (\-?[0-9\.\,]+)`, take_first); null when none. */
export function extractStrict(response: string): string | null {
  const m = /#### (-?[0-9.,]+)/.exec(response);
  return m ? normalizeNumber(m[1]) : null;
}

/** lm-eval gsm8k flexible-extract: the last match of (-?[$0-9.,]{2,})|(-?[0-9]+); null when none. */
export function extractAnswer(response: string): string | null {
  const re = /(-?[$0-9.,]{2,})|(-?[0-9]+)/g;
  let last: string | null = null;
  for (let m = re.exec(response); m; m = re.exec(response)) last = m[1] ?? m[2];
  return last === null ? null : normalizeNumber(last);
}

export interface PromptStyle {
  readonly chat: boolean;
  readonly template: string;
  readonly fewshot: readonly Task[];
  /** The response is cut at the first of these before extraction (defaultStops unless the user gave --stop). */
  readonly stop: readonly string[];
}

/** Prompt ids for one task: few-shot examples before the question, through the template or as chat turns. */
export function buildPrompt(p: Pipeline, task: Task, style: PromptStyle): number[] {
  const fill = (q: string) => style.template.split('{question}').join(q);
  if (style.chat) {
    const msgs: ChatMessage[] = [];
    for (const ex of style.fewshot) msgs.push({ role: 'user', content: ex.question }, { role: 'assistant', content: ex.answer });
    msgs.push({ role: 'user', content: task.question });
    return encodePrompt(p, msgs, true);
  }
  const parts = style.fewshot.map((ex) => `${fill(ex.question)} ${ex.answer}`);
  parts.push(fill(task.question));
  return encodePrompt(p, parts.join('\n\n'), false);
}

/** A method to evaluate: generation options plus acceleration options (DyLLM's or a baseline's). */
export interface EvalMethod {
  readonly name: string;
  readonly gen: GenerateOptionsInput;
  readonly accel: AccelOptionsInput;
}

export interface EvalSummary {
  readonly method: string;
  readonly n: number;
  /** Flexible-extract (the headline). */
  readonly correct: number;
  readonly accuracy: number;
  /** Strict-match (`#### N`). */
  readonly strictCorrect: number;
  readonly strictAccuracy: number;
  readonly generatedTokens: number;
  readonly genSeconds: number;
  readonly tokensPerS: number;
  /** Mean NFE per generate call. */
  readonly nfe: number;
  /** Mean salient (FFN-recomputed) fraction over the calls, weighted by prompts. */
  readonly salientFraction: number;
  readonly outputs: readonly (readonly number[])[];
  readonly predictions: readonly (string | null)[];
  /** Tasks whose queued job failed for good (counted in n, not correct); absent when none. */
  readonly failed?: number;
}

/** Resolve a method's options for this model, and its display label (config.json and generation_config.json only). */
export function requestFor(p: Pick<Pipeline, 'config' | 'generation'>, m: EvalMethod): { options: GenerateOptions; accel: AccelOptions; label: string } {
  const options = resolveOptions(p.config, m.gen, p.generation);
  const accel = resolveAccel(p.config, m.accel, options);
  return { options, accel, label: accelMethod(accel.method).label(accel) };
}

/** One task's answer from one generate call. */
export interface TaskOutcome {
  /** The response cut at the first stop string. */
  readonly text: string;
  readonly tokens: readonly number[];
  /** Flexible-extract's answer and whether it is the gold number. */
  readonly prediction: string | null;
  readonly correct: boolean;
  /** Strict-match's. */
  readonly strictPrediction: string | null;
  readonly strictCorrect: boolean;
}

/** Score one response: cut at the stop strings, then both extractions against the gold number. */
export function scoreResponse(response: string, gold: string, stop: readonly string[]): Omit<TaskOutcome, 'tokens'> {
  const text = cutAtStop(response, stop);
  const prediction = extractAnswer(text);
  const strictPrediction = extractStrict(text);
  return { text, prediction, correct: prediction !== null && prediction === gold, strictPrediction, strictCorrect: strictPrediction !== null && strictPrediction === gold };
}

/** One generate call over a few tasks (a batch): each task's answer and the call's statistics. */
export interface CallOutcome {
  readonly tasks: readonly TaskOutcome[];
  readonly generatedTokens: number;
  readonly elapsedMs: number;
  readonly nfe: number;
  readonly salientFraction: number;
}

/**
 * Evaluate tasks with one method on a loaded pipeline, in one generate call (the tasks are its batch). The local
 * loop (runEval) and the queue worker (src/queue) both call this, so a queued eval computes what a local one does.
 * The loop yields to the event loop between steps, so timers (a queue worker's lock renewal) keep running.
 */
export async function evaluateTasks(p: Pipeline, tasks: readonly Task[], style: PromptStyle, m: EvalMethod): Promise<CallOutcome> {
  const { options, accel } = requestFor(p, m);
  const prompts = tasks.map((t) => buildPrompt(p, t, style));
  const r = await generateAll(p.model, p.ids, { prompts, options, accel });
  return {
    tasks: tasks.map((t, j) => {
      return { ...scoreResponse(decodeAnswer(p, r.tokens[j]), t.gold, style.stop), tokens: [...r.tokens[j]] };
    }),
    generatedTokens: r.stats.generatedTokens,
    elapsedMs: r.stats.elapsedMs,
    nfe: r.stats.nfe,
    salientFraction: r.stats.salientFraction,
  };
}

/**
 * A method's summary over its generate calls in task order. A null call is a task whose queued job failed for
 * good: it counts in n as not correct, with an empty output and a null prediction in its place.
 */
export function summarize(method: string, calls: readonly (CallOutcome | null)[]): EvalSummary {
  let correct = 0;
  let strict = 0;
  let tokens = 0;
  let ms = 0;
  let nfe = 0;
  let sal = 0;
  let ran = 0;
  let failed = 0;
  const outputs: (readonly number[])[] = [];
  const predictions: (string | null)[] = [];
  for (const c of calls) {
    if (c === null) {
      failed++;
      outputs.push([]);
      predictions.push(null);
      continue;
    }
    ran++;
    tokens += c.generatedTokens;
    ms += c.elapsedMs;
    nfe += c.nfe;
    sal += c.salientFraction * c.tasks.length;
    for (const t of c.tasks) {
      if (t.correct) correct++;
      if (t.strictCorrect) strict++;
      outputs.push(t.tokens);
      predictions.push(t.prediction);
    }
  }
  const n = outputs.length;
  const answered = n - failed;
  return {
    method, n, correct, accuracy: correct / n, strictCorrect: strict, strictAccuracy: strict / n, generatedTokens: tokens, genSeconds: ms / 1000,
    tokensPerS: tokens / (ms / 1000), nfe: ran ? nfe / ran : 0, salientFraction: answered ? sal / answered : 0, outputs, predictions,
    ...(failed ? { failed } : {}),
  };
}

export async function runEval(
  p: Pipeline, tasks: readonly Task[], style: PromptStyle, m: EvalMethod, batch: number,
  progress?: (done: number, total: number, correct: number) => void,
): Promise<EvalSummary> {
  const calls: CallOutcome[] = [];
  let correct = 0;
  for (let i = 0; i < tasks.length; i += batch) {
    const c = await evaluateTasks(p, tasks.slice(i, i + batch), style, m);
    calls.push(c);
    correct += c.tasks.filter((t) => t.correct).length;
    progress?.(Math.min(i + batch, tasks.length), tasks.length, correct);
  }
  return summarize(m.name, calls);
}

/** What an eval or bench evaluates, before any model is loaded (a queue coordinator never loads the weights). */
export interface EvalInputs {
  /** The resolved model folder. */
  readonly dir: string;
  readonly backend: BackendName;
  readonly tasks: readonly Task[];
  readonly style: PromptStyle;
  readonly batch: number;
  /** config.json and generation_config.json: enough to resolve every method's options. */
  readonly model: Pick<Pipeline, 'config' | 'generation'>;
}

/** The header facts of an eval's or bench's output. */
export interface EvalInfo {
  readonly n: number;
  readonly chat: boolean;
  readonly fewshot: number;
  readonly batch: number;
  readonly backend: string;
}


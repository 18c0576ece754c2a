/**
 * `dyllm eval`: accuracy and throughput of one method on a GSM8K-format task file (the evaluation itself is
 * src/eval/tasks.ts). Also the flags, inputs and progress display that `dyllm bench` (bench.ts) shares.
 */
import { ConfigError, LoadError } from '../load/errors.js';
import { loadConfig } from '../load/config.js';
import { loadPipeline, type Pipeline } from '../engine/pipeline.js';
import { loadChatTemplate } from '../load/chat-template.js';
import { DEFAULT_TEMPLATE, MAX_STOP_BYTES, MAX_STOPS, defaultStops, readTasks, requestFor, runEval, type EvalMethod, type EvalInfo, type EvalInputs, type EvalSummary, type Task } from '../eval/tasks.js';
import { ACCEL_HELP, BACKEND_HELP, GENERATION_HELP, LOAD_FLAGS, THREADS_HELP, applyPackCacheFlag, UsageError, accelFlagConfig, accelOptions, backendName, generationFlagConfig, generationOptions, modelDir, parse, quantOption } from './args.js';
import type { QuantOption } from '../models/load-model.js';
import { QUEUE_FLAGS, QUEUE_HELP, refuseQueueFlagsWithoutQueue } from '../queue/flags.js';
export function progressBar(label: string): ((done: number, total: number, correct: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (done, total, correct) => {
    const w = 30;
    const f = Math.round((done / total) * w);
    process.stderr.write(`\r${label} [${'#'.repeat(f)}${'.'.repeat(w - f)}] ${done}/${total} acc ${((correct / done) * 100).toFixed(1)}%`);
    if (done === total) process.stderr.write('\x1b[K\r');
  };
}

export const COMMON_FLAGS = {
  model: { type: 'string' },
  tasks: { type: 'string' },
  template: { type: 'string' },
  chat: { type: 'boolean' },
  'no-chat': { type: 'boolean' },
  stop: { type: 'string', multiple: true },
  fewshot: { type: 'string' },
  'fewshot-file': { type: 'string' },
  limit: { type: 'string' },
  batch: { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  ...LOAD_FLAGS,
  ...QUEUE_FLAGS,
} as const;

/** bench runs its own methods and thresholds; the other acceleration knobs apply to every row. */
export const COMMON_HELP = `  --model M               model folder, HF id org/name[@rev] or bundled name (default: dyllm-demo)
  --tasks FILE            JSONL, one {"question", "answer" ending "#### N"} per line (required)
  --chat                  the model's chat template, few-shot examples as prior turns (the default when the
                          model has one)
  --no-chat               the raw template instead of the chat template
  --template T            raw prompt template with {question} (default "Q: {question}\\nA:"; implies --no-chat)
  --stop S                cut the response at the first S before extracting the answer; repeatable (default:
                          lm-eval gsm8k's "Question:", "</s>", "<|im_end|>", plus the raw template's "\\n\\nQ:")
  --fewshot K             K worked examples before each question (from --fewshot-file)
  --fewshot-file FILE     JSONL examples in the task format
  --limit N               the first N tasks only
  --batch N               prompts per generate call (default 1)
  --backend B             ${BACKEND_HELP}
  --quant Q               none | int8 | q4: quantise the linear layers while loading (docs/quantization.md)
  --pack-cache            map the packed weights from a cache file, writing it on first use (same as
                          DYLLM_PACK_CACHE=1; docs/loading.md)
${THREADS_HELP}`;

const EVAL_HELP = `Usage: dyllm eval --tasks FILE [options]

${COMMON_HELP}
  --json                  print one JSON object on stdout
${QUEUE_HELP}
${GENERATION_HELP}
${ACCEL_HELP}`;

export function intFlag(flag: string, v: unknown, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${flag}: expected an integer ≥ ${min}, found "${String(v)}"`);
  return n;
}

/** EvalInputs and the local model's load option (--quant; refused with --queue: the workers load their own). */
export interface LocalEvalInputs extends EvalInputs {
  readonly quant: QuantOption;
}

/** --stop S (repeatable): each one non-empty and bounded; the default (none given) is defaultStops. */
function stopFlags(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  const list = (Array.isArray(v) ? v : [v]) as string[];
  if (list.length > MAX_STOPS) throw new UsageError(`--stop: expected at most ${MAX_STOPS} stop strings, found ${list.length}`);
  return list.map((s) => {
    const t = s.replace(/\\n/g, '\n');
    if (t === '') throw new UsageError('--stop: expected a non-empty string, found ""');
    if (Buffer.byteLength(t) > MAX_STOP_BYTES) throw new UsageError(`--stop: expected at most ${MAX_STOP_BYTES} bytes, found ${Buffer.byteLength(t)}`);
    return t;
  });
}

/**
 * The eval's inputs from its flags. The prompt style defaults as lm-eval users expect of an instruct model: the
 * model's chat template when it has one (--no-chat or --template for the raw template), so a queued run (the
 * coordinator decides it here, from the model folder) and a local one evaluate the same prompts.
 */
export async function evalInputs(values: Record<string, unknown>): Promise<LocalEvalInputs> {
  if (typeof values.tasks !== 'string') throw new UsageError('--tasks FILE is required');
  refuseQueueFlagsWithoutQueue(values);
  applyPackCacheFlag(values);
  if (values.chat && values['no-chat']) throw new UsageError('--chat and --no-chat contradict each other: give one');
  if (values.chat && values.template !== undefined) throw new UsageError('--template is the raw template and --chat the chat template: give one');
  const stop = stopFlags(values.stop);
  const k = intFlag('fewshot', values.fewshot, 0) ?? 0;
  if (k > 0 && typeof values['fewshot-file'] !== 'string') throw new UsageError('--fewshot K needs --fewshot-file FILE');
  const limit = intFlag('limit', values.limit, 1);
  const batch = intFlag('batch', values.batch, 1) ?? 1;
  const backend = backendName(values.backend);
  const quant = quantOption(values.quant);
  let tasks = readTasks(values.tasks);
  if (limit !== undefined) tasks = tasks.slice(0, limit);
  let fewshot: Task[] = [];
  if (k > 0) {
    const file = values['fewshot-file'] as string;
    fewshot = readTasks(file);
    if (fewshot.length < k) throw new LoadError(file, `at least ${k} few-shot examples`, `${fewshot.length}`);
    fewshot = fewshot.slice(0, k);
  }
  const dir = modelDir(values.model);
  const template = typeof values.template === 'string' ? values.template.replace(/\\n/g, '\n') : DEFAULT_TEMPLATE;
  if (values.template !== undefined && !template.includes('{question}')) throw new UsageError('--template: expected a {question} placeholder');
  const model = loadConfig(dir);
  const chat = values.chat === true || (values['no-chat'] !== true && values.template === undefined && (await loadChatTemplate(dir)) !== null);
  return { dir, backend, quant, tasks, style: { chat, template, fewshot, stop: stop ?? defaultStops(chat, template) }, batch, model };
}

export interface Common extends LocalEvalInputs {
  p: Pipeline;
}

export async function common(inputs: LocalEvalInputs): Promise<Common> {
  return { ...inputs, p: await loadPipeline(inputs.dir, { backend: inputs.backend, quant: inputs.quant }) };
}

export function info(c: EvalInputs, backend: string): EvalInfo {
  return { n: c.tasks.length, chat: c.style.chat, fewshot: c.style.fewshot.length, batch: c.batch, backend };
}

/** The queue front end (src/queue), imported only when --queue is given: no Redis client is loaded otherwise. */
export async function queued() {
  return import('../queue/eval.js');
}

export const r3 = (x: number) => Math.round(x * 1000) / 1000;

export async function cmdEval(argv: string[]): Promise<void> {
  const { values } = parse(argv, { ...COMMON_FLAGS, json: { type: 'boolean' }, ...generationFlagConfig, ...accelFlagConfig }, false);
  if (values.help) {
    process.stdout.write(EVAL_HELP + '\n');
    return;
  }
  const inputs = await evalInputs(values);
  const gen = generationOptions(values);
  const accel = accelOptions(values);
  const { label } = requestFor(inputs.model, { name: '', gen, accel });
  const method: EvalMethod = { name: label, gen, accel };
  if (values.queue !== undefined) {
    const q = await (await queued()).queuedEval(values, inputs, [method], 'eval');
    printEval(q.summaries[0], q.backend, values.json === true, inputs.style.chat);
    return;
  }
  const c = await common(inputs);
  const s = await runEval(c.p, c.tasks, c.style, method, c.batch, values.json ? undefined : progressBar(label));
  printEval(s, c.p.model.backend.name, values.json === true, c.style.chat);
}

/** An eval's result: one line, or one JSON object with --json. */
function printEval(s: EvalSummary, backend: string, json: boolean, chat: boolean): void {
  const failed = s.failed ? s.failed : 0;
  if (json) {
    process.stdout.write(JSON.stringify({
      method: s.method, n: s.n, correct: s.correct, accuracy: s.accuracy, strict_correct: s.strictCorrect, strict_accuracy: s.strictAccuracy,
      chat, tokens_per_s: r3(s.tokensPerS), generated_tokens: s.generatedTokens,
      gen_seconds: r3(s.genSeconds), nfe: s.nfe, salient_fraction: r3(s.salientFraction), backend, ...(failed ? { failed } : {}),
    }) + '\n');
    return;
  }
  process.stdout.write(`${s.method}: accuracy ${(s.accuracy * 100).toFixed(2)}% (${s.correct}/${s.n}) flexible-extract, ` +
    `${(s.strictAccuracy * 100).toFixed(2)}% (${s.strictCorrect}/${s.n}) strict-match, ${chat ? 'chat template' : 'raw template'}, ${s.tokensPerS.toFixed(1)} tokens/s, ` +
    `NFE ${s.nfe.toFixed(1)}, salient fraction ${s.salientFraction.toFixed(3)} (${backend})${failed ? `, ${failed} failed` : ''}\n`);
}


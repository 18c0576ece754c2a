/**
 * `dyllm eval` and `dyllm bench`: GSM8K-format accuracy and throughput on a task file, the paper's table (§11.1)
 * on any model. Tasks are JSONL lines {"question", "answer" ending "#### N"}; the answer is extracted as
 * lm-eval's gsm8k flexible-extract does (the last number in the response) and compared with the number after
 * "####". Throughput counts generated tokens only (Σ stats.generatedTokens ÷ Σ generation time).
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, LoadError } from '../load/errors.js';
import { loadConfig } from '../load/config.js';
import { resolveOptions, type GenerateOptions, type GenerateOptionsInput } from '../engine/options.js';
import { decodeAnswer, encodePrompt, loadPipeline, type Pipeline } from '../engine/pipeline.js';
import { generate, type GenerateResult } from '../engine/generate.js';
import { ACCEL_OPTIONS, resolveAccel, type AccelOptions, type AccelOptionsInput } from '../engine/accel.js';
import { optionHelp } from '../engine/schema.js';
import type { BackendName } from '../kernels/select.js';
import type { ChatMessage } from '../load/chat-template.js';
import { ACCEL_HELP, BACKEND_HELP, GENERATION_HELP, UsageError, accelFlagConfig, backendName, accelOptions, flagConfig, modelDir, generationFlagConfig, generationOptions, optionsFromFlags, parse } from './args.js';
import { QUEUE_FLAGS, QUEUE_HELP, refuseQueueFlagsWithoutQueue } from '../queue/flags.js';

const DEFAULT_TEMPLATE = 'Q: {question}\nA:';

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
  readonly correct: number;
  readonly accuracy: number;
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
  return { options, accel, label: accel.method === 'dyllm' ? `dyllm τ=${accel.threshold}` : accel.method === 'none' ? 'dense' : accel.method };
}

/** One task's answer from one generate call. */
export interface TaskOutcome {
  readonly text: string;
  readonly tokens: readonly number[];
  readonly prediction: string | null;
  readonly correct: boolean;
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
  const it = generate(p.model, p.ids, { prompts, options, accel });
  let r: GenerateResult;
  for (;;) {
    const s = await it.next();
    if (s.done) {
      r = s.value;
      break;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return {
    tasks: tasks.map((t, j) => {
      const text = decodeAnswer(p, r.tokens[j]);
      const prediction = extractAnswer(text);
      return { text, tokens: [...r.tokens[j]], prediction, correct: prediction !== null && prediction === t.gold };
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
      outputs.push(t.tokens);
      predictions.push(t.prediction);
    }
  }
  const n = outputs.length;
  const answered = n - failed;
  return {
    method, n, correct, accuracy: correct / n, generatedTokens: tokens, genSeconds: ms / 1000,
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

function progressBar(label: string): ((done: number, total: number, correct: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  return (done, total, correct) => {
    const w = 30;
    const f = Math.round((done / total) * w);
    process.stderr.write(`\r${label} [${'#'.repeat(f)}${'.'.repeat(w - f)}] ${done}/${total} acc ${((correct / done) * 100).toFixed(1)}%`);
    if (done === total) process.stderr.write('\x1b[K\r');
  };
}

const COMMON_FLAGS = {
  model: { type: 'string' },
  tasks: { type: 'string' },
  template: { type: 'string' },
  chat: { type: 'boolean' },
  fewshot: { type: 'string' },
  'fewshot-file': { type: 'string' },
  limit: { type: 'string' },
  batch: { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  ...QUEUE_FLAGS,
} as const;

/** bench runs its own methods and thresholds; the other acceleration knobs apply to every row. */
const BENCH_ACCEL = ACCEL_OPTIONS.filter((o) => o.key !== 'method' && o.key !== 'threshold');

const COMMON_HELP = `  --model M               model folder, HF id org/name[@rev] or bundled name (default: dyllm-demo)
  --tasks FILE            JSONL, one {"question", "answer" ending "#### N"} per line (required)
  --template T            prompt template with {question} (default "Q: {question}\\nA:")
  --chat                  use the model's chat template instead (few-shot examples become prior turns)
  --fewshot K             K worked examples before each question (from --fewshot-file)
  --fewshot-file FILE     JSONL examples in the task format
  --limit N               the first N tasks only
  --batch N               prompts per generate call (default 1)
  --backend B             ${BACKEND_HELP}`;

const EVAL_HELP = `Usage: dyllm eval --tasks FILE [options]

${COMMON_HELP}
  --json                  print one JSON object on stdout
${QUEUE_HELP}
${GENERATION_HELP}
${ACCEL_HELP}`;

const BENCH_HELP = `Usage: dyllm bench --tasks FILE [options]

Runs dense, DyLLM (τ 0.99, 0.995), Fast-dLLM prefix and dual cache, and dLLM-Cache on the same problems in one
run, each with and without parallel decoding; writes a markdown table and an accuracy/throughput SVG.

${COMMON_HELP}
  --out DIR               also write DIR/bench.md and DIR/bench.svg
  --parallel-threshold C  confidence threshold of the parallel rows (default 0.9)
  --steps-per-token LIST  e.g. 1,2,4: add n_u points (steps = gen length / n_u) for every method
  --no-parallel           skip the parallel-decoding rows
  --json                  print the results as one JSON object instead of the table
${QUEUE_HELP}
${GENERATION_HELP}
Acceleration knobs applied to every method:
${optionHelp(BENCH_ACCEL)}`;

function intFlag(flag: string, v: unknown, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isSafeInteger(n) || n < min) throw new UsageError(`--${flag}: expected an integer ≥ ${min}, found "${String(v)}"`);
  return n;
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

function evalInputs(values: Record<string, unknown>): EvalInputs {
  if (typeof values.tasks !== 'string') throw new UsageError('--tasks FILE is required');
  refuseQueueFlagsWithoutQueue(values);
  if (values.chat && values.template !== undefined) throw new UsageError('--template and --chat are exclusive');
  const k = intFlag('fewshot', values.fewshot, 0) ?? 0;
  if (k > 0 && typeof values['fewshot-file'] !== 'string') throw new UsageError('--fewshot K needs --fewshot-file FILE');
  const limit = intFlag('limit', values.limit, 1);
  const batch = intFlag('batch', values.batch, 1) ?? 1;
  const backend = backendName(values.backend);
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
  if (!values.chat && !template.includes('{question}')) throw new UsageError('--template: expected a {question} placeholder');
  return { dir, backend, tasks, style: { chat: values.chat === true, template, fewshot }, batch, model: loadConfig(dir) };
}

interface Common extends EvalInputs {
  p: Pipeline;
}

async function common(inputs: EvalInputs): Promise<Common> {
  return { ...inputs, p: await loadPipeline(inputs.dir, { backend: inputs.backend }) };
}

function info(c: EvalInputs, backend: string): EvalInfo {
  return { n: c.tasks.length, chat: c.style.chat, fewshot: c.style.fewshot.length, batch: c.batch, backend };
}

/** The queue front end (src/queue), imported only when --queue is given: no Redis client is loaded otherwise. */
async function queued() {
  return import('../queue/eval.js');
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

export async function cmdEval(argv: string[]): Promise<void> {
  const { values } = parse(argv, { ...COMMON_FLAGS, json: { type: 'boolean' }, ...generationFlagConfig, ...accelFlagConfig }, false);
  if (values.help) {
    process.stdout.write(EVAL_HELP + '\n');
    return;
  }
  const inputs = evalInputs(values);
  const gen = generationOptions(values);
  const accel = accelOptions(values);
  const { label } = requestFor(inputs.model, { name: '', gen, accel });
  const method: EvalMethod = { name: label, gen, accel };
  if (values.queue !== undefined) {
    const q = await (await queued()).queuedEval(values, inputs, [method], 'eval');
    printEval(q.summaries[0], q.backend, values.json === true);
    return;
  }
  const c = await common(inputs);
  const s = await runEval(c.p, c.tasks, c.style, method, c.batch, values.json ? undefined : progressBar(label));
  printEval(s, c.p.model.backend.name, values.json === true);
}

/** An eval's result: one line, or one JSON object with --json. */
function printEval(s: EvalSummary, backend: string, json: boolean): void {
  const failed = s.failed ? s.failed : 0;
  if (json) {
    process.stdout.write(JSON.stringify({
      method: s.method, n: s.n, correct: s.correct, accuracy: s.accuracy, tokens_per_s: r3(s.tokensPerS), generated_tokens: s.generatedTokens,
      gen_seconds: r3(s.genSeconds), nfe: s.nfe, salient_fraction: r3(s.salientFraction), backend, ...(failed ? { failed } : {}),
    }) + '\n');
    return;
  }
  process.stdout.write(`${s.method}: accuracy ${(s.accuracy * 100).toFixed(2)}% (${s.correct}/${s.n}), ${s.tokensPerS.toFixed(1)} tokens/s, ` +
    `NFE ${s.nfe.toFixed(1)}, salient fraction ${s.salientFraction.toFixed(3)} (${backend})${failed ? `, ${failed} failed` : ''}\n`);
}

interface BenchRow extends EvalSummary {
  readonly group: string;
  readonly parallel: boolean;
  readonly nu: number;
  readonly speedup: number;
  readonly identical: number;
}

/** One row of the bench matrix: the method, its group and setting, and which row is its dense reference. */
export interface BenchMethod extends EvalMethod {
  readonly group: string;
  readonly parallel: boolean;
  readonly nu: number;
  /** Index of the dense row of the same n_u and decoding mode (itself for a dense row). */
  readonly dense: number;
}

/** The bench's method matrix, every method's options checked against the model before anything runs. */
export function benchMethods(values: Record<string, unknown>, model: EvalInputs['model']): { methods: BenchMethod[]; base: GenerateOptions } {
  const gen = generationOptions(values);
  const knobs = optionsFromFlags(values, BENCH_ACCEL) as AccelOptionsInput;
  const pt = gen.parallelThreshold ?? 0.9;
  delete gen.parallelThreshold;
  const nus = typeof values['steps-per-token'] === 'string'
    ? values['steps-per-token'].split(',').map((x) => intFlag('steps-per-token', x.trim(), 1)!)
    : [1];
  const base = resolveOptions(model.config, gen, model.generation);
  const kinds: [string, AccelOptionsInput][] = [
    ['dense', { method: 'none' }],
    ['DyLLM τ=0.99', { method: 'dyllm', threshold: 0.99 }],
    ['DyLLM τ=0.995', { method: 'dyllm', threshold: 0.995 }],
    ['Fast-dLLM prefix', { method: 'prefix' }],
    ['Fast-dLLM dual', { method: 'dual' }],
    ['dLLM-Cache', { method: 'dllm-cache' }],
  ];
  const methods: BenchMethod[] = [];
  for (const nu of nus) {
    if (base.genLength % nu !== 0) throw new UsageError(`--steps-per-token: ${nu} does not divide the gen length ${base.genLength}`);
    const steps = base.genLength / nu;
    for (const parallel of nu === 1 && !values['no-parallel'] ? [false, true] : [false]) {
      const dense = methods.length;
      for (const [name, accel] of kinds) {
        const g: GenerateOptionsInput = { ...gen, genLength: base.genLength, steps, blockLength: base.blockLength, ...(parallel ? { parallelThreshold: pt } : {}) };
        if (model.config.arch === 'dream') delete g.blockLength;
        const label = `${name}${nu > 1 ? ` n_u=${nu}` : ''}${parallel ? ` +parallel ${pt}` : ''}`;
        const m: BenchMethod = { name: label, gen: g, accel: { ...knobs, ...accel }, group: name, parallel, nu, dense };
        try {
          requestFor(model, m);
        } catch (e) {
          if (e instanceof ConfigError) throw new ConfigError(`${label}: ${e.message}`);
          throw e;
        }
        methods.push(m);
      }
    }
  }
  return { methods, base };
}

function benchRow(m: BenchMethod, s: EvalSummary, dense: EvalSummary): BenchRow {
  let same = 0;
  s.outputs.forEach((o, i) => (same += o.length > 0 && o.length === dense.outputs[i].length && o.every((t, j) => t === dense.outputs[i][j]) ? 1 : 0));
  return { ...s, group: m.group, parallel: m.parallel, nu: m.nu, speedup: s.tokensPerS / dense.tokensPerS, identical: same / s.n };
}

export async function cmdBench(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...COMMON_FLAGS, out: { type: 'string' }, json: { type: 'boolean' }, 'steps-per-token': { type: 'string' }, 'no-parallel': { type: 'boolean' },
    ...generationFlagConfig, ...flagConfig(BENCH_ACCEL),
  }, false);
  if (values.help) {
    process.stdout.write(BENCH_HELP + '\n');
    return;
  }
  const inputs = evalInputs(values);
  const { methods, base } = benchMethods(values, inputs.model);
  const out = typeof values.out === 'string' ? values.out : undefined;
  const rows: BenchRow[] = [];
  let backend: string;
  if (values.queue !== undefined) {
    const q = await (await queued()).queuedEval(values, inputs, methods, 'bench');
    backend = q.backend;
    methods.forEach((m, i) => rows.push(benchRow(m, q.summaries[i], q.summaries[m.dense])));
  } else {
    const c = await common(inputs);
    backend = c.p.model.backend.name;
    const summaries: EvalSummary[] = [];
    for (const m of methods) {
      const s = await runEval(c.p, c.tasks, c.style, m, c.batch, progressBar(m.name));
      summaries.push(s);
      rows.push(benchRow(m, s, summaries[m.dense]));
      if (!process.stderr.isTTY) process.stderr.write(`${m.name}: ${(s.accuracy * 100).toFixed(1)}% ${s.tokensPerS.toFixed(1)} tok/s\n`);
      // Written after every row, so an interrupted run keeps what it measured.
      if (out !== undefined) writeOut(out, rows, info(c, backend), base);
    }
  }
  const inf = info(inputs, backend);
  const md = benchMarkdown(rows, inf, base);
  if (values.json) {
    process.stdout.write(JSON.stringify({
      backend, n: inputs.tasks.length, gen_length: base.genLength, block_length: base.blockLength,
      rows: rows.map((r) => ({ method: r.method, accuracy: r.accuracy, tokens_per_s: r3(r.tokensPerS), speedup: r3(r.speedup), salient_fraction: r3(r.salientFraction), nfe: r.nfe, identical_to_dense: r.identical, n_u: r.nu, parallel: r.parallel, ...(r.failed ? { failed: r.failed } : {}) })),
    }) + '\n');
  } else {
    process.stdout.write(md);
  }
  if (out !== undefined) writeOut(out, rows, inf, base);
}

function writeOut(dir: string, rows: readonly BenchRow[], inf: EvalInfo, base: GenerateOptions): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bench.md'), benchMarkdown(rows, inf, base));
  writeFileSync(join(dir, 'bench.svg'), benchSvg(rows));
}

function benchMarkdown(rows: readonly BenchRow[], c: EvalInfo, o: GenerateOptions): string {
  const head = `${c.n} problems, gen ${o.genLength} / block ${o.blockLength}, ${c.chat ? 'chat template' : 'template'}${c.fewshot ? `, ${c.fewshot}-shot` : ''}, batch ${c.batch}, backend ${c.backend}; speed-up and identical outputs are against the dense row of the same n_u / decoding mode.\n\n`;
  const failed = rows.some((r) => r.failed);
  const lines = [`| method | steps | accuracy | tokens/s | speed-up | salient fraction | NFE | identical to dense |${failed ? ' failed |' : ''}`, `|---|---|---|---|---|---|---|---|${failed ? '---|' : ''}`];
  for (const r of rows) {
    lines.push(`| ${r.method} | ${o.genLength / r.nu} | ${(r.accuracy * 100).toFixed(1)} % | ${r.tokensPerS.toFixed(1)} | ${r.speedup.toFixed(2)}× | ${r.salientFraction.toFixed(3)} | ${r.nfe.toFixed(1)} | ${(r.identical * 100).toFixed(0)} % |${failed ? ` ${r.failed ?? 0} |` : ''}`);
  }
  return head + lines.join('\n') + '\n';
}

const COLORS: Record<string, string> = {
  dense: '#555555', 'DyLLM τ=0.99': '#d62728', 'DyLLM τ=0.995': '#ff7f0e', 'Fast-dLLM prefix': '#1f77b4', 'Fast-dLLM dual': '#2ca02c', 'dLLM-Cache': '#9467bd',
};

/** Accuracy (y) against throughput (x), one point per method and setting; hand-written SVG. */
export function benchSvg(rows: readonly { group: string; method: string; tokensPerS: number; accuracy: number; parallel: boolean; nu: number }[]): string {
  const W = 720, H = 480, L = 70, R = 200, T = 30, B = 60;
  const xs = rows.map((r) => r.tokensPerS);
  const ys = rows.map((r) => r.accuracy * 100);
  const xMax = Math.max(...xs) * 1.1 || 1;
  const yMin = Math.max(0, Math.floor((Math.min(...ys) - 5) / 10) * 10);
  const yMax = Math.min(100, Math.ceil((Math.max(...ys) + 2) / 10) * 10);
  const px = (x: number) => L + (x / xMax) * (W - L - R);
  const py = (y: number) => T + (1 - (y - yMin) / Math.max(1e-9, yMax - yMin)) * (H - T - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  for (let i = 0; i <= 5; i++) {
    const x = (xMax / 5) * i;
    out.push(`<line x1="${px(x)}" y1="${T}" x2="${px(x)}" y2="${H - B}" stroke="#eee"/><text x="${px(x)}" y="${H - B + 16}" text-anchor="middle">${x.toFixed(0)}</text>`);
    const y = yMin + ((yMax - yMin) / 5) * i;
    out.push(`<line x1="${L}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#eee"/><text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(0)}</text>`);
  }
  out.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 20}" text-anchor="middle">throughput (generated tokens/s)</text>`);
  out.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">accuracy (%)</text>`);
  // Lines through each method's n_u points (no parallel), as in the paper's scalability figure.
  const groups = [...new Set(rows.map((r) => r.group))];
  for (const g of groups) {
    const pts = rows.filter((r) => r.group === g && !r.parallel).sort((a, b) => a.nu - b.nu);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${COLORS[g] ?? '#000'}" stroke-opacity="0.5" points="${pts.map((r) => `${px(r.tokensPerS).toFixed(1)},${py(r.accuracy * 100).toFixed(1)}`).join(' ')}"/>`);
  }
  for (const r of rows) {
    const x = px(r.tokensPerS).toFixed(1);
    const y = py(r.accuracy * 100).toFixed(1);
    const col = COLORS[r.group] ?? '#000';
    out.push(r.parallel
      ? `<rect x="${+x - 5}" y="${+y - 5}" width="10" height="10" fill="none" stroke="${col}" stroke-width="2"><title>${esc(r.method)}</title></rect>`
      : `<circle cx="${x}" cy="${y}" r="5" fill="${col}"><title>${esc(r.method)}</title></circle>`);
    if (r.nu > 1) out.push(`<text x="${+x + 7}" y="${+y - 6}" font-size="10" fill="${col}">n_u=${r.nu}</text>`);
  }
  groups.forEach((g, i) => {
    const y = T + 10 + i * 20;
    out.push(`<circle cx="${W - R + 20}" cy="${y}" r="5" fill="${COLORS[g] ?? '#000'}"/><text x="${W - R + 30}" y="${y + 4}">${esc(g)}</text>`);
  });
  const ly = T + 10 + groups.length * 20;
  out.push(`<rect x="${W - R + 15}" y="${ly - 5}" width="10" height="10" fill="none" stroke="#333" stroke-width="2"/><text x="${W - R + 30}" y="${ly + 4}">+ parallel decoding</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * The library API: load a model, then generate text from prompts.
 *
 *   const m = await load('dyllm-demo');              // a bundled model's name, a folder, or a Hugging Face id in the cache
 *   const { text, stats } = await m.generate('Tom has 12 apples. He buys 7 more. How many apples does Tom have now?',
 *     { genLength: 48, steps: 48, blockLength: 16, accel: 'dyllm' });
 *
 * `m.stream(prompt, options)` is the same generation as an async iterator of denoising steps (the canvas as text, the
 * positions committed) whose return value is the result; a list of prompts is generated as one batch. Options are
 * flat and typed from the option schema: every generation option (engine/options.ts), every acceleration option
 * (engine/accel.ts) with the method as `accel`, plus `raw` (skip the chat template) and `signal` (cancel).
 *
 * Built on the lower-level exports (loadPipeline, encodePrompt, generate, resolveOptions, resolveAccel), which stay
 * available for custom loops.
 */
import { MAX_BATCH } from './engine/canvas.js';
import { generate as denoise, type GenerateResult, type GenerateStats, type StepEvent } from './engine/generate.js';
import { decodeAnswer, encodePrompt, loadPipeline, type Pipeline, type PipelineOptions } from './engine/pipeline.js';
import { GENERATION_OPTIONS, resolveOptions, type GenerateOptionsInput } from './engine/options.js';
import { ACCEL_OPTIONS, resolveAccel, type AccelOptions, type AccelOptionsInput } from './engine/accel.js';
import { didYouMean, OptionError } from './engine/schema.js';
import { encodeInfill, fillTemplate, infillOptions, parseInfill, refuseInfillGenLength } from './engine/infill.js';
import type { ChatMessage } from './load/chat-template.js';
import { ConfigError } from './load/errors.js';

/** A prompt: text (through the chat template unless `raw`), or a chat message list (always through the template). */
export type Prompt = string | readonly ChatMessage[];

/** The acceleration options of a call, flat; the method itself is `accel`. */
export type AccelCallOptions = Omit<AccelOptionsInput, 'method' | 'allSalient'> & {
  /** none (dense, default), dyllm (DyLLM), prefix / dual (Fast-dLLM), dllm-cache (dLLM-Cache). */
  accel?: string;
};

/** Options of one `generate` / `stream` call. Unset options take the model's defaults (generation_config.json). */
export type GenerationOptions = GenerateOptionsInput & AccelCallOptions & {
  /** Send a text prompt as it is, without the model's chat template (default: the template when the model has one). */
  raw?: boolean;
  /** Aborting it stops the generation at the next step; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
};

/** Statistics of a run. A batch is one run: its prompts share these (generatedTokens and tokensPerS cover all). */
export interface CompletionStats extends GenerateStats {
  /** The kernel backend that ran it: 'native-avx512bf16', 'native-avx2', 'native-portable' or 'reference'. */
  readonly backend: string;
  readonly accel: string;
}

export interface Completion {
  /** The answer: the generated text up to the first end token, special tokens dropped. */
  readonly text: string;
  /** The generated region's token ids (genLength of them, end tokens and what follows included), as `dyllm generate --json`. */
  readonly tokens: number[];
  /** Token ids of the prompt as the model saw it (after the chat template). */
  readonly promptTokens: number[];
  readonly stats: CompletionStats;
}

/** Options of an `infill` call: the generation and acceleration options (the gen length is the template's). */
export type InfillOptions = Omit<GenerationOptions, 'raw' | 'genLength'>;

/** A filled template. */
export interface InfillCompletion {
  /** The template with each hole replaced by its text (the fixed text exactly as written). */
  readonly text: string;
  /** Each hole's text, in template order (special tokens dropped). */
  readonly fills: string[];
  /** The generated region's ids: from the first hole to the end of the template, fixed tokens included. */
  readonly tokens: number[];
  /** The text before the first hole, as ids (raw: no chat template). */
  readonly promptTokens: number[];
  readonly stats: CompletionStats;
}

/** One sequence's canvas after a step. */
export interface CanvasView {
  /** The generated region as text: each token's text, masked positions as ░, end tokens (EOS, end of turn) as ·. */
  readonly canvas: string;
  /** The generated region's ids (the mask id where still masked). */
  readonly tokens: number[];
  /** Offsets in the generated region committed this step. */
  readonly committed: number[];
  /** Offsets whose FFN the acceleration recomputed in the last layer this step (all of them in its dense warm-up steps); null without acceleration. */
  readonly recomputed: number[] | null;
  /** This sequence is finished (no mask left, or stopped at its end token). */
  readonly done: boolean;
}

export interface StepInfo {
  /** 0-based. */
  readonly step: number;
  readonly maxSteps: number;
  /** Model evaluations so far. */
  readonly nfe: number;
  readonly forwardMs: number;
  readonly sampleMs: number;
  /** FFN rows computed this step ÷ the rows a dense step computes (1 for dense). */
  readonly ffnFraction: number;
}

/** A step of one prompt's generation. */
export interface Step extends StepInfo, CanvasView {}

/** A step of a batch: one canvas per prompt, in input order. */
export interface BatchStep extends StepInfo {
  readonly sequences: readonly CanvasView[];
}

export type LoadOptions = PipelineOptions;

export interface DyllmModel {
  /** The model folder. */
  readonly dir: string;
  readonly arch: 'llada' | 'dream';
  /** The kernel backend's name ('native-…' or 'reference'). */
  readonly backend: string;
  /** Whether text prompts go through a chat template by default. */
  readonly hasChatTemplate: boolean;
  /** The loaded pipeline, for the lower-level API (generate, encodePrompt, decodeAnswer). */
  readonly pipeline: Pipeline;
  generate(prompt: Prompt, options?: GenerationOptions): Promise<Completion>;
  generate(prompts: readonly Prompt[], options?: GenerationOptions): Promise<Completion[]>;
  stream(prompt: Prompt, options?: GenerationOptions): AsyncGenerator<Step, Completion, undefined>;
  stream(prompts: readonly Prompt[], options?: GenerationOptions): AsyncGenerator<BatchStep, Completion[], undefined>;
  /** The prompt's token ids as generate sends them (chat template unless `raw`). */
  encode(prompt: Prompt, options?: Pick<GenerationOptions, 'raw'>): number[];
  /**
   * Fill the holes of a template: fixed text with `<mask:N>` holes (N masks each, at most 1024 in all), raw text
   * (no chat template). Only the holes are denoised; steps default to the number of masks.
   */
  infill(template: string, options?: InfillOptions): Promise<InfillCompletion>;
}

/**
 * Load a model: a bundled model's name (default 'dyllm-demo'), a folder, or a Hugging Face id (`org/name[@revision]`)
 * already in the Hugging Face cache (`dyllm pull org/name` puts it there).
 */
export async function load(model = 'dyllm-demo', options: LoadOptions = {}): Promise<DyllmModel> {
  return new LoadedDyllmModel(await loadPipeline(model, options));
}

/** How a canvas shows a masked position, and an end token (EOS, end of turn; the CLI's live view does the same). */
const MASK_TEXT = '░';
const END_TEXT = '·';
const GEN_KEYS: readonly string[] = GENERATION_OPTIONS.map((s) => s.key);
const ACCEL_KEYS: readonly string[] = ACCEL_OPTIONS.map((s) => s.key).filter((k) => k !== 'method');
const CALL_KEYS: readonly string[] = [...GEN_KEYS, 'accel', ...ACCEL_KEYS, 'raw', 'signal'];

interface CallPlan {
  readonly batch: boolean;
  readonly prompts: readonly number[][];
  readonly gen: GenerateOptionsInput;
  readonly accel: AccelOptionsInput;
  readonly signal: AbortSignal | undefined;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : 'a list';
  return typeof v === 'string' ? 'a string' : typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

function isMessageList(v: unknown): v is readonly ChatMessage[] {
  return Array.isArray(v) && v.length > 0 && v.every((m) => m !== null && typeof m === 'object' && !Array.isArray(m));
}

class LoadedDyllmModel implements DyllmModel {
  readonly dir: string;
  readonly arch: 'llada' | 'dream';
  readonly backend: string;
  readonly hasChatTemplate: boolean;
  private readonly pieces = new Map<number, string>();

  constructor(readonly pipeline: Pipeline) {
    this.dir = pipeline.dir;
    this.arch = pipeline.config.arch;
    this.backend = pipeline.model.backend.name;
    this.hasChatTemplate = pipeline.chatTemplate !== null;
  }

  encode(prompt: Prompt, options: Pick<GenerationOptions, 'raw'> = {}): number[] {
    const raw = options.raw ?? false;
    if (typeof raw !== 'boolean') throw new ConfigError(`raw: expected true or false, found ${describe(raw)}`);
    return this.encodeOne(prompt, raw, 'prompt');
  }

  private encodeOne(prompt: Prompt, raw: boolean, what: string): number[] {
    if (typeof prompt === 'string') return encodePrompt(this.pipeline, prompt, !raw && this.hasChatTemplate);
    if (!isMessageList(prompt)) throw new ConfigError(`${what}: expected a string or a list of chat messages, found ${describe(prompt)}`);
    prompt.forEach((m, i) => {
      if (typeof m.role !== 'string' || typeof m.content !== 'string') {
        throw new ConfigError(`${what}: message ${i}: expected {role: string, content: string}, found role ${describe(m.role)} and content ${describe(m.content)}`);
      }
    });
    if (raw) throw new ConfigError(`${what}: a message list is rendered by the chat template; pass a string to send it raw`);
    if (!this.hasChatTemplate) throw new ConfigError(`${what}: a message list needs a chat template, and ${this.dir} has none (no chat_template in tokenizer_config.json); pass a string`);
    return encodePrompt(this.pipeline, prompt, true);
  }

  /** Checks the call (prompts, options) before anything is generated, and encodes the prompts. */
  private plan(input: Prompt | readonly Prompt[], options: GenerationOptions): CallPlan {
    const { gen, accel, raw, signal } = this.callOptions(options);
    const batch = typeof input !== 'string' && !isMessageList(input);
    let list: readonly Prompt[];
    if (!batch) {
      list = [input as Prompt];
    } else {
      if (!Array.isArray(input) || input.length === 0) {
        throw new ConfigError(`prompt: expected a string, a list of chat messages or a list of prompts, found ${describe(input)}`);
      }
      if (input.length > MAX_BATCH) throw new ConfigError(`prompts: expected at most ${MAX_BATCH} prompts in one call, found ${input.length}`);
      list = input as readonly Prompt[];
    }
    return { batch, prompts: list.map((p, i) => this.encodeOne(p, raw, batch ? `prompt ${i}` : 'prompt')), gen, accel, signal };
  }

  /** A call's options split into generation and acceleration inputs, each key checked. */
  private callOptions(options: GenerationOptions): { gen: GenerateOptionsInput; accel: AccelOptionsInput; raw: boolean; signal: AbortSignal | undefined } {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) throw new ConfigError(`options: expected an object, found ${describe(options)}`);
    const gen: Record<string, unknown> = {};
    const accel: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(options)) {
      if (v === undefined) continue;
      if (GEN_KEYS.includes(k)) gen[k] = v;
      else if (k === 'accel') accel.method = v;
      else if (ACCEL_KEYS.includes(k)) accel[k] = v;
      else if (!CALL_KEYS.includes(k)) throw new ConfigError(`unknown option "${k}"${didYouMean(k, CALL_KEYS)}`);
    }
    const raw = options.raw ?? false;
    if (typeof raw !== 'boolean') throw new ConfigError(`raw: expected true or false, found ${describe(raw)}`);
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new ConfigError(`signal: expected an AbortSignal, found ${describe(signal)}`);
    return { gen: gen as GenerateOptionsInput, accel: accel as AccelOptionsInput, raw, signal };
  }

  private resolve(gen: GenerateOptionsInput, accelIn: AccelOptionsInput): { options: ReturnType<typeof resolveOptions>; accel: AccelOptions } {
    const p = this.pipeline;
    const options = resolveOptions(p.config, gen, p.generation);
    try {
      return { options, accel: resolveAccel(p.config, accelIn, options) };
    } catch (e) {
      // The method is `accel` here (the schema's key is `method`).
      if (e instanceof OptionError && e.option === 'method') throw new OptionError('accel', e.detail);
      throw e;
    }
  }

  async infill(template: string, options: InfillOptions = {}): Promise<InfillCompletion> {
    const p = this.pipeline;
    const o = options as GenerationOptions;
    if (o !== null && typeof o === 'object' && o.raw !== undefined) throw new ConfigError('raw: an infill template is always raw text; drop raw');
    const { gen, accel: accelIn, signal } = this.callOptions(o);
    const parts = parseInfill(template, 'infill');
    refuseInfillGenLength(gen);
    const c = encodeInfill(p, parts, 'infill');
    const { options: resolved, accel } = this.resolve(infillOptions(gen, c), accelIn);
    if (signal?.aborted) throw signal.reason;
    const it = denoise(p.model, p.ids, { prompts: [c.prompt], fixed: [c.region], options: resolved, accel, cancelled: signal ? () => signal.aborted : undefined });
    let r = await it.next();
    while (!r.done) r = await it.next();
    if (signal?.aborted) throw signal.reason;
    const result = r.value;
    const filled = fillTemplate(c, result.tokens[0], (ids) => p.tokenizer.decode(ids, { skipSpecialTokens: true }));
    return { ...filled, tokens: Array.from(result.tokens[0]), promptTokens: c.prompt, stats: { ...result.stats, backend: p.model.backend.name, accel: accel.method } };
  }

  private piece(id: number): string {
    let s = this.pieces.get(id);
    if (s === undefined) {
      const ids = this.pipeline.ids;
      s = id === ids.eos || id === ids.eot ? END_TEXT : this.pipeline.tokenizer.decode([id], { skipSpecialTokens: false });
      this.pieces.set(id, s);
    }
    return s;
  }

  private async *run(input: Prompt | readonly Prompt[], options: GenerationOptions, views: boolean): AsyncGenerator<Step | BatchStep, Completion | Completion[], undefined> {
    const p = this.pipeline;
    const call = this.plan(input, options);
    const { options: gen, accel } = this.resolve(call.gen, call.accel);
    const signal = call.signal;
    if (signal?.aborted) throw signal.reason;
    const it = denoise(p.model, p.ids, { prompts: call.prompts, options: gen, accel, cancelled: signal ? () => signal.aborted : undefined });
    // Which sequences were still running before each step (accel.recomputed lists only those).
    let running = call.prompts.map(() => true);
    let result: GenerateResult;
    for (;;) {
      const r = await it.next();
      if (r.done) {
        result = r.value;
        break;
      }
      if (!views) continue;
      const ev = r.value;
      const canvases = this.views(ev, running);
      running = ev.sequences.map((s) => !s.done);
      const info: StepInfo = { step: ev.step, maxSteps: ev.maxSteps, nfe: ev.nfe, forwardMs: ev.forwardMs, sampleMs: ev.sampleMs, ffnFraction: ev.accel ? ev.accel.ffnFraction : 1 };
      yield call.batch ? { ...info, sequences: canvases } : { ...info, ...canvases[0] };
    }
    if (signal?.aborted) throw signal.reason;
    const stats: CompletionStats = { ...result.stats, backend: p.model.backend.name, accel: accel.method };
    const out = result.tokens.map((t, b): Completion => ({ text: decodeAnswer(p, t), tokens: Array.from(t), promptTokens: call.prompts[b], stats }));
    return call.batch ? out : out[0];
  }

  private views(ev: StepEvent, running: readonly boolean[]): CanvasView[] {
    const mask = this.pipeline.ids.mask;
    const rec = ev.accel?.recomputed;
    let ai = 0;
    return ev.sequences.map((s, b) => {
      const recomputed = rec && running[b] ? rec[ai++] : undefined;
      let canvas = '';
      for (const t of s.canvas) canvas += t === mask ? MASK_TEXT : this.piece(t);
      return { canvas, tokens: Array.from(s.canvas), committed: Array.from(s.committed), recomputed: recomputed ? Array.from(recomputed) : null, done: s.done };
    });
  }

  generate(prompt: Prompt, options?: GenerationOptions): Promise<Completion>;
  generate(prompts: readonly Prompt[], options?: GenerationOptions): Promise<Completion[]>;
  async generate(input: Prompt | readonly Prompt[], options: GenerationOptions = {}): Promise<Completion | Completion[]> {
    const it = this.run(input, options, false);
    for (;;) {
      const r = await it.next();
      if (r.done) return r.value;
    }
  }

  stream(prompt: Prompt, options?: GenerationOptions): AsyncGenerator<Step, Completion, undefined>;
  stream(prompts: readonly Prompt[], options?: GenerationOptions): AsyncGenerator<BatchStep, Completion[], undefined>;
  stream(input: Prompt | readonly Prompt[], options: GenerationOptions = {}): AsyncGenerator<Step | BatchStep, Completion | Completion[], undefined> {
    return this.run(input, options, true);
  }
}

/**
 * Generation options: one validated, frozen object per request. Defaults follow the official code of each
 * family (LLaDA generate.py, Dream generation_config.json / DreamGenerationConfig), so a request that sets
 * nothing reproduces the official output; speed features (parallel decoding, early stop, acceleration) are off
 * unless asked for. Validation errors are ConfigErrors that name the option, the value and what is allowed.
 */
import type { Architecture, GenerationDefaults, ModelConfig } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import type { DreamAlg, LladaRemasking } from '../sampler/confidence.js';
import { checkOption, declareOptions, DEFAULT_MAX_CANVAS, OptionError, refuseUnknown, type OptionContext, type OptionSpec } from './schema.js';

/** How a batch of prompts of different lengths is laid out. */
export type BatchLayout = 'packed' | 'left-pad';

export interface GenerateOptions {
  readonly genLength: number; // G, positions generated per sequence
  readonly steps: number; // denoising steps (NFE without CFG)
  readonly blockLength: number; // LLaDA semi-autoregressive block; = genLength for pure diffusion
  readonly temperature: number;
  /** PRNG seed; sequence b of a batch draws from seed + b. */
  readonly seed: number;
  readonly remasking: LladaRemasking; // LLaDA
  readonly cfgScale: number; // LLaDA classifier-free guidance
  readonly logitsEosInf: boolean; // LLaDA
  readonly confidenceEosEotInf: boolean; // LLaDA
  readonly alg: DreamAlg; // Dream
  readonly algTemp: number | null; // Dream
  readonly topP: number | null; // Dream
  readonly topK: number | null; // Dream
  readonly eps: number; // Dream timestep floor
  /** Commit, besides the schedule's count, every candidate whose confidence is ≥ this; null = off. */
  readonly parallelThreshold: number | null;
  /** Finish a sequence once an end token is decoded and every position before it is committed. */
  readonly stopAtEos: boolean;
  /**
   * 'packed' (default): sequences are packed without padding and sampled independently, so each computes
   * exactly what it computes alone. 'left-pad': the official samplers' batch (left padding + attention mask, and
   * Dream's transfer count shared through the batch mean), for parity with batched official runs.
   */
  readonly batchLayout: BatchLayout;
}

export type GenerateOptionsInput = Partial<{ -readonly [K in keyof GenerateOptions]: GenerateOptions[K] }>;

const DREAM_ALGS: readonly DreamAlg[] = ['origin', 'maskgit_plus', 'topk_margin', 'entropy'];
const REMASKINGS: readonly LladaRemasking[] = ['low_confidence', 'random'];

const LLADA = ['llada'] as const;
/** Dream's step bound when it exceeds the gen length (twice the official generation_config.json's 512). */
export const DREAM_MAX_STEPS = 1024;
const DREAM = ['dream'] as const;

/** The generation options, declared once (engine/schema.ts derives flags, HTTP fields, help and checks). */
export const GENERATION_OPTIONS: readonly OptionSpec[] = declareOptions([
  {
    key: 'genLength', flag: 'gen-length', field: 'max_tokens', aliases: ['max_completion_tokens', 'dyllm.gen_length'], type: 'int', metavar: 'N',
    range: (c) => ({ min: 1, max: c.maxCanvas, maxWhy: c.maxCanvasWhy }),
    help: 'positions to generate (the canvas)', defaultHelp: "generation_config.json's max_new_tokens, else 128",
  },
  {
    key: 'steps', flag: 'steps', field: 'dyllm.steps', type: 'int', metavar: 'N',
    // LLaDA's schedule commits ≥ 1 position per step only while steps ≤ positions; Dream's official sampler runs more
    // steps than positions (its generation_config.json says 512 at any length), so it gets DREAM_MAX_STEPS of room.
    range: (c) => c.arch === 'dream'
      ? { min: 1, max: Math.max(c.genLength ?? c.maxCanvas, DREAM_MAX_STEPS), maxWhy: `the gen length or ${DREAM_MAX_STEPS}, whichever is larger` }
      : { min: 1, max: c.genLength ?? c.maxCanvas, maxWhy: 'the gen length' },
    help: 'denoising steps', defaultHelp: "generation_config.json's steps, else the gen length",
  },
  {
    key: 'blockLength', flag: 'block-length', field: 'dyllm.block_length', type: 'int', metavar: 'N', families: LLADA,
    range: (c) => ({ min: 1, max: c.genLength ?? c.maxCanvas, maxWhy: 'the gen length' }),
    help: 'semi-autoregressive block; must divide the gen length', defaultHelp: "generation_config.json's block_length, else the gen length",
  },
  {
    key: 'temperature', flag: 'temperature', field: 'temperature', type: 'number', metavar: 'T', range: { min: 0, max: 100 },
    help: '0 = greedy', defaultHelp: "0; Dream: generation_config.json's temperature",
  },
  { key: 'seed', flag: 'seed', field: 'seed', type: 'int', metavar: 'N', range: { min: 0, max: Number.MAX_SAFE_INTEGER }, help: 'PRNG seed (sequence b of a batch uses seed + b)', defaultHelp: '0' },
  { key: 'remasking', flag: 'remasking', field: 'dyllm.remasking', type: 'enum', values: REMASKINGS, metavar: 'R', families: LLADA, help: 'which masked positions to commit', defaultHelp: 'low_confidence' },
  { key: 'cfgScale', flag: 'cfg-scale', field: 'dyllm.cfg_scale', type: 'number', metavar: 'S', families: LLADA, range: { min: 0, max: 100 }, help: 'classifier-free guidance scale', defaultHelp: '0' },
  { key: 'logitsEosInf', flag: 'logits-eos-inf', field: 'dyllm.logits_eos_inf', type: 'boolean', families: LLADA, help: 'never predict EOS' },
  { key: 'confidenceEosEotInf', flag: 'confidence-eos-eot-inf', field: 'dyllm.confidence_eos_eot_inf', type: 'boolean', families: LLADA, help: 'commit EOS/EoT last (generate.py quirk reproduced)' },
  { key: 'alg', flag: 'alg', field: 'dyllm.alg', type: 'enum', values: DREAM_ALGS, metavar: 'A', families: DREAM, help: 'confidence of a candidate', defaultHelp: "generation_config.json's alg, else origin" },
  { key: 'algTemp', flag: 'alg-temp', field: 'dyllm.alg_temp', type: 'number', nullable: true, metavar: 'T', families: DREAM, range: { min: 0, max: 100 }, help: 'randomness of the position choice', defaultHelp: "generation_config.json's alg_temp, else off" },
  { key: 'topP', flag: 'top-p', field: 'top_p', type: 'number', nullable: true, metavar: 'P', families: DREAM, range: { min: 0, max: 1, minExclusive: true }, help: 'nucleus sampling', defaultHelp: "generation_config.json's top_p, else off" },
  { key: 'topK', flag: 'top-k', field: 'top_k', type: 'int', nullable: true, metavar: 'K', families: DREAM, range: (c) => ({ min: 1, max: c.vocabSize, maxWhy: 'the vocabulary size' }), help: 'top-k sampling', defaultHelp: "generation_config.json's top_k, else off" },
  { key: 'eps', flag: 'eps', field: 'dyllm.eps', type: 'number', metavar: 'E', families: DREAM, range: { min: 0, max: 0.5 }, help: 'timestep floor', defaultHelp: "generation_config.json's eps, else 0.001" },
  { key: 'parallelThreshold', flag: 'parallel-threshold', field: 'dyllm.parallel_threshold', type: 'number', nullable: true, metavar: 'C', range: { min: -100, max: 1 }, help: 'also commit every candidate with confidence >= C', defaultHelp: 'off' },
  { key: 'stopAtEos', flag: 'stop-at-eos', field: 'dyllm.stop_at_eos', type: 'boolean', help: 'finish once an end token is decoded with everything before it committed' },
  { key: 'batchLayout', flag: 'batch-layout', field: 'dyllm.batch_layout', type: 'enum', values: ['packed', 'left-pad'], metavar: 'L', help: "packed: each prompt as if alone; left-pad: the official samplers' padded batch", defaultHelp: 'packed' },
]);

const spec = (key: string): OptionSpec => GENERATION_OPTIONS.find((s) => s.key === key)!;

/** The model facts option ranges depend on; a bare architecture gets the default canvas cap and no vocabulary bound. */
export type OptionModel = Architecture | Pick<ModelConfig, 'arch' | 'vocabSize' | 'maxSequenceLength'>;

export interface OptionLimits {
  /** Cap on prompt + canvas below the model's own maximum (default DEFAULT_MAX_CANVAS). */
  readonly maxCanvas?: number;
}

export function optionContext(model: OptionModel, limits: OptionLimits = {}): OptionContext {
  const m = typeof model === 'string' ? { arch: model, vocabSize: Number.MAX_SAFE_INTEGER, maxSequenceLength: Infinity } : model;
  const cap = limits.maxCanvas ?? DEFAULT_MAX_CANVAS;
  const own = m.maxSequenceLength <= cap;
  return {
    arch: m.arch,
    vocabSize: m.vocabSize,
    maxCanvas: Math.min(m.maxSequenceLength, cap),
    maxCanvasWhy: own ? "the model's maximum sequence length" : `the canvas cap of ${cap} positions`,
  };
}

/**
 * Merge user options over the family's defaults (and the model's generation_config.json), then check every value
 * against its declared range. Nothing is allocated before this succeeds. The prompt's share of the maximum
 * sequence length is checked when the prompt is known (DenoiseRun).
 */
export function resolveOptions(model: OptionModel, input: GenerateOptionsInput, gen: GenerationDefaults = {}, limits: OptionLimits = {}): GenerateOptions {
  refuseUnknown(input, GENERATION_OPTIONS, 'generation');
  const base = optionContext(model, limits);
  const dream = base.arch === 'dream';
  /** Value from the input, else generation_config.json's key, else the fallback; a bad config value names the file. */
  const pick = (key: keyof GenerateOptionsInput, hf: string | null, fallback: unknown, ctx: OptionContext = base): unknown => {
    const v = input[key];
    if (v !== undefined) return checkOption(spec(key), v, ctx);
    if (hf && gen[hf] !== undefined && gen[hf] !== null) {
      try {
        return checkOption(spec(key), gen[hf], ctx);
      } catch (e) {
        throw new ConfigError(`generation_config.json "${hf}": ${(e as OptionError).detail} (fix the model folder's generation_config.json, or pass --${spec(key).flag})`);
      }
    }
    return checkOption(spec(key), fallback, ctx);
  };
  const genLength = pick('genLength', 'max_new_tokens', 128) as number;
  const ctx: OptionContext = { ...base, genLength };
  // An explicit gen length without steps / block length means "one step per position, one block".
  const explicitLen = input.genLength !== undefined;
  const steps = pick('steps', explicitLen ? null : 'steps', genLength, ctx) as number;
  const blockLength = pick('blockLength', explicitLen || dream ? null : 'block_length', genLength, ctx) as number;
  if (dream && input.blockLength !== undefined && input.blockLength !== genLength) {
    throw new OptionError('blockLength', 'Dream has no semi-autoregressive blocks; leave it unset');
  }
  if (!dream && genLength % blockLength !== 0) throw new OptionError('blockLength', `${blockLength} must divide the gen length ${genLength}`);
  if (!dream && steps % (genLength / blockLength) !== 0) {
    throw new OptionError('steps', `${steps} must be a multiple of the number of blocks (gen length / block length = ${genLength / blockLength})`);
  }
  const opts: GenerateOptions = {
    genLength,
    steps,
    blockLength,
    temperature: pick('temperature', dream ? 'temperature' : null, 0) as number,
    seed: pick('seed', null, 0) as number,
    remasking: pick('remasking', null, 'low_confidence') as LladaRemasking,
    cfgScale: pick('cfgScale', null, 0) as number,
    logitsEosInf: pick('logitsEosInf', null, false) as boolean,
    confidenceEosEotInf: pick('confidenceEosEotInf', null, false) as boolean,
    alg: pick('alg', dream ? 'alg' : null, 'origin') as DreamAlg,
    algTemp: pick('algTemp', dream ? 'alg_temp' : null, null) as number | null,
    topP: pick('topP', dream ? 'top_p' : null, null) as number | null,
    topK: pick('topK', dream ? 'top_k' : null, null) as number | null,
    eps: pick('eps', dream ? 'eps' : null, 1e-3) as number,
    parallelThreshold: pick('parallelThreshold', null, null) as number | null,
    stopAtEos: pick('stopAtEos', null, false) as boolean,
    batchLayout: pick('batchLayout', null, 'packed') as BatchLayout,
  };
  if (dream && opts.cfgScale > 0) throw new OptionError('cfgScale', 'classifier-free guidance is a LLaDA sampler option; Dream has none');
  if (dream && opts.parallelThreshold !== null && opts.alg === 'origin') {
    throw new OptionError('parallelThreshold', 'needs a confidence alg (maskgit_plus, topk_margin or entropy); alg origin has no confidence to compare (set alg, or leave the threshold off)');
  }
  return Object.freeze(opts);
}

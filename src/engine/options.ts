/**
 * Generation options: one validated, frozen object per request. Defaults follow the official code of each
 * family (LLaDA generate.py, Dream generation_config.json / DreamGenerationConfig), so a request that sets
 * nothing reproduces the official output; speed features (parallel decoding, early stop, acceleration) are off
 * unless asked for. Validation errors are ConfigErrors that name the option, the value and what is allowed.
 */
import { familyOf } from '../families/registry.js';
import type { Architecture, GenerationDefaults, ModelConfig } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import type { DreamAlg, LladaRemasking } from '../sampler/confidence.js';
import type { BatchLayout, GenerateOptions, GenerateOptionsInput } from '../sampler/options.js';
import { checkOption, declareOptions, DEFAULT_MAX_CANVAS, OptionError, refuseUnknown, type OptionContext, type OptionSpec } from './schema.js';

export type { BatchLayout, GenerateOptions, GenerateOptionsInput };

const DREAM_ALGS: readonly DreamAlg[] = ['origin', 'maskgit_plus', 'topk_margin', 'entropy'];
const REMASKINGS: readonly LladaRemasking[] = ['low_confidence', 'random'];

/** The generation options, declared once (engine/schema.ts derives flags, HTTP fields, help and checks). */
export const GENERATION_OPTIONS: readonly OptionSpec[] = declareOptions([
  {
    key: 'genLength', flag: 'gen-length', field: 'max_tokens', aliases: ['max_completion_tokens', 'dyllm.gen_length'], type: 'int', metavar: 'N',
    range: (c) => ({ min: 1, max: c.maxCanvas, maxWhy: c.maxCanvasWhy }),
    help: 'positions to generate (the canvas)', defaultHelp: "generation_config.json's max_new_tokens, else 128",
  },
  {
    key: 'steps', flag: 'steps', field: 'dyllm.steps', type: 'int', metavar: 'N',
    // A block schedule commits ≥ 1 position per step only while steps ≤ positions; a family may allow more
    // (DiffusionFamily.maxSteps).
    range: (c) => {
      const more = familyOf(c.arch).maxSteps;
      return more === null
        ? { min: 1, max: c.genLength ?? c.maxCanvas, maxWhy: 'the gen length' }
        : { min: 1, max: Math.max(c.genLength ?? c.maxCanvas, more), maxWhy: `the gen length or ${more}, whichever is larger` };
    },
    help: 'denoising steps', defaultHelp: "generation_config.json's steps, else the gen length",
  },
  {
    key: 'blockLength', flag: 'block-length', field: 'dyllm.block_length', type: 'int', metavar: 'N',
    range: (c) => ({ min: 1, max: c.genLength ?? c.maxCanvas, maxWhy: 'the gen length' }),
    help: 'semi-autoregressive block; must divide the gen length', defaultHelp: "generation_config.json's block_length, else the gen length",
  },
  {
    key: 'temperature', flag: 'temperature', field: 'temperature', type: 'number', metavar: 'T', range: { min: 0, max: 100 },
    help: '0 = greedy', defaultHelp: "0; Dream: generation_config.json's temperature",
  },
  { key: 'seed', flag: 'seed', field: 'seed', type: 'int', metavar: 'N', range: { min: 0, max: Number.MAX_SAFE_INTEGER }, help: 'PRNG seed (sequence b of a batch uses seed + b)', defaultHelp: '0' },
  { key: 'remasking', flag: 'remasking', field: 'dyllm.remasking', type: 'enum', values: REMASKINGS, metavar: 'R', help: 'which masked positions to commit', defaultHelp: 'low_confidence' },
  { key: 'cfgScale', flag: 'cfg-scale', field: 'dyllm.cfg_scale', type: 'number', metavar: 'S', range: { min: 0, max: 100 }, help: 'classifier-free guidance scale', defaultHelp: '0' },
  { key: 'logitsEosInf', flag: 'logits-eos-inf', field: 'dyllm.logits_eos_inf', type: 'boolean', help: 'never predict EOS' },
  { key: 'confidenceEosEotInf', flag: 'confidence-eos-eot-inf', field: 'dyllm.confidence_eos_eot_inf', type: 'boolean', help: 'commit EOS/EoT last (generate.py quirk reproduced)' },
  { key: 'alg', flag: 'alg', field: 'dyllm.alg', type: 'enum', values: DREAM_ALGS, metavar: 'A', help: 'confidence of a candidate', defaultHelp: "generation_config.json's alg, else origin" },
  { key: 'algTemp', flag: 'alg-temp', field: 'dyllm.alg_temp', type: 'number', nullable: true, metavar: 'T', range: { min: 0, max: 100 }, help: 'randomness of the position choice', defaultHelp: "generation_config.json's alg_temp, else off" },
  { key: 'topP', flag: 'top-p', field: 'top_p', type: 'number', nullable: true, metavar: 'P', range: { min: 0, max: 1, minExclusive: true }, help: 'nucleus sampling', defaultHelp: "generation_config.json's top_p, else off" },
  { key: 'topK', flag: 'top-k', field: 'top_k', type: 'int', nullable: true, metavar: 'K', range: (c) => ({ min: 1, max: c.vocabSize, maxWhy: 'the vocabulary size' }), help: 'top-k sampling', defaultHelp: "generation_config.json's top_k, else off" },
  { key: 'eps', flag: 'eps', field: 'dyllm.eps', type: 'number', metavar: 'E', range: { min: 0, max: 0.5 }, help: 'timestep floor', defaultHelp: "generation_config.json's eps, else 0.001" },
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
 * against its declared range and the family's own rules. Nothing is allocated before this succeeds. The prompt's
 * share of the maximum sequence length is checked when the prompt is known (DenoiseRun).
 */
export function resolveOptions(model: OptionModel, input: GenerateOptionsInput, gen: GenerationDefaults = {}, limits: OptionLimits = {}): GenerateOptions {
  refuseUnknown(input, GENERATION_OPTIONS, 'generation');
  const base = optionContext(model, limits);
  const family = familyOf(base.arch);
  /** Value from the input, else generation_config.json's key, else the fallback; a bad config value names the file. */
  const pick = (key: keyof GenerateOptionsInput, fallback: unknown, ctx: OptionContext = base, fromConfig = true): unknown => {
    const v = input[key];
    if (v !== undefined) return checkOption(spec(key), v, ctx);
    const hf = fromConfig ? family.generationConfig[key] : undefined;
    if (hf && gen[hf] !== undefined && gen[hf] !== null) {
      try {
        return checkOption(spec(key), gen[hf], ctx);
      } catch (e) {
        throw new ConfigError(`generation_config.json "${hf}": ${(e as OptionError).detail} (fix the model folder's generation_config.json, or pass --${spec(key).flag})`);
      }
    }
    return checkOption(spec(key), fallback, ctx);
  };
  const problem = (p: { option: string; detail: string } | null): void => {
    if (p) throw new OptionError(p.option, p.detail);
  };
  const genLength = pick('genLength', 128) as number;
  const ctx: OptionContext = { ...base, genLength };
  // An explicit gen length without steps / block length means "one step per position, one block": the config's
  // steps and block length go with its own max_new_tokens.
  const configLen = input.genLength === undefined;
  const steps = pick('steps', genLength, ctx, configLen) as number;
  const blockLength = pick('blockLength', genLength, ctx, configLen) as number;
  problem(family.checkSchedule(genLength, steps, blockLength, input.blockLength));
  const opts: GenerateOptions = {
    genLength,
    steps,
    blockLength,
    temperature: pick('temperature', 0) as number,
    seed: pick('seed', 0) as number,
    remasking: pick('remasking', 'low_confidence') as LladaRemasking,
    cfgScale: pick('cfgScale', 0) as number,
    logitsEosInf: pick('logitsEosInf', false) as boolean,
    confidenceEosEotInf: pick('confidenceEosEotInf', false) as boolean,
    alg: pick('alg', 'origin') as DreamAlg,
    algTemp: pick('algTemp', null) as number | null,
    topP: pick('topP', null) as number | null,
    topK: pick('topK', null) as number | null,
    eps: pick('eps', 1e-3) as number,
    parallelThreshold: pick('parallelThreshold', null) as number | null,
    stopAtEos: pick('stopAtEos', false) as boolean,
    batchLayout: pick('batchLayout', 'packed') as BatchLayout,
  };
  problem(family.checkOptions(opts));
  return Object.freeze(opts);
}

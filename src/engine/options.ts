/**
 * Generation options: one validated, frozen object per request. Defaults follow the official code of each
 * family (LLaDA generate.py, Dream generation_config.json / DreamGenerationConfig), so a request that sets
 * nothing reproduces the official output; speed features (parallel decoding, early stop, acceleration) are off
 * unless asked for. Validation errors are ConfigErrors that name the option, the value and what is allowed.
 */
import type { Architecture, GenerationDefaults } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import type { DreamAlg, LladaRemasking } from '../sampler/confidence.js';

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

function int(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new ConfigError(`${name}: expected an integer ≥ ${min}, found ${JSON.stringify(v)}`);
  return v;
}

function num(name: string, v: unknown, lo: number, hi: number, loOpen = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (loOpen ? v <= lo : v < lo) || v > hi) {
    throw new ConfigError(`${name}: expected a number in ${loOpen ? '(' : '['}${lo}, ${hi}], found ${JSON.stringify(v)}`);
  }
  return v;
}

function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(`${name}: expected true or false, found ${JSON.stringify(v)}`);
  return v;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) throw new ConfigError(`${name}: expected one of ${allowed.join(', ')}, found ${JSON.stringify(v)}`);
  return v as T;
}

function nullable<T>(v: unknown, f: (v: unknown) => T): T | null {
  return v === null || v === undefined ? null : f(v);
}

/** Merge user options over the family's defaults (and the model's generation_config.json), then validate. */
export function resolveOptions(arch: Architecture, input: GenerateOptionsInput, gen: GenerationDefaults = {}): GenerateOptions {
  const known = new Set<string>(['genLength', 'steps', 'blockLength', 'temperature', 'seed', 'remasking', 'cfgScale', 'logitsEosInf', 'confidenceEosEotInf', 'alg', 'algTemp', 'topP', 'topK', 'eps', 'parallelThreshold', 'stopAtEos', 'batchLayout']);
  for (const k of Object.keys(input)) if (!known.has(k)) throw new ConfigError(`unknown generation option "${k}"`);
  const dream = arch === 'dream';
  const pick = <T>(k: keyof GenerateOptionsInput, hf: string | null, fallback: T): unknown => {
    const v = input[k];
    if (v !== undefined) return v;
    if (hf && gen[hf] !== undefined && gen[hf] !== null) return gen[hf];
    return fallback;
  };
  // generation_config.json may carry max_new_tokens / steps (HF and Dream keys) and block_length (LLaDA).
  const genLength = int('genLength', pick('genLength', 'max_new_tokens', 128), 1);
  const steps = int('steps', input.genLength !== undefined && input.steps === undefined ? genLength : pick('steps', 'steps', genLength), 1);
  const blockLength = int('blockLength', input.genLength !== undefined && input.blockLength === undefined ? genLength : pick('blockLength', dream ? null : 'block_length', genLength), 1);
  if (!dream && genLength % blockLength !== 0) throw new ConfigError(`blockLength: ${blockLength} must divide genLength ${genLength}`);
  if (!dream && steps % (genLength / blockLength) !== 0) {
    throw new ConfigError(`steps: ${steps} must be a multiple of the number of blocks (genLength / blockLength = ${genLength / blockLength})`);
  }
  if (dream && input.blockLength !== undefined && input.blockLength !== genLength) {
    throw new ConfigError('blockLength: Dream has no semi-autoregressive blocks; leave it unset');
  }
  const opts: GenerateOptions = {
    genLength,
    steps,
    blockLength,
    temperature: num('temperature', pick('temperature', dream ? 'temperature' : null, 0), 0, 100),
    seed: int('seed', pick('seed', null, 0), 0),
    remasking: oneOf('remasking', pick('remasking', null, 'low_confidence'), REMASKINGS),
    cfgScale: num('cfgScale', pick('cfgScale', null, 0), 0, 100),
    logitsEosInf: bool('logitsEosInf', pick('logitsEosInf', null, false)),
    confidenceEosEotInf: bool('confidenceEosEotInf', pick('confidenceEosEotInf', null, false)),
    alg: oneOf('alg', pick('alg', dream ? 'alg' : null, 'origin'), DREAM_ALGS),
    algTemp: nullable(pick('algTemp', dream ? 'alg_temp' : null, null), (v) => num('algTemp', v, 0, 100)),
    topP: nullable(pick('topP', dream ? 'top_p' : null, null), (v) => num('topP', v, 0, 1, true)),
    topK: nullable(pick('topK', dream ? 'top_k' : null, null), (v) => int('topK', v, 1)),
    eps: num('eps', pick('eps', dream ? 'eps' : null, 1e-3), 0, 0.5),
    parallelThreshold: nullable(input.parallelThreshold, (v) => num('parallelThreshold', v, -1e9, 1)),
    stopAtEos: bool('stopAtEos', pick('stopAtEos', null, false)),
    batchLayout: oneOf('batchLayout', pick('batchLayout', null, 'packed'), ['packed', 'left-pad'] as const),
  };
  if (dream && opts.cfgScale > 0) throw new ConfigError('cfgScale: classifier-free guidance is a LLaDA sampler option; Dream has none');
  return Object.freeze(opts);
}

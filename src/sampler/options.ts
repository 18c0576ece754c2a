/**
 * The options of one request's denoising, as resolved: engine/options.ts declares each one (flag, HTTP field, range,
 * default) and resolves them; the families (families/) and their samplers read them.
 */
import type { DreamAlg, LladaRemasking } from './confidence.js';

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

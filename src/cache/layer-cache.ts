/**
 * Per-sequence, per-layer activation caches of DyLLM (arXiv 2603.08026): for every position of one
 * sequence and every layer, K (after RoPE), V, the attention context C (heads concatenated, before the output
 * projection) and the FFN output F. The model reads and writes them under a RecomputePlan; this module only owns
 * the storage and its size. Stored in fp32 (the engine's activation dtype).
 */
import type { ModelConfig } from '../load/config.js';

export interface LayerStore {
  readonly k: Float32Array; // [N, Hkv·Dh] post-RoPE keys
  readonly v: Float32Array; // [N, Hkv·Dh]
  readonly c: Float32Array; // [N, H·Dh] attention context before o_proj
  readonly f: Float32Array; // [N, D] FFN (down-projection) output
  readonly lse: Float32Array; // [N, H] log-sum-exp of each row's attention scores (for the rescale update)
  /** [N, D] o_proj output C·Woᵀ, kept only when the cache is built with `outputs` (empty otherwise). */
  readonly o: Float32Array;
  /**
   * Kept only when the cache is built with `projections` (empty otherwise): [N, H·Dh] each row's Q (after RoPE), and
   * the normed layer inputs [N, D] its Q (`qIn`) and its cached K/V (`kvIn`) were last projected from — NaN until
   * first projected, so an unset reference never matches (plan `qkvTol`).
   */
  readonly q: Float32Array;
  readonly qIn: Float32Array;
  readonly kvIn: Float32Array;
}

/**
 * The LM head's cache (plan `headTol`): for positions [base, N), each row's logits at its last computation and the
 * normed final hidden state they came from (NaN until first computed).
 */
export interface HeadStore {
  readonly base: number;
  readonly logits: Float32Array; // [N − base, V]
  readonly hIn: Float32Array; // [N − base, D]
}

export interface SequenceCacheOptions {
  /** Also keep each row's o_proj output, so a step can update it by the projection of ΔV (plan `reuseOutput`). */
  readonly outputs?: boolean;
  /** Also keep each row's Q and the inputs of its Q and K/V, so a step can skip unmoved rows' projections (plan `qkvTol`). */
  readonly projections?: boolean;
  /** Also keep logits rows of positions [head.base, N) and their inputs (plan `headTol`). */
  readonly head?: { readonly base: number };
}

export class SequenceCache {
  readonly layers: LayerStore[];
  /** Tokens at the last forward (to find the positions committed since). */
  readonly lastTokens: Int32Array;
  /** Whether the caches hold a full dense pass yet. */
  filled = false;

  readonly keepsOutputs: boolean;
  readonly keepsProjections: boolean;
  readonly head: HeadStore | null;

  constructor(readonly cfg: ModelConfig, readonly length: number, opts: SequenceCacheOptions = {}) {
    this.keepsOutputs = opts.outputs ?? false;
    this.keepsProjections = opts.projections ?? false;
    const oLen = this.keepsOutputs ? length * cfg.hiddenSize : 0;
    const kv = cfg.numKvHeads * cfg.headDim;
    const q = cfg.numHeads * cfg.headDim;
    const pLen = this.keepsProjections ? length : 0;
    const nan = (n: number): Float32Array => new Float32Array(n).fill(Number.NaN);
    this.layers = Array.from({ length: cfg.numLayers }, () => ({
      k: new Float32Array(length * kv),
      v: new Float32Array(length * kv),
      c: new Float32Array(length * q),
      f: new Float32Array(length * cfg.hiddenSize),
      lse: new Float32Array(length * cfg.numHeads),
      o: new Float32Array(oLen),
      q: new Float32Array(pLen * q),
      qIn: nan(pLen * cfg.hiddenSize),
      kvIn: nan(pLen * cfg.hiddenSize),
    }));
    this.lastTokens = new Int32Array(length).fill(-1);
    if (opts.head) {
      const base = opts.head.base;
      if (!(Number.isInteger(base) && base >= 0 && base <= length)) throw new RangeError(`SequenceCache: head base ${base} outside [0, ${length}]`);
      this.head = { base, logits: new Float32Array((length - base) * cfg.vocabSize), hIn: nan((length - base) * cfg.hiddenSize) };
    } else {
      this.head = null;
    }
  }

  nbytes(): number {
    const head = this.head ? (this.length - this.head.base) * headBytesPerToken(this.cfg) : 0;
    return this.length * cacheBytesPerToken(this.cfg, this.keepsOutputs, this.keepsProjections) + head;
  }
}

/** Bytes of the LM head cache per cached position: its logits row (V) and its input (D), fp32. */
export function headBytesPerToken(cfg: ModelConfig): number {
  return (cfg.vocabSize + cfg.hiddenSize) * 4;
}

/**
 * Cache bytes per token over all layers: L · (2·Hkv·Dh + H·Dh + D + H) fp32 values — the paper's per-layer
 * `2d/g + 2d` elements (d = H·Dh = D, g = H/Hkv) at 4 bytes each, plus one log-sum-exp per head (H) that the
 * rescale update needs, plus D for the o_proj outputs when they are kept, plus H·Dh + 2·D for Q and the two projection
 * inputs when they are kept.
 */
export function cacheBytesPerToken(cfg: ModelConfig, outputs = false, projections = false): number {
  const perLayer = 2 * cfg.numKvHeads * cfg.headDim + cfg.numHeads * cfg.headDim + cfg.hiddenSize + cfg.numHeads + (outputs ? cfg.hiddenSize : 0)
    + (projections ? cfg.numHeads * cfg.headDim + 2 * cfg.hiddenSize : 0);
  return cfg.numLayers * perLayer * 4;
}

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
}

export interface SequenceCacheOptions {
  /** Also keep each row's o_proj output, so a step can update it by the projection of ΔV (plan `reuseOutput`). */
  readonly outputs?: boolean;
}

export class SequenceCache {
  readonly layers: LayerStore[];
  /** Tokens at the last forward (to find the positions committed since). */
  readonly lastTokens: Int32Array;
  /** Whether the caches hold a full dense pass yet. */
  filled = false;

  readonly keepsOutputs: boolean;

  constructor(readonly cfg: ModelConfig, readonly length: number, opts: SequenceCacheOptions = {}) {
    this.keepsOutputs = opts.outputs ?? false;
    const oLen = this.keepsOutputs ? length * cfg.hiddenSize : 0;
    const kv = cfg.numKvHeads * cfg.headDim;
    const q = cfg.numHeads * cfg.headDim;
    this.layers = Array.from({ length: cfg.numLayers }, () => ({
      k: new Float32Array(length * kv),
      v: new Float32Array(length * kv),
      c: new Float32Array(length * q),
      f: new Float32Array(length * cfg.hiddenSize),
      lse: new Float32Array(length * cfg.numHeads),
      o: new Float32Array(oLen),
    }));
    this.lastTokens = new Int32Array(length).fill(-1);
  }

  nbytes(): number {
    return this.length * cacheBytesPerToken(this.cfg, this.keepsOutputs);
  }
}

/**
 * Cache bytes per token over all layers: L · (2·Hkv·Dh + H·Dh + D + H) fp32 values — the paper's per-layer
 * `2d/g + 2d` elements (d = H·Dh = D, g = H/Hkv) at 4 bytes each, plus one log-sum-exp per head (H) that the
 * rescale update needs, plus D for the o_proj outputs when they are kept.
 */
export function cacheBytesPerToken(cfg: ModelConfig, outputs = false): number {
  const perLayer = 2 * cfg.numKvHeads * cfg.headDim + cfg.numHeads * cfg.headDim + cfg.hiddenSize + cfg.numHeads + (outputs ? cfg.hiddenSize : 0);
  return cfg.numLayers * perLayer * 4;
}

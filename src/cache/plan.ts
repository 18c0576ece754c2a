/**
 * RecomputePlan: what the model must recompute in one cached step, decided outside the model. Per sequence it
 * names the query rows R and the salient set entering layer 0; a SaliencyPolicy picks each layer's salient set
 * from the cosine of new versus cached contexts. The model obeys the plan (models/forward/planned.ts); policies
 * (cache/saliency.ts) never touch activations.
 */
import type { SequenceCache } from './layer-cache.js';

export interface SequencePlan {
  readonly cache: SequenceCache;
  /** Query rows R: positions, ascending. */
  readonly rows: Int32Array;
  /** A_in(0): positions (a subset of rows) whose K/V and exact attention are recomputed in layer 0. */
  readonly salientIn: Int32Array;
}

export interface SaliencyPolicy {
  readonly name: string;
  /**
   * Every query row salient in every layer, layer 0 included: K/V, exact attention and FFN for all rows. With
   * R = all positions this computes exactly the dense forward (and is how dense steps fill the caches).
   */
  readonly forceAll: boolean;
  /** A_out(l): indices (into the step's concatenated query rows) of rows to treat as salient, ascending. */
  select(layer: number, cos: Float32Array, n: number): Int32Array;
}

/**
 * How non-salient rows' contexts are updated when the K/V of the salient columns A change:
 * 'delta' — DyLLM as published: C_old + S_new·ΔV (drops the change of the attention weights themselves);
 * 'rescale' — exact when the query is unchanged: renormalise C_old by Z_old/Z_new, swap the old columns' terms
 *   for the new ones (Z_new from the dense QKᵀ);
 * 'rescale-incremental' — the same with Z_new updated from the changed columns only (no dense QKᵀ).
 */
export type AttnUpdate = 'delta' | 'rescale' | 'rescale-incremental';

export interface RecomputePlan {
  readonly sequences: readonly SequencePlan[];
  readonly policy: SaliencyPolicy;
  readonly attnUpdate?: AttnUpdate;
  /**
   * With the 'delta' update, o_proj is linear: C_new·Woᵀ = C_old·Woᵀ + Σ_c p_c·(ΔV_c·Wo_hᵀ). When set, a sequence
   * whose salient set is small enough ('always': every sequence, a testing hook) updates its cached o_proj outputs by
   * the projected ΔV columns instead of projecting every query row's context (same result up to fp32 rounding;
   * needs caches built with `outputs`).
   */
  readonly reuseOutput?: 'when-cheaper' | 'always';
}

/** What a cached step actually recomputed (summed over the batch). */
export interface StepCounts {
  /** |A_out(l)| per layer. */
  readonly salientPerLayer: number[];
  /** Σ_l |A_in(l)|: rows whose K/V were recomputed. */
  kvRows: number;
  /** Σ_l |A_out(l)|: rows whose FFN was recomputed. */
  ffnRows: number;
  /** Σ_l |R|: query rows. */
  queryRows: number;
  /** (sequence, layer) pairs whose o_proj outputs were updated through the projected ΔV columns (reuseOutput). */
  oProjReused: number;
  /** Per sequence, positions salient in the last layer. */
  recomputed: Int32Array[];
}

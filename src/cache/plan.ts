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
  /**
   * Beyond the paper (off when absent): a query row whose normed layer input h moved by at most this relative L2
   * distance (‖h − h_ref‖ ≤ tol·‖h_ref‖, h_ref the input its cached Q or K/V were projected from) reuses its cached
   * Q, and an A_in row likewise its cached K/V, instead of projecting them. 0 reuses only bit-identical inputs (the
   * paper's result exactly). Needs caches built with `projections`. Ignored by force-all (dense) steps, which project
   * every row and refresh the references.
   */
  readonly qkvTol?: number;
  /**
   * Beyond the paper (off when absent): a logits row whose normed final hidden state moved by at most this relative
   * L2 distance since its cached logits were computed reuses them instead of running the LM head. 0 reuses only
   * bit-identical inputs. Needs caches built with `head` covering the wanted rows. Ignored by force-all steps.
   */
  readonly headTol?: number;
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
  /** Σ_l query rows whose Q came from the cache (plan qkvTol). */
  qReused?: number;
  /** Σ_l A_in rows whose K/V came from the cache (plan qkvTol). */
  kvReused?: number;
  /** Logits rows copied from the head cache (plan headTol), and logits rows returned. */
  headReused?: number;
  headRows?: number;
  /** Per sequence, positions salient in the last layer. */
  recomputed: Int32Array[];
  /**
   * When given (one entry per sequence of the plan, zeroed), the same counts split by sequence, so a forward that
   * merges several requests' plans can report each request its own (engine/accel/merge.ts).
   */
  readonly perSequence?: SequenceCounts[];
}

/** One sequence's share of StepCounts. */
export interface SequenceCounts {
  readonly salientPerLayer: number[];
  kvRows: number;
  ffnRows: number;
  queryRows: number;
  oProjReused: number;
}

/** Zeroed StepCounts for `numLayers` layers (with per-sequence counts for `perSequence` sequences when given). */
export function emptyCounts(numLayers: number, perSequence?: number): StepCounts {
  const zero = (): number[] => new Array<number>(numLayers).fill(0);
  return {
    salientPerLayer: zero(), kvRows: 0, ffnRows: 0, queryRows: 0, oProjReused: 0, recomputed: [],
    ...(perSequence === undefined ? {} : { perSequence: Array.from({ length: perSequence }, () => ({ salientPerLayer: zero(), kvRows: 0, ffnRows: 0, queryRows: 0, oProjReused: 0 })) }),
  };
}

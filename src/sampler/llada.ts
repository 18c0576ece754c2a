/**
 * One step of LLaDA's sampler (ML-GSAI/LLaDA generate.py) for ONE sequence: choose x0 per row, score it,
 * and commit the top-k candidates. It owns the generate.py quirks (logits_eos_inf, the confidence_eos_eot_inf
 * chained assignment, float64 Gumbel) and must not know about blocks, prompts or the model: its family
 * (families/llada.ts) passes the response rows, which are still masks, which lie in the current block, and this
 * step's count k.
 *
 * Draw order (all from the one Rng, T > 0 or `random` remasking only):
 *  1. Gumbel, T > 0: for every row that is masked AND a candidate, in ascending row order, V draws
 *     u = rng.nextFloat64() in vocabulary order; x0 = argmax_v exp(l_v) / (−ln u_v)^T in float64.
 *  2. `random` remasking: one rng.nextFloat32() per masked candidate row, ascending.
 *  3. Only when k exceeds the number of masked candidates: the masked non-candidate rows that fill the gap, in
 *     ascending order, each with V Gumbel draws as in 1 (T > 0).
 * Tie rules: argmax takes the lowest vocabulary index; ranking by confidence takes the lower row index first.
 * Confidences are rounded to fp32 before ranking (generate.py ranks fp32/bf16 values).
 */
import assert from 'node:assert';
import { ConfigError } from '../load/errors.js';
import { argmaxRow, lladaRemaskingConfidence, parseLladaRemasking, scoreRow, softmaxRow, type LladaRemasking, type RowStats } from './confidence.js';
import { commitCount, EMPTY_SELECTION, packSelection, rankDescending, type Selection } from './pick.js';
import type { Rng } from './rng.js';

export type { Selection } from './pick.js';

export interface LladaOptions {
  /** 0 = greedy (argmax of the logits); > 0 = float64 Gumbel-max at this temperature. */
  readonly temperature: number;
  readonly remasking: LladaRemasking;
  /** generate.py `logits_eos_inf`: the EOS logit is −inf before anything else. */
  readonly logitsEosInf: boolean;
  /** generate.py `confidence_eos_eot_inf` (quirk reproduced; see lladaSelect). */
  readonly confidenceEosEotInf: boolean;
  readonly eosId: number;
  readonly eotId: number;
  /** null = off; else also commit every candidate whose confidence is ≥ this (at least one row). */
  readonly parallelThreshold: number | null;
}

export interface LladaSelectArgs {
  readonly logits: Float32Array; // [R, V]
  readonly masked: Uint8Array; // [R] 1 = still the mask token
  readonly candidate: Uint8Array; // [R] 1 = inside the current block (may commit)
  /** This step's count from lladaTransferCounts. */
  readonly k: number;
  readonly options: LladaOptions;
  readonly rng: Rng;
  /** Optional precomputed row statistics (used for greedy low-confidence without the EOS flags). */
  readonly stats?: RowStats | null;
  /**
   * The vocabulary size, for when `logits` is empty because `stats` stand in for it (an asynchronous step that read
   * back only statistics: engine/generate.ts). Otherwise V comes from the logits.
   */
  readonly vocabSize?: number;
}

/** ConfigError for options no step could use. `vocabSize` (when known) bounds the EOS / EOT ids. */
export function validateLladaOptions(o: LladaOptions, vocabSize?: number): void {
  if (!Number.isFinite(o.temperature) || o.temperature < 0) {
    throw new ConfigError(`temperature: expected a finite number >= 0, found ${o.temperature}`);
  }
  parseLladaRemasking(o.remasking);
  if (o.parallelThreshold !== null && !Number.isFinite(o.parallelThreshold)) {
    throw new ConfigError(`parallel threshold: expected null or a finite number, found ${o.parallelThreshold}`);
  }
  if (o.logitsEosInf || o.confidenceEosEotInf) {
    for (const [name, id] of [['eosId', o.eosId], ['eotId', o.eotId]] as const) {
      if (!Number.isSafeInteger(id) || id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
        throw new ConfigError(`${name}: expected a token id in [0, ${vocabSize ?? 'V'}), found ${id}`);
      }
    }
  }
}

/**
 * generate.py, one step, one sequence. x0: argmax of the logits (T = 0) or of exp(l)/(−ln u)^T (T > 0), after
 * `logitsEosInf`. Confidence: softmax(logits)[x0] (`low_confidence`) or a uniform draw (`random`).
 * confidence_eos_eot_inf quirk: after x0 is chosen, `noisy[EOS] = logits[EOT] = −inf`; at T = 0 `noisy` is
 * `logits`, so the softmax sees EOS and EOT at −inf, at T > 0 only EOT. Their confidence becomes 0 and the other
 * rows' probabilities are renormalised without them; x0 itself is unchanged.
 * Only masked candidate rows have finite confidence; the top k of them commit (plus threshold rows). If k exceeds
 * their number, torch.topk would also take −inf rows: the masked non-candidate rows fill the gap in ascending
 * order. Rows that are not masked are never returned (generate.py rewrites them with their own token).
 */
export function lladaSelect(a: LladaSelectArgs): Selection {
  const { logits, masked, candidate, k, options: o, rng } = a;
  const R = masked.length;
  assert.equal(candidate.length, R, 'candidate and masked must have the same length');
  assert(Number.isSafeInteger(k) && k >= 0, `k must be a non-negative integer, got ${k}`);
  if (R === 0) return EMPTY_SELECTION;
  const statsOnly = logits.length === 0 && a.stats !== undefined && a.stats !== null && a.vocabSize !== undefined;
  const V = statsOnly ? a.vocabSize! : logits.length / R;
  assert(Number.isInteger(V) && V > 0, `logits length ${logits.length} is not a multiple of ${R} rows`);
  validateLladaOptions(o, V);
  const T = o.temperature;
  const kind = lladaRemaskingConfidence(o.remasking);
  if (statsOnly) {
    const fastOk = T === 0 && kind === 'probability' && !o.logitsEosInf && !o.confidenceEosEotInf;
    assert(fastOk, 'row statistics without logits stand in only for greedy low_confidence without the EOS flags');
  }

  const cand: number[] = [];
  const fill: number[] = [];
  for (let r = 0; r < R; r++) {
    if (!masked[r]) continue;
    (candidate[r] ? cand : fill).push(r);
  }

  const work = new Float64Array(V); // the row's `logits` as generate.py mutates them
  const probs = new Float64Array(V);
  const chooseX0 = (r: number): number => {
    for (let j = 0; j < V; j++) work[j] = logits[r * V + j];
    if (o.logitsEosInf) work[o.eosId] = -Infinity;
    if (T === 0) return argmaxRow(work, 0, V);
    let best = 0;
    let bv = -Infinity;
    for (let j = 0; j < V; j++) {
      const u = rng.nextFloat64();
      const v = Math.exp(work[j]) / Math.pow(-Math.log(u), T); // Gumbel in float64: arXiv:2409.02908
      if (v > bv) {
        bv = v;
        best = j;
      }
    }
    return best;
  };

  const n = cand.length;
  const x0 = new Int32Array(n);
  const conf = new Float32Array(n);
  // Greedy low-confidence without logit edits: x0 = argmax, conf = p(argmax), both in the precomputed statistics.
  const fast = a.stats && T === 0 && kind === 'probability' && !o.logitsEosInf && !o.confidenceEosEotInf ? a.stats : null;
  for (let i = 0; i < n; i++) {
    if (fast) {
      x0[i] = fast.argmax[cand[i]];
      conf[i] = fast.p1[cand[i]];
      continue;
    }
    x0[i] = chooseX0(cand[i]);
    if (kind === 'probability') {
      if (o.confidenceEosEotInf) {
        work[o.eotId] = -Infinity;
        if (T === 0) work[o.eosId] = -Infinity;
      }
      softmaxRow(work, 0, V, probs);
      conf[i] = scoreRow(probs, 0, V, x0[i], kind, rng);
    }
  }
  if (kind === 'random') for (let i = 0; i < n; i++) conf[i] = scoreRow(probs, 0, V, x0[i], kind, rng);

  const ranked = rankDescending(conf, n);
  const c = commitCount(conf, ranked, k, o.parallelThreshold);
  const rows: number[] = [];
  const tokens: number[] = [];
  for (let i = 0; i < c; i++) {
    rows.push(cand[ranked[i]]);
    tokens.push(x0[ranked[i]]);
  }
  const gap = Math.min(k - n, fill.length);
  for (let i = 0; i < gap; i++) {
    rows.push(fill[i]);
    tokens.push(chooseX0(fill[i]));
  }
  return packSelection(rows, tokens);
}

/**
 * One step of Dream's sampler (Dream-org/Dream-v0-Instruct-7B generation_utils.py: `sample_tokens` and the step
 * body of `_sample`) for the whole batch, because the transfer count k is the batch mean. Its family
 * (families/dream.ts) hands in logits already shifted by one position; this module never shifts, never sees mask
 * ids and never runs the model.
 *
 * Draw order (all from the one Rng):
 *  - `origin`: (1) one rng.nextFloat32() per masked row, sequences in order, rows ascending; the row unmasks when
 *    u < p_transfer = fp32(1 − s/t) (1 on the last step; the draws still happen, as torch.rand does).
 *    (2) T > 0: one rng.nextFloat64() per unmasking row, same order, for its categorical draw.
 *  - confidence algs: (1) T > 0: one rng.nextFloat64() per masked row (sequences in order, rows ascending) for
 *    x0 ~ Categorical(probs). (2) alg_temp > 0 and k > 0: one rng.nextFloat64() per masked row, same order, as
 *    Gumbel noise g = −ln(−ln u); the k rows with the largest conf/alg_temp + g commit (Gumbel-top-k, the same
 *    law as torch.multinomial(softmax(conf/alg_temp), k) without replacement).
 * Categorical draw: inverse CDF, the first token whose running sum of probabilities (vocabulary order) exceeds
 * u · Σp; a zero-probability token is never drawn.
 * Tie rules: argmax / max take the lowest vocabulary index; top-k over rows takes the lower row index first;
 * top-p sorts equal logits by lower index first. Confidences are rounded to fp32 before ranking.
 */
import assert from 'node:assert';
import { ConfigError } from '../load/errors.js';
import {
  applyTopK,
  applyTopP,
  argmaxRow,
  dreamAlgConfidence,
  parseDreamAlg,
  scoreRow,
  softmaxRow,
  type DreamAlg,
} from './confidence.js';
import type { RowStats } from './confidence.js';
import { packSelection, rankDescending, type Selection } from './pick.js';
import type { Rng } from './rng.js';
import { dreamTransferCount } from './schedule.js';

export type { Selection } from './pick.js';

/** The arguments of `sample_tokens`; `alg` picks the score (origin → probability). */
export interface DreamSamplingOptions {
  readonly temperature: number;
  /** null or 1 = off; else keep the nucleus (applied after dividing by T, before top-k). */
  readonly topP: number | null;
  /** null = off; else an integer ≥ 1. */
  readonly topK: number | null;
  readonly alg: DreamAlg;
}

export interface DreamOptions extends DreamSamplingOptions {
  /** null or 0 = deterministic top-k over rows; > 0 = sample rows from softmax(conf / algTemp). */
  readonly algTemp: number | null;
  /** null = off; else also commit every masked row whose score is ≥ this (scale depends on alg). */
  readonly parallelThreshold: number | null;
}

export interface DreamSequence {
  readonly logits: Float32Array; // [R, V], already shifted
  readonly masked: Uint8Array; // [R] 1 = still the mask token
  /** Optional precomputed row statistics (used at temperature 0 without top-p/top-k). */
  readonly stats?: RowStats | null;
  /** The vocabulary size, for when `logits` is empty because `stats` stand in for it (engine/generate.ts). */
  readonly vocabSize?: number;
}

export interface DreamSelectArgs {
  readonly sequences: readonly DreamSequence[];
  /** Step index i in [0, steps). */
  readonly step: number;
  /** dreamTimesteps(steps, eps): steps + 1 values. */
  readonly timesteps: Float32Array;
  readonly options: DreamOptions;
  readonly rng: Rng;
}

export function validateDreamSamplingOptions(o: DreamSamplingOptions): void {
  if (!Number.isFinite(o.temperature) || o.temperature < 0) {
    throw new ConfigError(`temperature: expected a finite number >= 0, found ${o.temperature}`);
  }
  if (o.topP !== null && !(o.topP >= 0 && o.topP <= 1)) {
    throw new ConfigError(`top_p: expected null or a number in [0, 1], found ${o.topP}`);
  }
  if (o.topK !== null && !(Number.isSafeInteger(o.topK) && o.topK >= 1)) {
    throw new ConfigError(`top_k: expected null or an integer >= 1, found ${o.topK}`);
  }
  parseDreamAlg(o.alg);
}

export function validateDreamOptions(o: DreamOptions): void {
  validateDreamSamplingOptions(o);
  if (o.algTemp !== null && !(Number.isFinite(o.algTemp) && o.algTemp >= 0)) {
    throw new ConfigError(`alg_temp: expected null or a finite number >= 0, found ${o.algTemp}`);
  }
  if (o.parallelThreshold !== null) {
    if (!Number.isFinite(o.parallelThreshold)) {
      throw new ConfigError(`parallel threshold: expected null or a finite number, found ${o.parallelThreshold}`);
    }
    if (o.alg === 'origin') {
      throw new ConfigError(`parallel threshold needs a confidence alg (maskgit_plus, topk_margin, entropy), found alg origin`);
    }
  }
}

/** Inverse-CDF draw from probs[0, V) with u in [0, 1). */
function drawCategorical(probs: Float64Array, V: number, u: number): number {
  let total = 0;
  for (let j = 0; j < V; j++) total += probs[j];
  if (!(total > 0) || !Number.isFinite(total)) return -1;
  const target = u * total;
  let cum = 0;
  let last = -1;
  for (let j = 0; j < V; j++) {
    const p = probs[j];
    if (!(p > 0)) continue;
    cum += p;
    last = j;
    if (cum > target) return j;
  }
  return last; // rounding left the target above the final sum
}

/**
 * `sample_tokens` on logits rows `rows` of a [R, V] block (in the given order): divide by T (T > 0), top-p,
 * top-k, softmax; T > 0 draws x0 ~ Categorical(probs) with conf = probs[x0], T = 0 takes max/argmax (also the
 * fallback when probs are not a distribution, as Dream's `except`). `topk_margin` replaces conf with p1 − p2,
 * `entropy` with Σ p·log(p + 1e-10); x0 is the same for every alg. Output index i belongs to rows[i].
 */
export function dreamSampleTokens(
  logits: Float32Array,
  vocabSize: number,
  rows: Int32Array,
  opts: DreamSamplingOptions,
  rng: Rng,
  stats: RowStats | null = null,
): { conf: Float32Array; x0: Int32Array } {
  validateDreamSamplingOptions(opts);
  const V = vocabSize;
  assert(Number.isSafeInteger(V) && V > 0 && logits.length % V === 0, `logits length ${logits.length} is not a multiple of V = ${V}`);
  const R = logits.length / V;
  const T = opts.temperature;
  const kind = dreamAlgConfidence(opts.alg);
  const plain = T === 0 && (opts.topP === null || opts.topP >= 1) && opts.topK === null;
  if (stats && plain && (kind !== 'entropy' || stats.negEntropy) && kind !== 'random') {
    // max/argmax and the confidence straight from the precomputed statistics of the untouched softmax.
    const conf = new Float32Array(rows.length);
    const x0 = new Int32Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      x0[i] = stats.argmax[r];
      conf[i] = kind === 'probability' ? stats.p1[r] : kind === 'margin' ? stats.p1[r] - stats.p2[r] : stats.negEntropy![r];
    }
    return { conf, x0 };
  }
  const work = new Float64Array(V);
  const probs = new Float64Array(V);
  const conf = new Float32Array(rows.length);
  const x0 = new Int32Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    assert(Number.isInteger(r) && r >= 0 && r < R, `row ${r} outside [0, ${R})`);
    for (let j = 0; j < V; j++) work[j] = T > 0 ? logits[r * V + j] / T : logits[r * V + j];
    if (opts.topP !== null && opts.topP < 1) applyTopP(work, 0, V, opts.topP);
    if (opts.topK !== null) applyTopK(work, 0, V, opts.topK);
    softmaxRow(work, 0, V, probs);
    let x = -1;
    if (T > 0) x = drawCategorical(probs, V, rng.nextFloat64());
    if (x < 0) x = argmaxRow(probs, 0, V);
    x0[i] = x;
    conf[i] = scoreRow(probs, 0, V, x, kind, rng);
  }
  return { conf, x0 };
}

function maskedRows(masked: Uint8Array): Int32Array {
  let n = 0;
  for (let r = 0; r < masked.length; r++) if (masked[r]) n++;
  const out = new Int32Array(n);
  n = 0;
  for (let r = 0; r < masked.length; r++) if (masked[r]) out[n++] = r;
  return out;
}

function vocabOf(s: DreamSequence): number {
  const R = s.masked.length;
  if (R === 0) return 0;
  if (s.logits.length === 0 && s.stats && s.vocabSize !== undefined) return s.vocabSize;
  const V = s.logits.length / R;
  assert(Number.isInteger(V) && V > 0, `logits length ${s.logits.length} is not a multiple of ${R} rows`);
  return V;
}

/**
 * Dream `_sample`, one step i, whole batch. Returns one Selection per sequence (rows ascending).
 * `origin`: each masked row independently unmasks with probability 1 − s/t (1 on the last step).
 * Otherwise k = dreamTransferCount(total masked, B, t, s, last step), shared by all sequences; per sequence the
 * top k masked rows by score commit (alg_temp > 0: k sampled without replacement), plus, with a threshold, every
 * masked row scoring ≥ it (at least one). Deviation: k is capped at the sequence's own masked count, where
 * Dream's topk would pick non-masked positions and write the mask id into them (reachable only when mask counts
 * differ across the batch).
 */
export function dreamSelect(a: DreamSelectArgs): Selection[] {
  const { sequences, step, timesteps, options: o, rng } = a;
  validateDreamOptions(o);
  const steps = timesteps.length - 1;
  assert(steps >= 1, 'timesteps must hold steps + 1 >= 2 values');
  assert(Number.isSafeInteger(step) && step >= 0 && step < steps, `step ${step} outside [0, ${steps})`);
  const last = step === steps - 1;
  const t = timesteps[step];
  const s = timesteps[step + 1];
  const rowsOf = sequences.map((q) => maskedRows(q.masked));

  if (o.alg === 'origin') {
    const pTransfer = last ? 1 : Math.fround(1 - Math.fround(s / t));
    const chosen = rowsOf.map((rows) => rows.filter(() => rng.nextFloat32() < pTransfer));
    return sequences.map((q, b) => {
      const rows = chosen[b];
      if (rows.length === 0) return packSelection([], []);
      const { x0 } = dreamSampleTokens(q.logits, vocabOf(q), rows, o, rng, q.stats ?? null);
      return packSelection(Array.from(rows), Array.from(x0));
    });
  }

  const scored = sequences.map((q, b) =>
    rowsOf[b].length === 0 ? { conf: new Float32Array(0), x0: new Int32Array(0) } : dreamSampleTokens(q.logits, vocabOf(q), rowsOf[b], o, rng, q.stats ?? null),
  );
  let total = 0;
  for (const rows of rowsOf) total += rows.length;
  const k = sequences.length === 0 ? 0 : dreamTransferCount(total, sequences.length, t, s, last);
  const sampleRows = o.algTemp !== null && o.algTemp > 0;

  return sequences.map((_, b) => {
    const rows = rowsOf[b];
    const { conf, x0 } = scored[b];
    const n = rows.length;
    const kk = Math.min(k, n);
    const byConf = rankDescending(conf, n);
    const pick = new Set<number>();
    if (sampleRows && k > 0) {
      const keys = new Float64Array(n);
      for (let i = 0; i < n; i++) keys[i] = conf[i] / (o.algTemp as number) - Math.log(-Math.log(rng.nextFloat64()));
      const byKey = rankDescending(keys, n);
      for (let i = 0; i < kk; i++) pick.add(byKey[i]);
    } else {
      for (let i = 0; i < kk; i++) pick.add(byConf[i]);
    }
    if (o.parallelThreshold !== null) {
      for (let i = 0; i < n && conf[byConf[i]] >= o.parallelThreshold; i++) pick.add(byConf[i]);
      if (pick.size === 0 && n > 0) pick.add(byConf[0]);
    }
    const outRows: number[] = [];
    const outTokens: number[] = [];
    for (const i of pick) {
      outRows.push(rows[i]);
      outTokens.push(x0[i]);
    }
    return packSelection(outRows, outTokens);
  });
}

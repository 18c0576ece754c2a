/**
 * Choosing which rows to commit, shared by both samplers: rank by score (ties: lower row first, NaN ranks as
 * −inf), then take the schedule's count plus, with a confidence threshold (the paper's confidence-aware parallel
 * decoding; scale-snu/DyLLM dyllm/model_executor/layers/sampler.py), every row whose score reaches it, and at least
 * one row when any exists. Returns positions into the ranked list; no model logic.
 */
import type { FloatRow } from './confidence.js';

/** Committed rows (ascending row index) and the token written at each. */
export interface Selection {
  readonly rows: Int32Array;
  readonly tokens: Int32Array;
}

export const EMPTY_SELECTION: Selection = Object.freeze({ rows: new Int32Array(0), tokens: new Int32Array(0) });

/** Indices 0..n−1 of `keys` ordered by key descending, then index ascending; NaN counts as −inf. */
export function rankDescending(keys: FloatRow, n: number = keys.length): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  const key = (i: number): number => (Number.isNaN(keys[i]) ? -Infinity : keys[i]);
  order.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka > kb ? -1 : ka < kb ? 1 : a - b;
  });
  return order;
}

/**
 * How many of the n ranked rows to commit: min(k, n); with a threshold, also every row scoring ≥ threshold (a
 * prefix of the ranking) and at least one when n > 0.
 */
export function commitCount(scores: FloatRow, ranked: Int32Array, k: number, threshold: number | null): number {
  const n = ranked.length;
  let c = Math.min(k, n);
  if (threshold !== null) {
    let above = 0;
    while (above < n && scores[ranked[above]] >= threshold) above++;
    c = Math.max(c, above, n > 0 ? 1 : 0);
  }
  return c;
}

/** Sorts (row, token) pairs by row and packs them. */
export function packSelection(rows: number[], tokens: number[]): Selection {
  const order = rows.map((_, i) => i).sort((a, b) => rows[a] - rows[b]);
  const r = new Int32Array(order.length);
  const t = new Int32Array(order.length);
  order.forEach((o, i) => {
    r[i] = rows[o];
    t[i] = tokens[o];
  });
  return { rows: r, tokens: t };
}

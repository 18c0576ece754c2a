/**
 * Per-row scoring shared by the LLaDA and Dream samplers: the confidence kinds, the mapping from each model's
 * option names, a stable softmax, and Dream's `top_p_logits` / `top_k_logits` filters. Pure functions over typed
 * rows ([V] slices at an offset); float64 arithmetic. Choosing which rows to commit lives in pick.ts.
 */
import { ConfigError } from '../load/errors.js';
import type { Rng } from './rng.js';

/** How a row's confidence is scored (one axis, as llama.cpp examples/diffusion's diffusion_algorithm). */
export type Confidence = 'probability' | 'margin' | 'entropy' | 'random';

/** Dream `alg`. `origin` has no confidence: it unmasks each position with probability 1 − s/t (dream.ts). */
export type DreamAlg = 'origin' | 'maskgit_plus' | 'topk_margin' | 'entropy';

/** LLaDA `remasking`. */
export type LladaRemasking = 'low_confidence' | 'random';

export type FloatRow = Float32Array | Float64Array;

/** torch.finfo(torch.float32).min: what Dream's top-p / top-k write (not −inf). */
export const FLOAT32_LOWEST = -3.4028234663852886e38;

/** Added to p inside the log of Dream's negative entropy. */
export const ENTROPY_EPS = 1e-10;

const DREAM_ALGS: readonly DreamAlg[] = ['origin', 'maskgit_plus', 'topk_margin', 'entropy'];
const LLADA_REMASKINGS: readonly LladaRemasking[] = ['low_confidence', 'random'];

function assertNever(x: never, what: string): never {
  throw new ConfigError(`${what}: unknown value ${JSON.stringify(x)}`);
}

/** Runtime check for values that arrive from JSON or the CLI. */
export function parseDreamAlg(s: string): DreamAlg {
  if ((DREAM_ALGS as readonly string[]).includes(s)) return s as DreamAlg;
  throw new ConfigError(`alg: expected one of ${DREAM_ALGS.join(', ')}, found ${JSON.stringify(s)}`);
}

export function parseLladaRemasking(s: string): LladaRemasking {
  if ((LLADA_REMASKINGS as readonly string[]).includes(s)) return s as LladaRemasking;
  throw new ConfigError(`remasking: expected one of ${LLADA_REMASKINGS.join(', ')}, found ${JSON.stringify(s)}`);
}

/** Dream alg → confidence kind. `origin` maps to `probability` (sample_tokens' default; the score is unused). */
export function dreamAlgConfidence(alg: DreamAlg): Confidence {
  switch (alg) {
    case 'origin':
    case 'maskgit_plus':
      return 'probability';
    case 'topk_margin':
      return 'margin';
    case 'entropy':
      return 'entropy';
    default:
      return assertNever(alg, 'alg');
  }
}

/** LLaDA remasking → confidence kind. */
export function lladaRemaskingConfidence(r: LladaRemasking): Confidence {
  switch (r) {
    case 'low_confidence':
      return 'probability';
    case 'random':
      return 'random';
    default:
      return assertNever(r, 'remasking');
  }
}

/** Index of the largest value in row [offset, offset + V); the lowest index wins ties (torch.argmax's rule). */
export function argmaxRow(row: FloatRow, offset: number, V: number): number {
  let best = 0;
  let bv = row[offset];
  for (let j = 1; j < V; j++) {
    const v = row[offset + j];
    if (v > bv) {
      bv = v;
      best = j;
    }
  }
  return best;
}

/** The largest entry of row [offset, offset + V) (−inf for an empty or all-NaN row). */
function rowMax(logits: FloatRow, offset: number, V: number): number {
  let m = -Infinity;
  for (let j = 0; j < V; j++) {
    const v = logits[offset + j];
    if (v > m) m = v;
  }
  return m;
}

/**
 * Stable softmax of row [offset, offset + V) into out[0, V): subtract the max, exp and sum in float64.
 * −inf and FLOAT32_LOWEST entries get probability 0. A row that is entirely −inf gives NaN, as torch does.
 */
export function softmaxRow(logits: FloatRow, offset: number, V: number, out: FloatRow): void {
  const m = rowMax(logits, offset, V);
  let sum = 0;
  for (let j = 0; j < V; j++) {
    const e = Math.exp(logits[offset + j] - m);
    out[j] = e;
    sum += e;
  }
  const inv = 1 / sum;
  for (let j = 0; j < V; j++) out[j] *= inv;
}

/**
 * Dream `top_p_logits`, in place on logits row [offset, offset + V): sort descending (ties: lower index first),
 * take cumulative softmax probabilities, keep the smallest prefix whose cumulative probability exceeds `topP`
 * (the first entry always kept), and write FLOAT32_LOWEST everywhere else. If the cumulative never exceeds `topP`
 * nothing is removed. Only the head of the distribution is sorted: entries with logit ≥ max − d for growing d,
 * until that head holds the crossing. Returns how many entries were kept.
 */
export function applyTopP(logits: FloatRow, offset: number, V: number, topP: number): number {
  const m = rowMax(logits, offset, V);
  let z = 0;
  for (let j = 0; j < V; j++) z += Math.exp(logits[offset + j] - m);
  const idx: number[] = [];
  for (let d = 16; ; d *= 4) {
    const thr = d > 4096 ? -Infinity : m - d;
    idx.length = 0;
    for (let j = 0; j < V; j++) if (logits[offset + j] >= thr) idx.push(j);
    idx.sort((a, b) => logits[offset + b] - logits[offset + a] || a - b);
    let cum = 0;
    let keep = -1;
    for (let r = 0; r < idx.length; r++) {
      cum += Math.exp(logits[offset + idx[r]] - m) / z;
      if (cum > topP) {
        keep = r + 1;
        break;
      }
    }
    if (keep < 0) {
      if (thr === -Infinity) return V; // never exceeds top_p: nothing removed
      continue;
    }
    const kept = idx.slice(0, keep).map((j) => [j, logits[offset + j]] as const);
    logits.fill(FLOAT32_LOWEST, offset, offset + V);
    for (const [j, v] of kept) logits[offset + j] = v;
    return keep;
  }
}

/**
 * Dream `top_k_logits`, in place: every entry strictly below the k-th largest value becomes FLOAT32_LOWEST
 * (entries tied with the k-th are all kept). `topK ≥ V` removes nothing. Returns how many entries were kept.
 */
export function applyTopK(logits: FloatRow, offset: number, V: number, topK: number): number {
  if (topK >= V) return V;
  // Min-heap of the k largest values seen so far; its root is the k-th largest.
  const heap = new Float64Array(topK);
  let n = 0;
  for (let j = 0; j < V; j++) {
    const v = logits[offset + j];
    if (n < topK) {
      let i = n++;
      heap[i] = v;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (heap[p] <= heap[i]) break;
        const t = heap[p];
        heap[p] = heap[i];
        heap[i] = t;
        i = p;
      }
    } else if (v > heap[0]) {
      heap[0] = v;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let s = i;
        if (l < n && heap[l] < heap[s]) s = l;
        if (r < n && heap[r] < heap[s]) s = r;
        if (s === i) break;
        const t = heap[s];
        heap[s] = heap[i];
        heap[i] = t;
        i = s;
      }
    }
  }
  const kth = heap[0];
  let kept = 0;
  for (let j = 0; j < V; j++) {
    if (logits[offset + j] < kth) logits[offset + j] = FLOAT32_LOWEST;
    else kept++;
  }
  return kept;
}

/**
 * A row's confidence for token `x0` from its probabilities probs[offset, offset + V):
 * probability = p[x0]; margin = p_top1 − p_top2 (Dream `topk_margin`; 0 when the top value is tied);
 * entropy = Σ p·log(p + 1e-10) (negative entropy, ≤ 0, higher = more confident);
 * random = one rng.nextFloat32() (LLaDA `random` remasking; probs unused).
 */
export function scoreRow(probs: FloatRow, offset: number, V: number, x0: number, kind: Confidence, rng: Rng): number {
  switch (kind) {
    case 'probability':
      return probs[offset + x0];
    case 'margin': {
      let p1 = -Infinity;
      let p2 = -Infinity;
      for (let j = 0; j < V; j++) {
        const p = probs[offset + j];
        if (p > p1) {
          p2 = p1;
          p1 = p;
        } else if (p > p2) p2 = p;
      }
      return V > 1 ? p1 - p2 : p1;
    }
    case 'entropy': {
      let s = 0;
      for (let j = 0; j < V; j++) {
        const p = probs[offset + j];
        s += p * Math.log(p + ENTROPY_EPS);
      }
      return s;
    }
    case 'random':
      return rng.nextFloat32();
    default:
      return assertNever(kind, 'confidence');
  }
}

/**
 * Per-row statistics of a logits block, computed outside the sampler (by the kernels, so no JS loop runs over the
 * vocabulary) and indexed like the block's rows: argmax (lowest index on ties), p1 = softmax probability of the
 * argmax, p2 = the second largest probability, negEntropy = Σ p·log(p + 1e-10) (null when not computed). The
 * samplers use them only where they equal what the full softmax would give (temperature 0, no top-p/top-k, no
 * logit edits).
 */
export interface RowStats {
  readonly argmax: Int32Array;
  readonly p1: Float64Array;
  readonly p2: Float64Array;
  readonly negEntropy: Float64Array | null;
}

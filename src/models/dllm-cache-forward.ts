/**
 * dLLM-Cache's forward pass (arXiv 2506.06295; dyllm-algorithm.md §14.2), on the same weights and kernels as the
 * dense model. Per sequence and layer it caches K (post-RoPE here: positions never change, so this equals the
 * official pre-RoPE store with RoPE applied at every attention call), V, the attention output after o_proj
 * ("AttnOut") and the FFN output ("FFNOut"). The residual stream is recomputed for every row every step; a row
 * that is not "fresh" in a layer adds its cached AttnOut and FFNOut to it.
 *
 * A step's fresh rows per sequence: the prompt rows when the prompt is refreshed, the response rows when the
 * response is refreshed, and otherwise (V-verify, 0 < ρ ≤ 1) the int(G·ρ) response rows whose new V (attn_norm then
 * v_proj, computed for ALL response rows) has the lowest cosine to the cached V. Fresh rows get Q, K, V, exact
 * attention against the whole sequence (cached K/V for the others) and the FFN; under V-verify the V cache is
 * replaced for all response rows and K only for the selected ones, as the official hook does.
 *
 * Legend: T = Σ N_b rows of the batch, D hidden, H/Hkv heads, Dh head dim, F FFN inner size.
 */
import type { ModelConfig } from '../load/config.js';
import { embedTokens, type Transformer } from './layers.js';
import type { ForwardBatch } from './types.js';

/** One sequence's dLLM-Cache storage, all layers, fp32. */
export class DllmSequenceCache {
  readonly k: Float32Array[]; // per layer [N, Hkv·Dh] post-RoPE
  readonly v: Float32Array[]; // per layer [N, Hkv·Dh]
  readonly attn: Float32Array[]; // per layer [N, D] attention output after o_proj
  readonly ffn: Float32Array[]; // per layer [N, D] FFN output

  constructor(readonly cfg: ModelConfig, readonly length: number) {
    const kv = cfg.numKvHeads * cfg.headDim;
    const D = cfg.hiddenSize;
    const mk = (w: number) => Array.from({ length: cfg.numLayers }, () => new Float32Array(length * w));
    this.k = mk(kv);
    this.v = mk(kv);
    this.attn = mk(D);
    this.ffn = mk(D);
  }

  /** Cache bytes per token: L · (2·Hkv·Dh + 2·D) fp32 values. */
  static bytesPerToken(cfg: ModelConfig): number {
    return cfg.numLayers * (2 * cfg.numKvHeads * cfg.headDim + 2 * cfg.hiddenSize) * 4;
  }
}

/** What one sequence does this step. */
export interface DllmSequencePlan {
  readonly cache: DllmSequenceCache;
  /** Positions [0, genStart) are the prompt part, [genStart, N) the response part. */
  readonly genStart: number;
  readonly refreshPrompt: boolean;
  readonly refreshGen: boolean;
}

export interface DllmStepPlan {
  readonly sequences: readonly DllmSequencePlan[];
  /** V-verify ratio ρ; 0 disables V-verify (response rows only change at refreshes). */
  readonly transferRatio: number;
}

export interface DllmCounts {
  /** Fresh (attention + FFN recomputed) rows per layer, summed over the batch. */
  readonly freshPerLayer: number[];
  /** Σ_l rows whose K was recomputed. */
  kvRows: number;
  /** Σ_l rows whose FFN was recomputed. */
  ffnRows: number;
  /** Σ_l response rows whose V was computed for the V-verify test. */
  verifyRows: number;
  /** Per sequence, the positions fresh in the last layer. */
  recomputed: Int32Array[];
}

/** One dLLM-Cache step over the batch; returns logits for batch.logitRows (every row when null). */
export function dllmCacheForward(tf: Transformer, batch: ForwardBatch, plan: DllmStepPlan, counts: DllmCounts): Float32Array {
  const cfg = tf.config;
  const be = tf.backend;
  const { seqStart } = batch;
  const B = seqStart.length - 1;
  const T = batch.tokens.length;
  const D = cfg.hiddenSize;
  const H = cfg.numHeads;
  const Hkv = cfg.numKvHeads;
  const Dh = cfg.headDim;
  const qDim = H * Dh;
  const kvDim = Hkv * Dh;
  const F = cfg.intermediateSize;
  const rho = plan.transferRatio;
  const verify = rho > 0 && rho <= 1;
  if (plan.sequences.length !== B) throw new RangeError(`dllmCacheForward: plan has ${plan.sequences.length} sequences, batch ${B}`);

  for (let b = 0; b < B; b++) {
    const N = seqStart[b + 1] - seqStart[b];
    if (plan.sequences[b].cache.length !== N) throw new RangeError(`dllmCacheForward: cache of sequence ${b} holds ${plan.sequences[b].cache.length} positions, batch ${N}`);
  }
  const { positions, keyMasks } = tf.geometry(batch);

  // Rows fixed for the whole step (refreshed parts) and the response rows tested by V-verify.
  const fixedRows: number[][] = [];
  const verifyRows: number[][] = [];
  for (let b = 0; b < B; b++) {
    const sp = plan.sequences[b];
    const s = seqStart[b];
    const N = seqStart[b + 1] - s;
    const fr: number[] = [];
    if (sp.refreshPrompt) for (let i = 0; i < sp.genStart; i++) fr.push(s + i);
    if (sp.refreshGen) for (let i = sp.genStart; i < N; i++) fr.push(s + i);
    fixedRows.push(fr);
    const vr: number[] = [];
    if (!sp.refreshGen && verify) for (let i = sp.genStart; i < N; i++) vr.push(s + i);
    verifyRows.push(vr);
  }

  const x = new Float32Array(T * D); // residual stream, every row
  const h = new Float32Array(T * D);
  embedTokens(tf.weights.embed, batch.tokens, x);
  let lastFresh: Int32Array = new Int32Array(0);

  for (let li = 0; li < tf.weights.layers.length; li++) {
    const w = tf.weights.layers[li];
    be.rmsnorm(x, T, D, w.attnNorm, cfg.rmsNormEps, h);

    // V-verify: V for every tested response row, cosine against the cache, the int(G·ρ) lowest per sequence.
    const fresh: number[] = [];
    const vRowsAll: number[] = []; // rows whose V is recomputed (fresh ∪ tested)
    let nVerify = 0;
    for (const vr of verifyRows) nVerify += vr.length;
    const vVerify = new Float32Array(nVerify * kvDim);
    if (nVerify > 0) {
      const idx = Int32Array.from(verifyRows.flat());
      be.matmul(h, nVerify, w.wv, vVerify, w.bv, idx);
      counts.verifyRows += nVerify;
    }
    let vo = 0;
    for (let b = 0; b < B; b++) {
      const sp = plan.sequences[b];
      const s = seqStart[b];
      for (const r of fixedRows[b]) fresh.push(r);
      const vr = verifyRows[b];
      if (vr.length > 0) {
        const store = sp.cache.v[li];
        const old = new Float32Array(vr.length * kvDim);
        for (let j = 0; j < vr.length; j++) old.set(store.subarray((vr[j] - s) * kvDim, (vr[j] - s + 1) * kvDim), j * kvDim);
        const cos = new Float32Array(vr.length);
        const vb = vVerify.subarray(vo * kvDim, (vo + vr.length) * kvDim);
        be.cosineRows(vb, old, vr.length, kvDim, cos);
        const k = Math.floor(vr.length * rho);
        const order = Array.from({ length: vr.length }, (_, j) => j).sort((a, c) => cos[a] - cos[c] || a - c);
        for (let j = 0; j < k; j++) fresh.push(vr[order[j]]);
        // The V cache is replaced for every tested row.
        for (let j = 0; j < vr.length; j++) store.set(vb.subarray(j * kvDim, (j + 1) * kvDim), (vr[j] - s) * kvDim);
        vo += vr.length;
      }
    }
    fresh.sort((a, c) => a - c);
    const nF = fresh.length;
    const fIdx = Int32Array.from(fresh);
    // Fresh rows not covered by V-verify need their V too.
    const testedSet = new Set<number>(verifyRows.flat());
    for (const r of fresh) if (!testedSet.has(r)) vRowsAll.push(r);
    counts.freshPerLayer[li] += nF;
    counts.kvRows += nF;
    counts.ffnRows += nF;

    if (nF > 0) {
      const q = new Float32Array(nF * qDim);
      const kNew = new Float32Array(nF * kvDim);
      be.matmul(h, nF, w.wq, q, w.bq, fIdx);
      be.matmul(h, nF, w.wk, kNew, w.bk, fIdx);
      const fPos = new Int32Array(nF);
      for (let j = 0; j < nF; j++) fPos[j] = positions[fresh[j]];
      be.rope(q, nF, H, Dh, fPos, tf.rope.cos, tf.rope.sin);
      be.rope(kNew, nF, Hkv, Dh, fPos, tf.rope.cos, tf.rope.sin);
      const nV = vRowsAll.length;
      const vNew = new Float32Array(nV * kvDim);
      if (nV > 0) be.matmul(h, nV, w.wv, vNew, w.bv, Int32Array.from(vRowsAll));
      // Scatter K (fresh) and V (fresh rows not tested) into the caches.
      let b = 0;
      for (let j = 0; j < nF; j++) {
        while (fresh[j] >= seqStart[b + 1]) b++;
        const p = fresh[j] - seqStart[b];
        plan.sequences[b].cache.k[li].set(kNew.subarray(j * kvDim, (j + 1) * kvDim), p * kvDim);
      }
      b = 0;
      for (let j = 0; j < nV; j++) {
        while (vRowsAll[j] >= seqStart[b + 1]) b++;
        const p = vRowsAll[j] - seqStart[b];
        plan.sequences[b].cache.v[li].set(vNew.subarray(j * kvDim, (j + 1) * kvDim), p * kvDim);
      }
      // Exact attention of the fresh rows against every key of their sequence; o_proj; AttnOut cache.
      const ctx = new Float32Array(nF * qDim);
      let j0 = 0;
      for (b = 0; b < B; b++) {
        let j1 = j0;
        while (j1 < nF && fresh[j1] < seqStart[b + 1]) j1++;
        if (j1 > j0) {
          const c = plan.sequences[b].cache;
          const N = c.length;
          const km = keyMasks[b];
          be.attention(q.subarray(j0 * qDim, j1 * qDim), j1 - j0, c.k[li], c.v[li], N, H, Hkv, Dh, km, ctx.subarray(j0 * qDim, j1 * qDim));
          if (tf.padding.zeroPadQueries && km) {
            for (let j = j0; j < j1; j++) if (!km[fresh[j] - seqStart[b]]) ctx.fill(0, j * qDim, (j + 1) * qDim);
          }
        }
        j0 = j1;
      }
      const o = new Float32Array(nF * D);
      be.matmul(ctx, nF, w.wo, o);
      b = 0;
      for (let j = 0; j < nF; j++) {
        while (fresh[j] >= seqStart[b + 1]) b++;
        plan.sequences[b].cache.attn[li].set(o.subarray(j * D, (j + 1) * D), (fresh[j] - seqStart[b]) * D);
      }
    }
    // Residual: every row adds its (fresh or cached) AttnOut.
    addCached(x, seqStart, plan, (c) => c.attn[li], D);

    if (nF > 0) {
      const hf = new Float32Array(nF * D);
      for (let j = 0; j < nF; j++) hf.set(x.subarray(fresh[j] * D, (fresh[j] + 1) * D), j * D);
      be.rmsnorm(hf, nF, D, w.ffnNorm, cfg.rmsNormEps, hf);
      const g = new Float32Array(nF * F);
      const u = new Float32Array(nF * F);
      const f = new Float32Array(nF * D);
      be.matmul(hf, nF, w.gate, g);
      be.matmul(hf, nF, w.up, u);
      be.siluMul(g, u, nF * F, g);
      be.matmul(g, nF, w.down, f);
      let b = 0;
      for (let j = 0; j < nF; j++) {
        while (fresh[j] >= seqStart[b + 1]) b++;
        plan.sequences[b].cache.ffn[li].set(f.subarray(j * D, (j + 1) * D), (fresh[j] - seqStart[b]) * D);
      }
    }
    addCached(x, seqStart, plan, (c) => c.ffn[li], D);
    lastFresh = fIdx;
  }
  counts.recomputed = plan.sequences.map((_, b) => {
    const out: number[] = [];
    for (const r of lastFresh) if (r >= seqStart[b] && r < seqStart[b + 1]) out.push(r - seqStart[b]);
    return Int32Array.from(out);
  });

  const want = batch.logitRows ?? null;
  const nL = want ? want.length : T;
  const hn = new Float32Array(nL * D);
  for (let j = 0; j < nL; j++) {
    const r = want ? want[j] : j;
    hn.set(x.subarray(r * D, (r + 1) * D), j * D);
  }
  be.rmsnorm(hn, nL, D, tf.weights.finalNorm, cfg.rmsNormEps, hn);
  const logits = new Float32Array(nL * cfg.vocabSize);
  be.matmul(hn, nL, tf.weights.head, logits);
  return logits;
}

function addCached(x: Float32Array, seqStart: Int32Array, plan: DllmStepPlan, pick: (c: DllmSequenceCache) => Float32Array, D: number): void {
  for (let b = 0; b < plan.sequences.length; b++) {
    const s = seqStart[b];
    const N = seqStart[b + 1] - s;
    const src = pick(plan.sequences[b].cache);
    const dst = x.subarray(s * D, (s + N) * D);
    for (let i = 0; i < N * D; i++) dst[i] += src[i];
  }
}

/**
 * dLLM-Cache's forward pass (arXiv 2506.06295; maomaocun/dLLM-cache), on the same weights and kernels as the dense
 * pass. Per sequence and layer it caches K (post-RoPE here: positions never change, so this equals the official
 * pre-RoPE store with RoPE applied at every attention call), V, the attention output after o_proj ("AttnOut") and
 * the FFN output ("FFNOut"). The residual stream is recomputed for every row every step; a row that is not "fresh"
 * in a layer adds its cached AttnOut and FFNOut to it.
 *
 * A step's fresh rows per sequence: the prompt rows when the prompt is refreshed, the response rows when the
 * response is refreshed, and otherwise (V-verify, 0 < ρ ≤ 1) the int(G·ρ) response rows whose new V (attn_norm then
 * v_proj, computed for ALL response rows) has the lowest cosine to the cached V. Fresh rows get Q, K, V, exact
 * attention against the whole sequence (cached K/V for the others) and the FFN; under V-verify the V cache is
 * replaced for all response rows and K only for the selected ones, as the official hook does.
 */
import type { ModelConfig } from '../../load/config.js';
import type { ForwardBatch } from '../types.js';
import { dims, embedTokens, ffn, geometry, headLogits, zeroPaddedRows, type BatchGeometry, type LayerWeights, type TransformerCore } from './core.js';
import { iota, sequenceOf } from './rows.js';

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

/** The rows of one step, as batch rows: fixed for the whole step (refreshed parts), and tested by V-verify. */
interface StepRows {
  readonly fixed: readonly (readonly number[])[];
  readonly verify: readonly (readonly number[])[];
}

/** One dLLM-Cache step over the batch; returns logits for batch.logitRows (every row when null). */
export function dllmCacheForward(core: TransformerCore, batch: ForwardBatch, plan: DllmStepPlan, counts: DllmCounts): Float32Array {
  const { seqStart } = batch;
  const B = seqStart.length - 1;
  const T = batch.tokens.length;
  const { D } = dims(core.config);
  if (plan.sequences.length !== B) throw new RangeError(`dllmCacheForward: plan has ${plan.sequences.length} sequences, batch ${B}`);
  for (let b = 0; b < B; b++) {
    const N = seqStart[b + 1] - seqStart[b];
    if (plan.sequences[b].cache.length !== N) throw new RangeError(`dllmCacheForward: cache of sequence ${b} holds ${plan.sequences[b].cache.length} positions, batch ${N}`);
  }
  const geo = geometry(core, batch);
  const rows = stepRows(batch, plan);
  const x = new Float32Array(T * D); // residual stream, every row
  const h = new Float32Array(T * D);
  embedTokens(core.weights.embed, batch.tokens, x);
  let lastFresh: Int32Array = new Int32Array(0);
  for (let li = 0; li < core.weights.layers.length; li++) {
    const w = core.weights.layers[li];
    core.backend.rmsnorm(x, T, D, w.attnNorm, core.config.rmsNormEps, h);
    const { fresh, tested } = freshRows(core, w, li, batch, plan, rows, h, counts);
    counts.freshPerLayer[li] += fresh.length;
    counts.kvRows += fresh.length;
    counts.ffnRows += fresh.length;
    if (fresh.length > 0) attendFresh(core, w, li, batch, plan, geo, h, fresh, tested);
    addCached(x, seqStart, plan, (c) => c.attn[li], D);
    if (fresh.length > 0) ffnFresh(core, w, li, batch, plan, x, fresh);
    addCached(x, seqStart, plan, (c) => c.ffn[li], D);
    lastFresh = fresh;
  }
  counts.recomputed = plan.sequences.map((_, b) => {
    const out: number[] = [];
    for (const r of lastFresh) if (r >= seqStart[b] && r < seqStart[b + 1]) out.push(r - seqStart[b]);
    return Int32Array.from(out);
  });
  const want = batch.logitRows ?? null;
  return headLogits(core, x, want ?? iota(T), want ? want.length : T);
}

function stepRows(batch: ForwardBatch, plan: DllmStepPlan): StepRows {
  const { seqStart } = batch;
  const verifying = plan.transferRatio > 0 && plan.transferRatio <= 1;
  const fixed: number[][] = [];
  const verify: number[][] = [];
  plan.sequences.forEach((sp, b) => {
    const s = seqStart[b];
    const N = seqStart[b + 1] - s;
    const fr: number[] = [];
    if (sp.refreshPrompt) for (let i = 0; i < sp.genStart; i++) fr.push(s + i);
    if (sp.refreshGen) for (let i = sp.genStart; i < N; i++) fr.push(s + i);
    fixed.push(fr);
    const vr: number[] = [];
    if (!sp.refreshGen && verifying) for (let i = sp.genStart; i < N; i++) vr.push(s + i);
    verify.push(vr);
  });
  return { fixed, verify };
}

/**
 * This layer's fresh rows (ascending batch rows): the fixed rows plus V-verify's picks — V for every tested response
 * row, cosine against the cache, the int(G·ρ) lowest per sequence. The V cache takes every tested row's new V.
 */
function freshRows(
  core: TransformerCore, w: LayerWeights, li: number, batch: ForwardBatch, plan: DllmStepPlan, rows: StepRows, h: Float32Array, counts: DllmCounts,
): { fresh: Int32Array; tested: ReadonlySet<number> } {
  const { kvDim } = dims(core.config);
  const be = core.backend;
  const fresh: number[] = [];
  let nVerify = 0;
  for (const vr of rows.verify) nVerify += vr.length;
  const vVerify = new Float32Array(nVerify * kvDim);
  if (nVerify > 0) {
    be.matmul(h, nVerify, w.wv, vVerify, w.bv, Int32Array.from(rows.verify.flat()));
    counts.verifyRows += nVerify;
  }
  let vo = 0;
  plan.sequences.forEach((sp, b) => {
    const s = batch.seqStart[b];
    for (const r of rows.fixed[b]) fresh.push(r);
    const vr = rows.verify[b];
    if (vr.length === 0) return;
    const store = sp.cache.v[li];
    const old = new Float32Array(vr.length * kvDim);
    for (let j = 0; j < vr.length; j++) old.set(store.subarray((vr[j] - s) * kvDim, (vr[j] - s + 1) * kvDim), j * kvDim);
    const cos = new Float32Array(vr.length);
    const vb = vVerify.subarray(vo * kvDim, (vo + vr.length) * kvDim);
    be.cosineRows(vb, old, vr.length, kvDim, cos);
    const k = Math.floor(vr.length * plan.transferRatio);
    const order = Array.from({ length: vr.length }, (_, j) => j).sort((a, c) => cos[a] - cos[c] || a - c);
    for (let j = 0; j < k; j++) fresh.push(vr[order[j]]);
    // The V cache is replaced for every tested row.
    for (let j = 0; j < vr.length; j++) store.set(vb.subarray(j * kvDim, (j + 1) * kvDim), (vr[j] - s) * kvDim);
    vo += vr.length;
  });
  fresh.sort((a, c) => a - c);
  return { fresh: Int32Array.from(fresh), tested: new Set<number>(rows.verify.flat()) };
}

/** Q, K, V of the fresh rows into the caches, exact attention against every key of their sequence, o_proj → AttnOut. */
function attendFresh(
  core: TransformerCore, w: LayerWeights, li: number, batch: ForwardBatch, plan: DllmStepPlan, geo: BatchGeometry, h: Float32Array, fresh: Int32Array, tested: ReadonlySet<number>,
): void {
  const { D, H, Hkv, Dh, qDim, kvDim } = dims(core.config);
  const be = core.backend;
  const { seqStart } = batch;
  const nF = fresh.length;
  const q = new Float32Array(nF * qDim);
  const kNew = new Float32Array(nF * kvDim);
  be.matmul(h, nF, w.wq, q, w.bq, fresh);
  be.matmul(h, nF, w.wk, kNew, w.bk, fresh);
  const fPos = new Int32Array(nF);
  for (let j = 0; j < nF; j++) fPos[j] = geo.positions[fresh[j]];
  be.rope(q, nF, H, Dh, fPos, core.rope.cos, core.rope.sin);
  be.rope(kNew, nF, Hkv, Dh, fPos, core.rope.cos, core.rope.sin);
  // Fresh rows not covered by V-verify need their V too.
  const vRows = Int32Array.from([...fresh].filter((r) => !tested.has(r)));
  const vNew = new Float32Array(vRows.length * kvDim);
  if (vRows.length > 0) be.matmul(h, vRows.length, w.wv, vNew, w.bv, vRows);
  scatterToCaches(seqStart, fresh, kNew, kvDim, (b) => plan.sequences[b].cache.k[li]);
  scatterToCaches(seqStart, vRows, vNew, kvDim, (b) => plan.sequences[b].cache.v[li]);
  const ctx = new Float32Array(nF * qDim);
  let j0 = 0;
  for (let b = 0; b < plan.sequences.length; b++) {
    let j1 = j0;
    while (j1 < nF && fresh[j1] < seqStart[b + 1]) j1++;
    if (j1 > j0) {
      const c = plan.sequences[b].cache;
      const km = geo.keyMasks[b];
      const cb = ctx.subarray(j0 * qDim, j1 * qDim);
      be.attention(q.subarray(j0 * qDim, j1 * qDim), j1 - j0, c.k[li], c.v[li], c.length, H, Hkv, Dh, km, cb);
      if (core.padding.zeroPadQueries && km) zeroPaddedRows(cb, j1 - j0, qDim, km, (i) => fresh[j0 + i] - seqStart[b]);
    }
    j0 = j1;
  }
  const o = new Float32Array(nF * D);
  be.matmul(ctx, nF, w.wo, o);
  scatterToCaches(seqStart, fresh, o, D, (b) => plan.sequences[b].cache.attn[li]);
}

/** The FFN of the fresh rows (their residual rows, normed) → the FFNOut cache. */
function ffnFresh(core: TransformerCore, w: LayerWeights, li: number, batch: ForwardBatch, plan: DllmStepPlan, x: Float32Array, fresh: Int32Array): void {
  const D = core.config.hiddenSize;
  const nF = fresh.length;
  const hf = new Float32Array(nF * D);
  for (let j = 0; j < nF; j++) hf.set(x.subarray(fresh[j] * D, (fresh[j] + 1) * D), j * D);
  core.backend.rmsnorm(hf, nF, D, w.ffnNorm, core.config.rmsNormEps, hf);
  const f = new Float32Array(nF * D);
  ffn(core, w, hf, nF, f);
  scatterToCaches(batch.seqStart, fresh, f, D, (b) => plan.sequences[b].cache.ffn[li]);
}

/** Row j of `src` (batch row rows[j], ascending) into its sequence's cache `dst(b)` at its position. */
function scatterToCaches(seqStart: Int32Array, rows: Int32Array, src: Float32Array, width: number, dst: (b: number) => Float32Array): void {
  let b = 0;
  for (let j = 0; j < rows.length; j++) {
    b = sequenceOf(seqStart, rows[j], b);
    dst(b).set(src.subarray(j * width, (j + 1) * width), (rows[j] - seqStart[b]) * width);
  }
}

/** Every row adds its sequence's cached (fresh or not) output: x[s + i] += cache[i]. */
function addCached(x: Float32Array, seqStart: Int32Array, plan: DllmStepPlan, pick: (c: DllmSequenceCache) => Float32Array, D: number): void {
  for (let b = 0; b < plan.sequences.length; b++) {
    const s = seqStart[b];
    const N = seqStart[b + 1] - s;
    const src = pick(plan.sequences[b].cache);
    const dst = x.subarray(s * D, (s + N) * D);
    for (let i = 0; i < N * D; i++) dst[i] += src[i];
  }
}

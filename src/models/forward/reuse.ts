/**
 * Beyond the paper (plan.qkvTol, plan.headTol; off unless set): the planned forward (./planned.ts) takes a row's
 * cached Q (an A_in row's cached K/V) when its normed input moved by at most the tolerance since they were projected,
 * and the LM head returns a row's cached logits likewise. At 0 only bit-identical inputs qualify, and the kernels
 * compute each row of a matmul independently of the other rows, so the result is the paper's exactly.
 */
import type { RecomputePlan, StepCounts } from '../../cache/plan.js';
import type { Dims, LayerWeights, TransformerCore } from './core.js';

/** The parts of one planned step these paths read and write. */
export interface ReuseContext {
  readonly core: TransformerCore;
  readonly plan: RecomputePlan;
  readonly counts: StepCounts;
  readonly d: Dims;
  readonly R: number;
  readonly rowSeq: Int32Array;
  readonly rowAt: Int32Array;
  readonly rowPos: Int32Array;
  readonly h: Float32Array;
  readonly q: Float32Array;
}

/** The plan's reuse options need caches that keep what they reuse (allocated by the method only when set). */
export function checkReusePlan(plan: RecomputePlan): void {
  plan.sequences.forEach((sp, b) => {
    if (plan.qkvTol !== undefined && !sp.cache.keepsProjections) throw new RangeError(`forwardPlanned: plan reuses Q/K/V projections but the cache of sequence ${b} does not keep them`);
    if (plan.headTol !== undefined && !sp.cache.head) throw new RangeError(`forwardPlanned: plan reuses logits but the cache of sequence ${b} keeps none`);
  });
}

/** Whether normed row h[i] moved beyond `tol` from reference ref[p] (an unset, NaN reference always has). */
export function moved(D: number, h: Float32Array, i: number, ref: Float32Array, p: number, tol: number): boolean {
  let d2 = 0;
  let n2 = 0;
  for (let e = 0; e < D; e++) {
    const r = ref[p * D + e];
    const x = h[i * D + e] - r;
    d2 += x * x;
    n2 += r * r;
  }
  return !(d2 <= tol * tol * n2);
}

/** Q of the query rows whose input moved (projected, RoPE, cached with their input); the rest from the cache. */
export function projectQReusing(s: ReuseContext, w: LayerWeights, li: number, tol: number): void {
  const { d, R } = s;
  const { backend: be, scratch: sc } = s.core;
  const force = s.plan.policy.forceAll;
  const idx = sc.i32('qMoved', R);
  let n = 0;
  for (let i = 0; i < R; i++) {
    const store = s.plan.sequences[s.rowSeq[i]].cache.layers[li];
    const p = s.rowAt[i];
    if (force || moved(d.D, s.h, i, store.qIn, p, tol)) idx[n++] = i;
    else s.q.set(store.q.subarray(p * d.qDim, (p + 1) * d.qDim), i * d.qDim);
  }
  s.counts.qReused = (s.counts.qReused ?? 0) + R - n;
  if (n === 0) return;
  const rows = idx.subarray(0, n);
  const qm = sc.f32('qProj', n * d.qDim);
  be.matmul(s.h, n, w.wq, qm, w.bq, rows);
  const pos = sc.i32('qProjPos', n);
  for (let j = 0; j < n; j++) pos[j] = s.rowPos[rows[j]];
  be.rope(qm, n, d.H, d.Dh, pos, s.core.rope.cos, s.core.rope.sin);
  for (let j = 0; j < n; j++) {
    const i = rows[j];
    const store = s.plan.sequences[s.rowSeq[i]].cache.layers[li];
    const p = s.rowAt[i];
    const qi = qm.subarray(j * d.qDim, (j + 1) * d.qDim);
    s.q.set(qi, i * d.qDim);
    store.q.set(qi, p * d.qDim);
    store.qIn.set(s.h.subarray(i * d.D, (i + 1) * d.D), p * d.D);
  }
}

/** K/V of the A_in rows whose input moved since their cached K/V were projected; the rest keep the cached K/V. */
export function projectKvReusing(s: ReuseContext, w: LayerWeights, li: number, tol: number, salient: Int32Array, kNew: Float32Array, vNew: Float32Array): void {
  const { d } = s;
  const { backend: be, scratch: sc } = s.core;
  const force = s.plan.policy.forceAll;
  const nIn = salient.length;
  const idx = sc.i32('kvMoved', nIn); // indices into salient
  let n = 0;
  for (let j = 0; j < nIn; j++) {
    const i = salient[j];
    const store = s.plan.sequences[s.rowSeq[i]].cache.layers[li];
    const p = s.rowAt[i];
    if (force || moved(d.D, s.h, i, store.kvIn, p, tol)) {
      idx[n++] = j;
    } else {
      kNew.set(store.k.subarray(p * d.kvDim, (p + 1) * d.kvDim), j * d.kvDim);
      vNew.set(store.v.subarray(p * d.kvDim, (p + 1) * d.kvDim), j * d.kvDim);
    }
  }
  s.counts.kvReused = (s.counts.kvReused ?? 0) + nIn - n;
  if (n === 0) return;
  const rows = sc.i32('kvProjRows', n);
  const pos = sc.i32('kvProjPos', n);
  for (let m = 0; m < n; m++) {
    rows[m] = salient[idx[m]];
    pos[m] = s.rowPos[rows[m]];
  }
  const km = sc.f32('kProj', n * d.kvDim);
  const vm = sc.f32('vProj', n * d.kvDim);
  be.matmul(s.h, n, w.wk, km, w.bk, rows);
  be.matmul(s.h, n, w.wv, vm, w.bv, rows);
  be.rope(km, n, d.Hkv, d.Dh, pos, s.core.rope.cos, s.core.rope.sin);
  for (let m = 0; m < n; m++) {
    const j = idx[m];
    const i = rows[m];
    kNew.set(km.subarray(m * d.kvDim, (m + 1) * d.kvDim), j * d.kvDim);
    vNew.set(vm.subarray(m * d.kvDim, (m + 1) * d.kvDim), j * d.kvDim);
    s.plan.sequences[s.rowSeq[i]].cache.layers[li].kvIn.set(s.h.subarray(i * d.D, (i + 1) * d.D), s.rowAt[i] * d.D);
  }
}


export function logitsReusing(s: ReuseContext, res: Float32Array, sel: Int32Array, nL: number, tol: number): Float32Array {
  const { D } = s.d;
  const { backend: be, scratch: sc, config } = s.core;
  const V = config.vocabSize;
  const hn = sc.f32('hn', nL * D); // [nL, D]
  for (let j = 0; j < nL; j++) hn.set(res.subarray(sel[j] * D, (sel[j] + 1) * D), j * D);
  be.rmsnorm(hn, nL, D, s.core.weights.finalNorm, config.rmsNormEps, hn);
  const logits = new Float32Array(nL * V);
  const force = s.plan.policy.forceAll;
  const idx = sc.i32('headMoved', nL);
  let n = 0;
  for (let j = 0; j < nL; j++) {
    const head = s.plan.sequences[s.rowSeq[sel[j]]].cache.head!;
    const slot = s.rowAt[sel[j]] - head.base;
    if (force || slot < 0 || moved(D, hn, j, head.hIn, slot, tol)) idx[n++] = j;
    else logits.set(head.logits.subarray(slot * V, (slot + 1) * V), j * V);
  }
  s.counts.headReused = (s.counts.headReused ?? 0) + nL - n;
  s.counts.headRows = (s.counts.headRows ?? 0) + nL;
  if (n === 0) return logits;
  const rows = idx.subarray(0, n);
  const fresh = n === nL ? logits : new Float32Array(n * V);
  be.matmul(hn, n, s.core.weights.head, fresh, null, n === nL ? null : rows);
  for (let m = 0; m < n; m++) {
    const j = rows[m];
    const row = fresh.subarray(m * V, (m + 1) * V);
    if (fresh !== logits) logits.set(row, j * V);
    const head = s.plan.sequences[s.rowSeq[sel[j]]].cache.head!;
    const slot = s.rowAt[sel[j]] - head.base;
    if (slot < 0) continue;
    head.logits.set(row, slot * V);
    head.hIn.set(hn.subarray(j * D, (j + 1) * D), slot * D);
  }
  return logits;
}

/**
 * The cached forward pass a RecomputePlan drives (DyLLM, arXiv 2603.08026, and the Fast-dLLM plans): one step over
 * the query rows R of each sequence, reading and writing the per-layer caches. Per layer, in phases:
 *
 *  1. project — residual norm and Q for all R rows; K/V only for the layer's input salient set A_in;
 *  2. attend  — per sequence: ΔV against the cached V, the caches take the new K/V; the approximate context
 *     C_old + S·ΔV (current softmax over all keys; or the rescale update) for every row, exact attention for A_in,
 *     and the cosine of new versus cached context;
 *  3. select  — the plan's policy picks A_out from the cosines (A_in of the next layer: the one-layer lag);
 *  4. output  — o_proj for every row (or the cached outputs updated by the projected ΔV, below), into the residual;
 *  5. FFN     — only for A_out; the others reuse their cached FFN output, which joins the residual (scatter/gather).
 *
 * With the recompute-all policy and R = every position this is exactly the dense forward.
 *
 * Output-projection reuse (plan.reuseOutput, delta update only): o_proj is linear, so a non-salient row's new
 * output is its cached one plus Σ_h Σ_c p[i,h,c]·P[h,c] with P[h,c] = ΔV_c(kv head of h)·Wo[:, head h]ᵀ — nc·D·D
 * multiply-adds for P plus R·H·nc·D for the probabilities times P, instead of R·D·D; the salient rows (exact
 * contexts) are projected directly. Chosen per sequence when it is cheaper (see `reuseIsCheaper`).
 *
 * Beyond the paper (plan.qkvTol, plan.headTol; off unless set): cached Q/K/V and logits rows reused, ./reuse.ts.
 */
import type { LayerStore } from '../../cache/layer-cache.js';
import type { RecomputePlan, StepCounts } from '../../cache/plan.js';
import type { ForwardBatch } from '../types.js';
import { dims, embedTokens, ffn, geometry, headLogits, zeroPaddedRows, type Dims, type LayerWeights, type TransformerCore } from './core.js';
import { binarySearch, bySequence, contiguous, forEachSequence, gatherRows, iota, scatterRows, sequenceOf, wantedQueryRows } from './rows.js';
import { checkReusePlan, logitsReusing, projectKvReusing, projectQReusing, type ReuseContext } from './reuse.js';

export function forwardPlanned(core: TransformerCore, batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts): Float32Array {
  const step = new PlannedStep(core, batch, plan, counts);
  for (let li = 0; li < core.weights.layers.length; li++) step.layer(li);
  return step.logits();
}

/**
 * Whether updating a sequence's o_proj outputs through the projected ΔV columns costs less than projecting its nR
 * query rows: nb·(2·qDim + nR·H)·D multiply-adds (P, the salient rows, probs·P) against nR·qDim·D, with a factor 2
 * of margin for the extra passes over Wo and the fp32 product (the bf16 GEMM can be twice as fast).
 */
export function reuseIsCheaper(nb: number, nR: number, qDim: number, D: number, H: number): boolean {
  return 2 * nb * (2 * qDim + nR * H) * D <= nR * qDim * D;
}

/** One sequence's part of a layer: its query rows [r0, r0 + nR) and its A_in rows salient[j0, j1). */
interface SeqPart {
  readonly b: number;
  readonly store: LayerStore;
  readonly rows: Int32Array;
  readonly N: number;
  readonly r0: number;
  readonly nR: number;
  readonly j0: number;
  readonly j1: number;
}

/** The state of one planned step: the gathered query rows, their buffers, and the salient set entering a layer. */
class PlannedStep {
  private readonly d: Dims;
  private readonly B: number;
  /** Query rows of all sequences, concatenated: sequence b owns rows rowOff[b] .. rowOff[b+1]. */
  private readonly rowOff: Int32Array;
  private readonly R: number;
  private readonly rowPos: Int32Array; // [R] RoPE position of each query row
  private readonly rowSeq: Int32Array; // [R] sequence of each query row
  private readonly rowAt: Int32Array; // [R] position of each query row in its sequence
  private readonly keyMasks: readonly (Uint8Array | null)[];
  private readonly rescale: boolean;
  private readonly reuseOutput: boolean;
  private readonly res: Float32Array; // [R, D] residual stream, recomputed every step
  private readonly x: Float32Array; // [R, D] F_l rows of sequences whose query rows are not one run (gathered)
  private readonly h: Float32Array; // [R, D]
  private readonly q: Float32Array; // [R, H·Dh]
  private readonly ctx: Float32Array; // [R, H·Dh]
  private readonly cos: Float32Array; // [R]
  private readonly old: Float32Array; // C_old of one sequence's rows (cosine partner)
  private readonly lse: Float32Array; // [R, H] log-sum-exp of each query row's scores
  private readonly o: Float32Array; // [R, D]
  /** A_in of the current layer, as ascending indices into the query rows. */
  private salient: Int32Array;
  private kNew: Float32Array = new Float32Array(0); // [|A_in|, Hkv·Dh]
  private vNew: Float32Array = new Float32Array(0); // [|A_in|, Hkv·Dh]

  constructor(private readonly core: TransformerCore, private readonly batch: ForwardBatch, private readonly plan: RecomputePlan, private readonly counts: StepCounts) {
    const { seqStart } = batch;
    const B = (this.B = seqStart.length - 1);
    const d = (this.d = dims(core.config));
    if (plan.sequences.length !== B) throw new RangeError(`forwardPlanned: plan has ${plan.sequences.length} sequences, batch ${B}`);
    if (counts.perSequence && counts.perSequence.length !== B) throw new RangeError(`forwardPlanned: per-sequence counts for ${counts.perSequence.length} sequences, batch ${B}`);
    const rowOff = (this.rowOff = new Int32Array(B + 1));
    for (let b = 0; b < B; b++) rowOff[b + 1] = rowOff[b] + plan.sequences[b].rows.length;
    const R = (this.R = rowOff[B]);
    const sc = core.scratch;
    this.rowPos = sc.i32('rowPos', R);
    this.rowSeq = sc.i32('rowSeq', R);
    this.rowAt = sc.i32('rowAt', R);
    const rowTok = sc.i32('rowTok', R);
    const { positions, keyMasks } = geometry(core, batch);
    this.keyMasks = keyMasks;
    for (let b = 0; b < B; b++) {
      const s = seqStart[b];
      const N = seqStart[b + 1] - s;
      const sp = plan.sequences[b];
      if (sp.cache.length !== N) throw new RangeError(`forwardPlanned: cache of sequence ${b} holds ${sp.cache.length} positions, batch ${N}`);
      for (let i = 0; i < sp.rows.length; i++) {
        this.rowPos[rowOff[b] + i] = positions[s + sp.rows[i]];
        this.rowSeq[rowOff[b] + i] = b;
        this.rowAt[rowOff[b] + i] = sp.rows[i];
        rowTok[rowOff[b] + i] = batch.tokens[s + sp.rows[i]];
      }
    }
    const salientIn = this.salientIn();
    this.salient = plan.policy.forceAll ? iota(R) : salientIn;
    this.res = sc.f32('res', R * d.D);
    this.x = sc.f32('x', R * d.D);
    this.h = sc.f32('h', R * d.D);
    this.q = sc.f32('q', R * d.qDim);
    this.ctx = sc.f32('ctx', R * d.qDim);
    this.cos = sc.f32('cos', R);
    this.old = sc.f32('old', R * d.qDim);
    this.lse = sc.f32('lse', R * d.H);
    this.rescale = (plan.attnUpdate ?? 'delta') !== 'delta';
    this.reuseOutput = plan.reuseOutput !== undefined && !this.rescale;
    if (this.reuseOutput) {
      plan.sequences.forEach((sp, b) => {
        if (!sp.cache.keepsOutputs) throw new RangeError(`forwardPlanned: plan reuses o_proj outputs but the cache of sequence ${b} does not keep them`);
      });
    }
    checkReusePlan(plan);
    this.o = sc.f32('o', R * d.D);
    embedTokens(core.weights.embed, rowTok, this.res);
  }

  /** A_in(0): each sequence's salientIn positions as ascending indices into the concatenated query rows. */
  private salientIn(): Int32Array {
    const out: number[] = [];
    this.plan.sequences.forEach((sp, b) => {
      const ps = [...sp.salientIn].sort((x, y) => x - y);
      for (const p of ps) {
        const i = binarySearch(sp.rows, p);
        if (i < 0) throw new RangeError(`forwardPlanned: salient position ${p} of sequence ${b} is not a query row`);
        out.push(this.rowOff[b] + i);
      }
    });
    return Int32Array.from(out);
  }

  layer(li: number): void {
    const w = this.core.weights.layers[li];
    this.project(w, li);
    const projected = this.attend(w, li);
    // A_out(l) from the policy; it is also A_in(l+1).
    const policy = this.plan.policy;
    const out = policy.forceAll ? this.salient : policy.select(li, this.cos, this.R);
    this.counts.salientPerLayer[li] += out.length;
    this.counts.ffnRows += out.length;
    const per = this.counts.perSequence;
    if (per) {
      forEachSequence(this.rowOff, out, (b, n) => {
        per[b].salientPerLayer[li] += n;
        per[b].ffnRows += n;
      });
    }
    this.output(w, li, projected);
    this.ffnSalient(w, li, out);
    this.addLayerOutputs(li);
    if (li === this.core.weights.layers.length - 1) this.counts.recomputed = bySequence(this.rowOff, this.plan.sequences, out);
    this.salient = out;
  }

  /**
   * Phase 1: norm and Q of every query row; K/V (after RoPE) of the A_in rows. With plan.qkvTol, rows whose normed
   * input has not moved beyond the tolerance take their cached Q (and A_in rows their cached K/V) instead.
   */
  private project(w: LayerWeights, li: number): void {
    const { d, R, salient } = this;
    const be = this.core.backend;
    const { cos, sin } = this.core.rope;
    be.rmsnorm(this.res, R, d.D, w.attnNorm, this.core.config.rmsNormEps, this.h);
    const tol = this.plan.qkvTol;
    if (tol === undefined) {
      be.matmul(this.h, R, w.wq, this.q, w.bq);
      be.rope(this.q, R, d.H, d.Dh, this.rowPos, cos, sin);
    } else {
      projectQReusing(this.reuseContext(), w, li, tol);
    }
    const nIn = salient.length;
    this.kNew = this.core.scratch.f32('kNew', nIn * d.kvDim);
    this.vNew = this.core.scratch.f32('vNew', nIn * d.kvDim);
    if (nIn > 0) {
      if (tol === undefined) {
        be.matmul(this.h, nIn, w.wk, this.kNew, w.bk, salient);
        be.matmul(this.h, nIn, w.wv, this.vNew, w.bv, salient);
        const inPos = this.core.scratch.i32('inPos', nIn);
        for (let j = 0; j < nIn; j++) inPos[j] = this.rowPos[salient[j]];
        be.rope(this.kNew, nIn, d.Hkv, d.Dh, inPos, cos, sin);
      } else {
        projectKvReusing(this.reuseContext(), w, li, tol, salient, this.kNew, this.vNew);
      }
    }
    this.counts.kvRows += nIn;
    this.counts.queryRows += R;
    const per = this.counts.perSequence;
    if (per) {
      forEachSequence(this.rowOff, salient, (b, n) => (per[b].kvRows += n));
      for (let b = 0; b < this.B; b++) per[b].queryRows += this.rowOff[b + 1] - this.rowOff[b];
    }
  }

  /** Phase 2 for every sequence; returns, per sequence, whether its o_proj outputs came from the reuse path. */
  private attend(w: LayerWeights, li: number): Uint8Array {
    const projected = new Uint8Array(this.B);
    let j0 = 0; // cursor into `salient` (ascending, grouped by sequence)
    for (let b = 0; b < this.B; b++) {
      const sp = this.plan.sequences[b];
      const r0 = this.rowOff[b];
      let j1 = j0;
      while (j1 < this.salient.length && this.salient[j1] < this.rowOff[b + 1]) j1++;
      const part: SeqPart = { b, store: sp.cache.layers[li], rows: sp.rows, N: sp.cache.length, r0, nR: this.rowOff[b + 1] - r0, j0, j1 };
      projected[b] = this.attendSequence(w, part) ? 1 : 0;
      j0 = j1;
    }
    return projected;
  }

  /** Phase 2 for one sequence: cache K/V, contexts (exact or approximate), cosines; o_proj reuse when chosen. */
  private attendSequence(w: LayerWeights, p: SeqPart): boolean {
    const { d, plan } = this;
    const { store, rows, N, r0, nR, j0, j1 } = p;
    const nb = j1 - j0;
    const { cols, dv, kOld } = this.writeKv(p);
    const qb = this.q.subarray(r0 * d.qDim, (r0 + nR) * d.qDim);
    const cb = this.ctx.subarray(r0 * d.qDim, (r0 + nR) * d.qDim);
    const lb = this.lse.subarray(r0 * d.H, (r0 + nR) * d.H);
    const km = this.keyMasks[p.b];
    // Output reuse for this sequence: no changed column leaves every context (and so its output) as cached.
    const reuse = this.reuseOutput && !plan.policy.forceAll && (nb === 0 || plan.reuseOutput === 'always' || reuseIsCheaper(nb, nR, d.qDim, d.D, d.H));
    if (reuse) {
      this.counts.oProjReused++;
      if (this.counts.perSequence) this.counts.perSequence[p.b].oProjReused++;
    }
    const probs = reuse && nb > 0 ? this.core.scratch.f32('probs', nR * d.H * nb) : null;
    if (plan.policy.forceAll) {
      this.core.backend.attention(qb, nR, store.k, store.v, N, d.H, d.Hkv, d.Dh, km, cb, lb);
    } else {
      this.approximate(p, cols, dv, kOld, probs);
    }
    if (this.core.padding.zeroPadQueries && km) zeroPaddedRows(cb, nR, d.qDim, km, (i) => rows[i]);
    if (reuse) this.reuseOutputs(w, p, dv, probs);
    scatterRows(store.c, cb, rows, d.qDim);
    scatterRows(store.lse, lb, rows, d.H);
    return reuse;
  }

  /**
   * The A_in rows' new K/V replace the cached ones. Returns their positions and, for the update, ΔV = V_new − V_old
   * (delta) or the old values V_old and K_old (rescale).
   */
  private writeKv(p: SeqPart): { cols: Int32Array; dv: Float32Array; kOld: Float32Array | null } {
    const { kvDim } = this.d;
    const { store, rows, r0, j0, j1 } = p;
    const nb = j1 - j0;
    const sc = this.core.scratch;
    const cols = sc.i32('cols', nb); // key positions of this sequence's A_in
    const dv = sc.f32('dv', nb * kvDim); // delta: V_new − V_old; rescale: V_old
    const kOld = this.rescale ? sc.f32('kOld', nb * kvDim) : null;
    for (let j = 0; j < nb; j++) {
      const pos = rows[this.salient[j0 + j] - r0];
      cols[j] = pos;
      const src = (j0 + j) * kvDim;
      if (kOld) {
        dv.set(store.v.subarray(pos * kvDim, (pos + 1) * kvDim), j * kvDim);
        kOld.set(store.k.subarray(pos * kvDim, (pos + 1) * kvDim), j * kvDim);
      } else {
        for (let e = 0; e < kvDim; e++) dv[j * kvDim + e] = this.vNew[src + e] - store.v[pos * kvDim + e];
      }
      store.k.set(this.kNew.subarray(src, src + kvDim), pos * kvDim);
      store.v.set(this.vNew.subarray(src, src + kvDim), pos * kvDim);
    }
    return { cols, dv, kOld };
  }

  /**
   * Contexts of a sparse step: every row's cached context updated for the changed columns (C_old + S·ΔV, or the
   * rescale update), then exact attention for the A_in rows; the cosine of each row's new versus cached context.
   */
  private approximate(p: SeqPart, cols: Int32Array, dv: Float32Array, kOld: Float32Array | null, probs: Float32Array | null): void {
    const { d } = this;
    const be = this.core.backend;
    const { store, rows, N, r0, nR, j0, j1 } = p;
    const nb = j1 - j0;
    const qb = this.q.subarray(r0 * d.qDim, (r0 + nR) * d.qDim);
    const cb = this.ctx.subarray(r0 * d.qDim, (r0 + nR) * d.qDim);
    const lb = this.lse.subarray(r0 * d.H, (r0 + nR) * d.H);
    const km = this.keyMasks[p.b];
    gatherRows(cb, store.c, rows, d.qDim);
    gatherRows(lb, store.lse, rows, d.H);
    // The cosine partner C_old: the cache rows themselves when the query rows are one run of positions (they are
    // written back only after the test), else a copy.
    const oldC = contiguous(rows) ? store.c.subarray(rows[0] * d.qDim, (rows[0] + nR) * d.qDim) : this.old;
    if (oldC === this.old) this.old.set(cb.subarray(0, nR * d.qDim));
    if (nb > 0) {
      if (kOld) {
        const vNewB = this.vNew.subarray(j0 * d.kvDim, j1 * d.kvDim);
        be.attentionRescale(qb, nR, store.k, N, d.H, d.Hkv, d.Dh, km, cols, kOld, dv, vNewB, lb, cb, this.plan.attnUpdate === 'rescale-incremental');
      } else if (probs) {
        be.attentionDelta(qb, nR, store.k, N, d.H, d.Hkv, d.Dh, km, cols, dv, cb, probs);
      } else {
        this.deltaNonSalient(p, cols, dv);
      }
      const sc = this.core.scratch;
      const qe = sc.f32('qe', nb * d.qDim);
      const ce = sc.f32('ce', nb * d.qDim);
      const le = sc.f32('le', nb * d.H);
      for (let j = 0; j < nb; j++) qe.set(this.q.subarray(this.salient[j0 + j] * d.qDim, (this.salient[j0 + j] + 1) * d.qDim), j * d.qDim);
      be.attention(qe, nb, store.k, store.v, N, d.H, d.Hkv, d.Dh, km, ce, le);
      for (let j = 0; j < nb; j++) {
        this.ctx.set(ce.subarray(j * d.qDim, (j + 1) * d.qDim), this.salient[j0 + j] * d.qDim);
        this.lse.set(le.subarray(j * d.H, (j + 1) * d.H), this.salient[j0 + j] * d.H);
      }
    }
    be.cosineRows(cb, oldC, nR, d.qDim, this.cos.subarray(r0, r0 + nR));
  }

  /**
   * The delta update C_old + S·ΔV of the rows outside A_in only: the A_in rows' contexts are replaced by exact
   * attention right after, so updating them would be wasted work (as much as a full attention pass when most rows
   * are salient). Each row's update depends on that row alone, so the skipped rows change nothing else. The rows
   * are gathered when A_in splits them; with no A_in row the call runs in place.
   */
  private deltaNonSalient(p: SeqPart, cols: Int32Array, dv: Float32Array): void {
    const { d } = this;
    const { store, N, r0, nR, j0, j1 } = p;
    const nb = j1 - j0;
    const nOut = nR - nb;
    if (nOut === 0) return;
    const qb = this.q.subarray(r0 * d.qDim, (r0 + nR) * d.qDim);
    const cb = this.ctx.subarray(r0 * d.qDim, (r0 + nR) * d.qDim);
    const be = this.core.backend;
    const km = this.keyMasks[p.b];
    if (nb === 0) {
      be.attentionDelta(qb, nR, store.k, N, d.H, d.Hkv, d.Dh, km, cols, dv, cb, null);
      return;
    }
    const sc = this.core.scratch;
    const idx = sc.i32('nsIdx', nOut); // local indices of the rows outside A_in, ascending
    let n = 0;
    let j = j0;
    for (let i = 0; i < nR; i++) {
      if (j < j1 && this.salient[j] - r0 === i) j++;
      else idx[n++] = i;
    }
    const qn = sc.f32('nsQ', nOut * d.qDim);
    const cn = sc.f32('nsC', nOut * d.qDim);
    gatherRows(qn, qb, idx, d.qDim);
    gatherRows(cn, cb, idx, d.qDim);
    be.attentionDelta(qn, nOut, store.k, N, d.H, d.Hkv, d.Dh, km, cols, dv, cn, null);
    scatterRows(cb, cn, idx, d.qDim);
  }

  /**
   * o = O_old + probs · P (P[h·nb + c] = ΔV_c of h's KV head · Wo[:, h·Dh .. (h+1)·Dh)ᵀ), then the salient rows
   * (exact contexts) projected directly.
   */
  private reuseOutputs(w: LayerWeights, p: SeqPart, dv: Float32Array, probs: Float32Array | null): void {
    const { d } = this;
    const { backend: be, scratch: sc } = this.core;
    const { store, rows, r0, nR, j0, j1 } = p;
    const nb = j1 - j0;
    const ob = this.o.subarray(r0 * d.D, (r0 + nR) * d.D);
    if (nb > 0) {
      const group = d.H / d.Hkv;
      const P = sc.f32('projDv', d.H * nb * d.D);
      const dvh = sc.f32('dvHead', nb * d.Dh);
      for (let hq = 0; hq < d.H; hq++) {
        const kvh = Math.floor(hq / group);
        if (hq % group === 0) for (let c = 0; c < nb; c++) dvh.set(dv.subarray(c * d.kvDim + kvh * d.Dh, c * d.kvDim + (kvh + 1) * d.Dh), c * d.Dh);
        be.matmulCols(dvh, nb, w.wo, hq * d.Dh, d.Dh, P.subarray(hq * nb * d.D, (hq + 1) * nb * d.D));
      }
      be.gemm(probs!, nR, d.H * nb, P, d.D, ob);
      let oOld: Float32Array;
      if (contiguous(rows)) {
        oOld = store.o.subarray(rows[0] * d.D, (rows[0] + nR) * d.D);
      } else {
        oOld = sc.f32('oOld', nR * d.D);
        gatherRows(oOld, store.o, rows, d.D);
      }
      be.add(ob, oOld, nR * d.D);
      const oe = sc.f32('oExact', nb * d.D);
      be.matmul(this.ctx, nb, w.wo, oe, null, this.salient.subarray(j0, j1));
      for (let j = 0; j < nb; j++) ob.set(oe.subarray(j * d.D, (j + 1) * d.D), (this.salient[j0 + j] - r0) * d.D);
    } else {
      gatherRows(ob, store.o, rows, d.D);
    }
    const km = this.keyMasks[p.b];
    if (this.core.padding.zeroPadQueries && km) zeroPaddedRows(ob, nR, d.D, km, (i) => rows[i]);
  }

  /** Phase 4: o_proj of the rows whose outputs were not reused; the outputs join the residual stream. */
  private output(w: LayerWeights, li: number, projected: Uint8Array): void {
    const { d, R } = this;
    const be = this.core.backend;
    const any = projected.includes(1);
    if (any) {
      for (let b = 0; b < this.B; b++) {
        const r0 = this.rowOff[b];
        const nR = this.rowOff[b + 1] - r0;
        if (!projected[b]) be.matmul(this.ctx.subarray(r0 * d.qDim), nR, w.wo, this.o.subarray(r0 * d.D, (r0 + nR) * d.D));
      }
    } else {
      be.matmul(this.ctx, R, w.wo, this.o);
    }
    if (this.reuseOutput) for (let b = 0; b < this.B; b++) scatterRows(this.plan.sequences[b].cache.layers[li].o, this.o.subarray(this.rowOff[b] * d.D), this.plan.sequences[b].rows, d.D);
    be.add(this.res, this.o, R * d.D);
  }

  /** Phase 5: the FFN of the A_out rows, written into their sequences' caches. */
  private ffnSalient(w: LayerWeights, li: number, out: Int32Array): void {
    const { D } = this.d;
    this.core.backend.rmsnorm(this.res, this.R, D, w.ffnNorm, this.core.config.rmsNormEps, this.h);
    const nOut = out.length;
    if (nOut === 0) return;
    const f = this.core.scratch.f32('f', nOut * D);
    ffn(this.core, w, this.h, nOut, f, out);
    let b = 0;
    for (let j = 0; j < nOut; j++) {
      b = sequenceOf(this.rowOff, out[j], b);
      const pos = this.plan.sequences[b].rows[out[j] - this.rowOff[b]];
      this.plan.sequences[b].cache.layers[li].f.set(f.subarray(j * D, (j + 1) * D), pos * D);
    }
  }

  /**
   * Layer output for every query row (fresh F for A_out, cached F for the rest) joins the residual stream now — the
   * next layer's first step — read in place when the rows are one run of positions.
   */
  private addLayerOutputs(li: number): void {
    const { D } = this.d;
    for (let b = 0; b < this.B; b++) {
      const fcache = this.plan.sequences[b].cache.layers[li].f;
      const rows = this.plan.sequences[b].rows;
      const r0 = this.rowOff[b];
      const nR = this.rowOff[b + 1] - r0;
      let fb: Float32Array;
      if (contiguous(rows)) {
        fb = fcache.subarray(rows[0] * D, (rows[0] + nR) * D);
      } else {
        fb = this.x.subarray(r0 * D, (r0 + nR) * D);
        gatherRows(fb, fcache, rows, D);
      }
      this.core.backend.add(this.res.subarray(r0 * D, (r0 + nR) * D), fb, nR * D);
    }
  }

  /** What the tolerance-reuse paths (./reuse.ts) read and write. */
  private reuseContext(): ReuseContext {
    return { core: this.core, plan: this.plan, counts: this.counts, d: this.d, R: this.R, rowSeq: this.rowSeq, rowAt: this.rowAt, rowPos: this.rowPos, h: this.h, q: this.q };
  }

  /**
   * Final norm and LM head only for the rows whose logits are wanted (they must be query rows). With plan.headTol, a
   * wanted row whose normed final hidden state has not moved beyond the tolerance since its cached logits were
   * computed takes them from the cache; the head runs over the others only.
   */
  logits(): Float32Array {
    const { seqStart } = this.batch;
    const want = this.batch.logitRows ?? null;
    const nL = want ? want.length : this.R;
    const sel = this.core.scratch.i32('sel', nL);
    wantedQueryRows(seqStart, want, this.plan.sequences, this.rowOff, this.R, sel);
    const tol = this.plan.headTol;
    if (tol === undefined) return headLogits(this.core, this.res, sel, nL);
    return logitsReusing(this.reuseContext(), this.res, sel, nL, tol);
  }
}

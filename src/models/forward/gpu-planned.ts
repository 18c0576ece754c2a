/**
 * DyLLM's cached step on WebGPU tensors: planned.ts's phases, op for op, for the paper's configuration — the delta
 * context update (C_old + S·ΔV), o_proj of every query row (plan.reuseOutput off), no Q/K/V or head tolerance — over
 * per-sequence, per-layer caches that live on the device (K, V, C, F, log-sum-exp: GpuSequenceCache, allocated once
 * per request's SequenceCache and freed with `release`).
 *
 * The saliency decision per layer (phase 3) reads the layer's cosines back (R floats, one wait per layer per step)
 * and lets the plan's policy choose on the host, so the salient sets are the host path's by construction; the next
 * layer's index lists are then uploaded. docs/webgpu.md says what this costs and the indirect-dispatch design that
 * would keep the selection on the GPU.
 *
 * May import: kernels/, cache/ (types), models/types, models/forward.
 */
import type { SequenceCache } from '../../cache/layer-cache.js';
import type { RecomputePlan, StepCounts } from '../../cache/plan.js';
import type { GpuTensor } from '../../kernels/webgpu/kernels.js';
import type { ForwardBatch, LogitRowStats, StatsRequest } from '../types.js';
import { geometry } from './core.js';
import type { GpuForward } from './gpu.js';
import { binarySearch, bySequence, forEachSequence, iota, sequenceOf, wantedQueryRows } from './rows.js';

/** One layer's cache of one sequence on the device (cache/layer-cache.ts LayerStore's K, V, C, F, lse). */
interface GpuLayerStore {
  readonly k: GpuTensor; // [N, Hkv·Dh]
  readonly v: GpuTensor; // [N, Hkv·Dh]
  readonly c: GpuTensor; // [N, H·Dh]
  readonly f: GpuTensor; // [N, D]
  readonly lse: GpuTensor; // [N, H]
}

/** Why a plan cannot run on the GPU (one line), or null. */
export function gpuPlanRefusal(plan: RecomputePlan): string | null {
  if ((plan.attnUpdate ?? 'delta') !== 'delta') return `the ${plan.attnUpdate} context update does not run on WebGPU yet (the delta update does)`;
  if (plan.reuseOutput !== undefined) return 'o_proj output reuse does not run on WebGPU yet (use the recompute o_proj)';
  if (plan.qkvTol !== undefined || plan.headTol !== undefined) return 'the Q/K/V and head tolerances do not run on WebGPU yet';
  return null;
}

/** The device caches of the SequenceCaches a GpuForward has seen (one set per request's sequence). */
export class GpuCaches {
  private readonly stores = new Map<SequenceCache, GpuLayerStore[]>();

  constructor(private readonly fwd: GpuForward) {}

  /** The device layers of `cache`, allocated (zero-filled) on first use. */
  of(cache: SequenceCache): GpuLayerStore[] {
    let s = this.stores.get(cache);
    if (!s) {
      const { D, H, qDim, kvDim } = this.fwd.d;
      const N = cache.length;
      const t = (n: number) => this.fwd.kernels.tensor('f32', Math.max(n, 1));
      s = cache.layers.map(() => ({ k: t(N * kvDim), v: t(N * kvDim), c: t(N * qDim), f: t(N * D), lse: t(N * H) }));
      this.stores.set(cache, s);
    }
    return s;
  }

  /** Frees the device caches of every sequence except those in `keep`. */
  release(keep: readonly SequenceCache[] = []): void {
    for (const [cache, layers] of this.stores) {
      if (keep.includes(cache)) continue;
      for (const l of layers) for (const t of [l.k, l.v, l.c, l.f, l.lse]) t.destroy();
      this.stores.delete(cache);
    }
  }
}

/**
 * One planned step on the device (the plan must pass gpuPlanRefusal). Counts as planned.ts counts; returns the
 * logits of batch.logitRows (query rows of the plan), or their statistics.
 */
export async function gpuForwardPlanned(
  fwd: GpuForward, caches: GpuCaches, batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts, stats: StatsRequest | null,
): Promise<Float32Array | LogitRowStats> {
  const why = gpuPlanRefusal(plan);
  if (why) throw new RangeError(`forwardPlanned: ${why}`);
  return fwd.exclusive(() => new GpuPlannedStep(fwd, caches, batch, plan, counts).run(stats));
}

class GpuPlannedStep {
  private readonly B: number;
  private readonly rowOff: Int32Array;
  private readonly R: number;
  private readonly rowPos: Int32Array;
  private readonly rowTok: Int32Array;
  private readonly keyMasks: readonly (Uint8Array | null)[];
  private readonly stores: GpuLayerStore[][];
  /** Per-step device tensors, destroyed at the end of the step. */
  private readonly temps: GpuTensor[] = [];
  private salient: Int32Array;

  constructor(private readonly fwd: GpuForward, caches: GpuCaches, private readonly batch: ForwardBatch, private readonly plan: RecomputePlan,
    private readonly counts: StepCounts) {
    const { seqStart } = batch;
    const B = (this.B = seqStart.length - 1);
    if (plan.sequences.length !== B) throw new RangeError(`forwardPlanned: plan has ${plan.sequences.length} sequences, batch ${B}`);
    if (counts.perSequence && counts.perSequence.length !== B) throw new RangeError(`forwardPlanned: per-sequence counts for ${counts.perSequence.length} sequences, batch ${B}`);
    const V = fwd.core.config.vocabSize;
    for (let t = 0; t < batch.tokens.length; t++) {
      const id = batch.tokens[t];
      if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} at row ${t} is outside the vocabulary [0, ${V})`);
    }
    const rowOff = (this.rowOff = new Int32Array(B + 1));
    for (let b = 0; b < B; b++) rowOff[b + 1] = rowOff[b] + plan.sequences[b].rows.length;
    const R = (this.R = rowOff[B]);
    this.rowPos = new Int32Array(R);
    this.rowTok = new Int32Array(R);
    const { positions, keyMasks } = geometry(fwd.core, batch);
    this.keyMasks = keyMasks;
    for (let b = 0; b < B; b++) {
      const s = seqStart[b];
      const N = seqStart[b + 1] - s;
      const sp = plan.sequences[b];
      if (sp.cache.length !== N) throw new RangeError(`forwardPlanned: cache of sequence ${b} holds ${sp.cache.length} positions, batch ${N}`);
      for (let i = 0; i < sp.rows.length; i++) {
        this.rowPos[rowOff[b] + i] = positions[s + sp.rows[i]];
        this.rowTok[rowOff[b] + i] = batch.tokens[s + sp.rows[i]];
      }
    }
    const salientIn: number[] = [];
    plan.sequences.forEach((sp, b) => {
      for (const p of [...sp.salientIn].sort((x, y) => x - y)) {
        const i = binarySearch(sp.rows, p);
        if (i < 0) throw new RangeError(`forwardPlanned: salient position ${p} of sequence ${b} is not a query row`);
        salientIn.push(rowOff[b] + i);
      }
    });
    this.salient = plan.policy.forceAll ? iota(R) : Int32Array.from(salientIn);
    this.stores = plan.sequences.map((sp) => caches.of(sp.cache));
  }

  private f32(n: number): GpuTensor {
    const t = this.fwd.kernels.tensor('f32', Math.max(n, 1));
    this.temps.push(t);
    return t;
  }

  private up(a: Int32Array): GpuTensor {
    const t = this.fwd.kernels.upload(a.length ? a : Int32Array.of(-1));
    this.temps.push(t);
    return t.view(0, a.length);
  }

  async run(stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    try {
      const { fwd, R } = this;
      const D = fwd.d.D;
      const res = this.f32(R * D);
      fwd.kernels.gatherWeightRows(res, fwd.embed, this.up(this.rowTok));
      for (let li = 0; li < fwd.layers.length; li++) await this.layer(li, res);
      return await this.head(res, stats);
    } finally {
      for (const t of this.temps) t.destroy();
    }
  }

  private async layer(li: number, res: GpuTensor): Promise<void> {
    const { fwd, R, B, rowOff, plan, counts } = this;
    const k = fwd.kernels;
    const { D, H, Hkv, Dh, qDim, kvDim, F } = fwd.d;
    const w = fwd.layers[li];
    const eps = fwd.core.config.rmsNormEps;
    const { cos: cosT, sin: sinT } = fwd.ropeTables();
    const salient = this.salient;
    const nIn = salient.length;
    // Phase 1: norm and Q of every query row; K/V (after RoPE) of the A_in rows.
    const h = this.f32(R * D);
    const q = this.f32(R * qDim);
    k.rmsnorm(res, R, D, w.attnNorm, eps, h);
    k.matmul(h, R, w.wq, q, w.bq);
    k.rope(q, R, H, Dh, this.up(this.rowPos), cosT, sinT);
    const kNew = this.f32(nIn * kvDim);
    const vNew = this.f32(nIn * kvDim);
    const salientT = this.up(salient);
    if (nIn > 0) {
      k.matmul(h, nIn, w.wk, kNew, w.bk, salientT);
      k.matmul(h, nIn, w.wv, vNew, w.bv, salientT);
      k.rope(kNew, nIn, Hkv, Dh, this.up(Int32Array.from(salient, (r) => this.rowPos[r])), cosT, sinT);
    }
    counts.kvRows += nIn;
    counts.queryRows += R;
    const per = counts.perSequence;
    if (per) {
      forEachSequence(rowOff, salient, (b, n) => (per[b].kvRows += n));
      for (let b = 0; b < B; b++) per[b].queryRows += rowOff[b + 1] - rowOff[b];
    }
    // Phase 2, per sequence: cache K/V, contexts (exact or C_old + S·ΔV), cosines.
    const ctx = this.f32(R * qDim);
    const lse = this.f32(R * H);
    const cosines = this.f32(R);
    let j0 = 0;
    for (let b = 0; b < B; b++) {
      let j1 = j0;
      while (j1 < nIn && salient[j1] < rowOff[b + 1]) j1++;
      this.attendSequence(b, li, j0, j1, q, kNew, vNew, ctx, lse, cosines);
      j0 = j1;
    }
    // Phase 3: A_out from the policy over the cosines read back (forceAll: every row).
    let out: Int32Array;
    if (plan.policy.forceAll) {
      out = salient;
    } else {
      const [cos] = (await k.read(cosines.view(0, R))) as Float32Array[];
      out = plan.policy.select(li, cos, R);
    }
    counts.salientPerLayer[li] += out.length;
    counts.ffnRows += out.length;
    if (per) {
      forEachSequence(rowOff, out, (b, n) => {
        per[b].salientPerLayer[li] += n;
        per[b].ffnRows += n;
      });
    }
    // Phase 4: o_proj of every query row into the residual.
    const o = this.f32(R * D);
    k.matmul(ctx, R, w.wo, o);
    k.add(res, o, R * D);
    // Phase 5: the FFN of A_out, into the caches; then every row's F (fresh or cached) joins the residual.
    k.rmsnorm(res, R, D, w.ffnNorm, eps, h);
    const nOut = out.length;
    if (nOut > 0) {
      const outT = this.up(out);
      const g = this.f32(nOut * F);
      const u = this.f32(nOut * F);
      const f = this.f32(nOut * D);
      k.matmul(h, nOut, w.gate, g, null, outT);
      k.matmul(h, nOut, w.up, u, null, outT);
      k.siluMul(g, u, nOut * F, g);
      k.matmul(g, nOut, w.down, f);
      let o0 = 0;
      let sb = 0;
      while (o0 < nOut) {
        sb = sequenceOf(rowOff, out[o0], sb);
        let o1 = o0;
        while (o1 < nOut && out[o1] < rowOff[sb + 1]) o1++;
        const pos = Int32Array.from(out.subarray(o0, o1), (r) => plan.sequences[sb].rows[r - rowOff[sb]]);
        k.scatterRows(this.stores[sb][li].f, f.view(o0 * D, (o1 - o0) * D), this.up(pos), D);
        o0 = o1;
      }
    }
    const fb = this.f32(R * D);
    for (let b = 0; b < B; b++) {
      const nR = rowOff[b + 1] - rowOff[b];
      if (nR > 0) k.gatherRows(fb.view(rowOff[b] * D, nR * D), this.stores[b][li].f, this.up(plan.sequences[b].rows), D);
    }
    k.add(res, fb, R * D);
    if (li === fwd.layers.length - 1) counts.recomputed = bySequence(rowOff, plan.sequences, out);
    this.salient = out;
  }

  /** planned.ts attendSequence for the delta update without o_proj reuse. */
  private attendSequence(b: number, li: number, j0: number, j1: number, q: GpuTensor, kNew: GpuTensor, vNew: GpuTensor, ctx: GpuTensor, lse: GpuTensor, cosines: GpuTensor): void {
    const { fwd, plan } = this;
    const k = fwd.kernels;
    const { H, Hkv, Dh, qDim, kvDim } = fwd.d;
    const sp = plan.sequences[b];
    const store = this.stores[b][li];
    const rows = sp.rows;
    const N = sp.cache.length;
    const r0 = this.rowOff[b];
    const nR = this.rowOff[b + 1] - r0;
    const nb = j1 - j0;
    const km = this.keyMasks[b];
    const kmT = km ? this.maskOf(b, km) : null;
    // The A_in rows' new K/V replace the cached ones; ΔV = V_new − V_old for the update.
    const colsT = this.up(Int32Array.from(this.salient.subarray(j0, j1), (r) => rows[r - r0]));
    const dv = this.f32(nb * kvDim);
    if (nb > 0) {
      const vNewB = vNew.view(j0 * kvDim, nb * kvDim);
      k.gatherRows(dv, store.v, colsT, kvDim);
      k.sub(dv, vNewB, dv, nb * kvDim);
      k.scatterRows(store.k, kNew.view(j0 * kvDim, nb * kvDim), colsT, kvDim);
      k.scatterRows(store.v, vNewB, colsT, kvDim);
    }
    if (nR === 0) return;
    const qb = q.view(r0 * qDim, nR * qDim);
    const cb = ctx.view(r0 * qDim, nR * qDim);
    const lb = lse.view(r0 * H, nR * H);
    const rowsT = this.up(rows);
    if (plan.policy.forceAll) {
      k.attention(qb, nR, store.k, store.v, N, H, Hkv, Dh, kmT, cb, lb);
    } else {
      k.gatherRows(cb, store.c, rowsT, qDim);
      k.gatherRows(lb, store.lse, rowsT, H);
      const old = this.f32(nR * qDim);
      k.gatherRows(old, store.c, rowsT, qDim);
      if (nb > 0) {
        // C_old + S·ΔV for the rows outside A_in only (A_in's contexts are replaced by exact attention next).
        const idx: number[] = [];
        let j = j0;
        for (let i = 0; i < nR; i++) {
          if (j < j1 && this.salient[j] - r0 === i) j++;
          else idx.push(i);
        }
        if (idx.length > 0) {
          const idxT = this.up(Int32Array.from(idx));
          const qn = this.f32(idx.length * qDim);
          const cn = this.f32(idx.length * qDim);
          k.gatherRows(qn, qb, idxT, qDim);
          k.gatherRows(cn, cb, idxT, qDim);
          k.attentionDelta(qn, idx.length, store.k, N, H, Hkv, Dh, kmT, colsT, dv, cn, null);
          k.scatterRows(cb, cn, idxT, qDim);
        }
        const exactT = this.up(this.salient.subarray(j0, j1));
        const qe = this.f32(nb * qDim);
        const ce = this.f32(nb * qDim);
        const le = this.f32(nb * H);
        k.gatherRows(qe, q, exactT, qDim);
        k.attention(qe, nb, store.k, store.v, N, H, Hkv, Dh, kmT, ce, le);
        k.scatterRows(ctx, ce, exactT, qDim);
        k.scatterRows(lse, le, exactT, H);
      }
      k.cosineRows(cb, old, nR, qDim, cosines.view(r0, nR));
    }
    if (fwd.core.padding.zeroPadQueries && km) {
      const pad: number[] = [];
      for (let i = 0; i < nR; i++) if (!km[rows[i]]) pad.push(i);
      if (pad.length) k.scatterRows(cb, this.f32(pad.length * qDim), this.up(Int32Array.from(pad)), qDim);
    }
    k.scatterRows(store.c, cb, rowsT, qDim);
    k.scatterRows(store.lse, lb, rowsT, H);
  }

  private readonly masks = new Map<number, GpuTensor>();
  /** Sequence b's key mask on the device (u32 per key), uploaded once per step. */
  private maskOf(b: number, km: Uint8Array): GpuTensor {
    let t = this.masks.get(b);
    if (!t) {
      t = this.fwd.kernels.upload(km);
      this.temps.push(t);
      this.masks.set(b, t);
    }
    return t;
  }

  /** Final norm and LM head of the wanted rows (query rows of the plan), as planned.ts `logits`. */
  private async head(res: GpuTensor, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    const { seqStart } = this.batch;
    const want = this.batch.logitRows ?? null;
    const nL = want ? want.length : this.R;
    const sel = new Int32Array(nL);
    wantedQueryRows(seqStart, want, this.plan.sequences, this.rowOff, this.R, sel);
    const V = this.fwd.core.config.vocabSize;
    const logits = this.f32(nL * V).view(0, nL * V);
    const statsT = this.fwd.kernels.tensor('u32', Math.max(nL, 1) * 4);
    this.temps.push(statsT);
    this.fwd.recordHead(res, this.up(sel), nL, this.f32(nL * this.fwd.d.D), logits, statsT, stats);
    return this.fwd.readHead(logits, statsT, nL, stats);
  }
}

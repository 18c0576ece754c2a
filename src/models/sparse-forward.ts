/**
 * The cached forward pass that DyLLM-style plans drive (dyllm-algorithm.md §5–§7): one step over the query rows R
 * of each sequence, reading and writing the per-layer caches. Per layer: residual and norm for all R rows, Q for
 * all R rows, K/V and exact attention only for the layer's input salient set A_in, the approximate context
 * C_old + S·ΔV (current softmax over all keys) for every other row, the cosine test that picks A_out through the
 * plan's policy, o_proj for all rows, and the FFN only for A_out (others reuse F). The one-layer lag is
 * A_in(l+1) = A_out(l). With the recompute-all policy and R = every position this is exactly the dense forward.
 *
 * Output-projection reuse (plan.reuseOutput, delta update only): o_proj is linear, so a non-salient row's new
 * output is its cached one plus Σ_h Σ_c p[i,h,c]·P[h,c] with P[h,c] = ΔV_c(kv head of h)·Wo[:, head h]ᵀ — nc·D·D
 * multiply-adds for P plus R·H·nc·D for the probabilities times P, instead of R·D·D; the salient rows (exact
 * contexts) are projected directly. Chosen per sequence when it is cheaper (see `reuseIsCheaper`).
 *
 * Legend: R = Σ|R_b| query rows of the step, N_b = sequence length, D, H, Hkv, Dh, F, V as in layers.ts.
 */
import type { RecomputePlan, StepCounts } from '../cache/plan.js';
import { embedTokens, type Transformer } from './layers.js';
import type { ForwardBatch } from './types.js';

export function forwardPlanned(tf: Transformer, batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts): Float32Array {
  const cfg = tf.config;
  const be = tf.backend;
  const { seqStart } = batch;
  const B = seqStart.length - 1;
  const D = cfg.hiddenSize;
  const H = cfg.numHeads;
  const Hkv = cfg.numKvHeads;
  const Dh = cfg.headDim;
  const qDim = H * Dh;
  const kvDim = Hkv * Dh;
  const F = cfg.intermediateSize;
  const policy = plan.policy;
  if (plan.sequences.length !== B) throw new RangeError(`forwardPlanned: plan has ${plan.sequences.length} sequences, batch ${B}`);

  // Query rows of all sequences, concatenated: rowOff[b] .. rowOff[b+1].
  const rowOff = new Int32Array(B + 1);
  for (let b = 0; b < B; b++) rowOff[b + 1] = rowOff[b] + plan.sequences[b].rows.length;
  const R = rowOff[B];
  const sc = tf.scratch;
  const rowPos = sc.i32('rowPos', R); // RoPE position of each query row
  const rowTok = sc.i32('rowTok', R);
  const { positions, keyMasks } = tf.geometry(batch);
  for (let b = 0; b < B; b++) {
    const s = seqStart[b];
    const N = seqStart[b + 1] - s;
    const sp = plan.sequences[b];
    if (sp.cache.length !== N) throw new RangeError(`forwardPlanned: cache of sequence ${b} holds ${sp.cache.length} positions, batch ${N}`);
    for (let i = 0; i < sp.rows.length; i++) {
      rowPos[rowOff[b] + i] = positions[s + sp.rows[i]];
      rowTok[rowOff[b] + i] = batch.tokens[s + sp.rows[i]];
    }
  }

  // A_in(0) as indices into the query rows.
  let salient = toRowIndices(plan, rowOff, (b) => plan.sequences[b].salientIn);
  if (policy.forceAll) salient = iota(R);

  const res = sc.f32('res', R * D); // [R, D] residual stream, recomputed every step
  const x = sc.f32('x', R * D); // [R, D] F_l rows of sequences whose query rows are not one run (gathered)
  const h = sc.f32('h', R * D); // [R, D]
  const q = sc.f32('q', R * qDim); // [R, H·Dh]
  const ctx = sc.f32('ctx', R * qDim); // [R, H·Dh]
  const cos = sc.f32('cos', R);
  const old = sc.f32('old', R * qDim); // C_old of one sequence's rows (cosine partner)
  const lse = sc.f32('lse', R * H); // [R, H] log-sum-exp of each query row's scores
  const attnUpdate = plan.attnUpdate ?? 'delta';
  const rescale = attnUpdate !== 'delta';
  const reuseOutput = plan.reuseOutput !== undefined && !rescale;
  if (reuseOutput) {
    plan.sequences.forEach((sp, b) => {
      if (!sp.cache.keepsOutputs) throw new RangeError(`forwardPlanned: plan reuses o_proj outputs but the cache of sequence ${b} does not keep them`);
    });
  }
  const group = H / Hkv;
  const o = sc.f32('o', R * D);
  embedTokens(tf.weights.embed, rowTok, res);

  for (let li = 0; li < tf.weights.layers.length; li++) {
    const w = tf.weights.layers[li];
    be.rmsnorm(res, R, D, w.attnNorm, cfg.rmsNormEps, h);
    be.matmul(h, R, w.wq, q, w.bq);
    be.rope(q, R, H, Dh, rowPos, tf.rope.cos, tf.rope.sin);

    // K/V for A_in rows; ΔV against the old cached values, then overwrite the caches.
    const nIn = salient.length;
    const kNew = sc.f32('kNew', nIn * kvDim);
    const vNew = sc.f32('vNew', nIn * kvDim);
    if (nIn > 0) {
      be.matmul(h, nIn, w.wk, kNew, w.bk, salient);
      be.matmul(h, nIn, w.wv, vNew, w.bv, salient);
      const inPos = sc.i32('inPos', nIn);
      for (let j = 0; j < nIn; j++) inPos[j] = rowPos[salient[j]];
      be.rope(kNew, nIn, Hkv, Dh, inPos, tf.rope.cos, tf.rope.sin);
    }
    counts.kvRows += nIn;
    counts.queryRows += R;

    let j0 = 0; // cursor into `salient` (ascending, grouped by sequence)
    let projectedAll = true; // every sequence's o_proj output came from the reuse path
    let projectedAny = false;
    const projected = sc.i32('projected', B);
    for (let b = 0; b < B; b++) {
      const store = plan.sequences[b].cache.layers[li];
      const rows = plan.sequences[b].rows;
      const N = plan.sequences[b].cache.length;
      const r0 = rowOff[b];
      const nR = rowOff[b + 1] - r0;
      let j1 = j0;
      while (j1 < nIn && salient[j1] < rowOff[b + 1]) j1++;
      const nb = j1 - j0;
      const cols = sc.i32('cols', nb); // key positions of this sequence's A_in
      const dv = sc.f32('dv', nb * kvDim); // delta: V_new − V_old; rescale: V_old
      const kOld = rescale ? sc.f32('kOld', nb * kvDim) : null;
      for (let j = 0; j < nb; j++) {
        const p = rows[salient[j0 + j] - r0];
        cols[j] = p;
        const src = (j0 + j) * kvDim;
        if (rescale) {
          dv.set(store.v.subarray(p * kvDim, (p + 1) * kvDim), j * kvDim);
          kOld!.set(store.k.subarray(p * kvDim, (p + 1) * kvDim), j * kvDim);
        } else {
          for (let d = 0; d < kvDim; d++) dv[j * kvDim + d] = vNew[src + d] - store.v[p * kvDim + d];
        }
        store.k.set(kNew.subarray(src, src + kvDim), p * kvDim);
        store.v.set(vNew.subarray(src, src + kvDim), p * kvDim);
      }
      const qb = q.subarray(r0 * qDim, (r0 + nR) * qDim);
      const cb = ctx.subarray(r0 * qDim, (r0 + nR) * qDim);
      const km = keyMasks[b];
      const lb = lse.subarray(r0 * H, (r0 + nR) * H);
      const ob = o.subarray(r0 * D, (r0 + nR) * D);
      // Output reuse for this sequence: no changed column leaves every context (and so its output) as cached.
      const reuse = reuseOutput && !policy.forceAll && (nb === 0 || plan.reuseOutput === 'always' || reuseIsCheaper(nb, nR, qDim, D, H));
      if (reuse) counts.oProjReused++;
      const probs = reuse && nb > 0 ? sc.f32('probs', nR * H * nb) : null;
      projected[b] = reuse ? 1 : 0;
      if (reuse) projectedAny = true;
      else projectedAll = false;
      if (policy.forceAll) {
        be.attention(qb, nR, store.k, store.v, N, H, Hkv, Dh, km, cb, lb);
      } else {
        // Approximate rows (C_old updated for the changed columns); then exact attention for the A_in rows.
        gatherRows(cb, store.c, rows, qDim);
        gatherRows(lb, store.lse, rows, H);
        // The cosine partner C_old: the cache rows themselves when the query rows are one run of positions (they are
        // written back only after the test), else a copy.
        const oldC = contiguous(rows) ? store.c.subarray(rows[0] * qDim, (rows[0] + nR) * qDim) : old;
        if (oldC === old) old.set(cb.subarray(0, nR * qDim));
        if (nb > 0) {
          if (rescale) {
            const vNewB = vNew.subarray(j0 * kvDim, j1 * kvDim);
            be.attentionRescale(qb, nR, store.k, N, H, Hkv, Dh, km, cols, kOld!, dv, vNewB, lb, cb, attnUpdate === 'rescale-incremental');
          } else {
            be.attentionDelta(qb, nR, store.k, N, H, Hkv, Dh, km, cols, dv, cb, probs);
          }
          const qe = sc.f32('qe', nb * qDim);
          const ce = sc.f32('ce', nb * qDim);
          const le = sc.f32('le', nb * H);
          for (let j = 0; j < nb; j++) qe.set(q.subarray(salient[j0 + j] * qDim, (salient[j0 + j] + 1) * qDim), j * qDim);
          be.attention(qe, nb, store.k, store.v, N, H, Hkv, Dh, km, ce, le);
          for (let j = 0; j < nb; j++) {
            ctx.set(ce.subarray(j * qDim, (j + 1) * qDim), salient[j0 + j] * qDim);
            lse.set(le.subarray(j * H, (j + 1) * H), salient[j0 + j] * H);
          }
        }
        be.cosineRows(cb, oldC, nR, qDim, cos.subarray(r0, r0 + nR));
      }
      if (tf.padding.zeroPadQueries && km) {
        for (let i = 0; i < nR; i++) if (!km[rows[i]]) cb.fill(0, i * qDim, (i + 1) * qDim);
      }
      if (reuse) {
        // o = O_old + probs · P (P[h·nb + c] = ΔV_c of h's KV head · Wo[:, h·Dh .. (h+1)·Dh)ᵀ), then the salient rows
        // (exact contexts) projected directly.
        if (nb > 0) {
          const P = sc.f32('projDv', H * nb * D);
          const dvh = sc.f32('dvHead', nb * Dh);
          for (let hq = 0; hq < H; hq++) {
            const kvh = Math.floor(hq / group);
            if (hq % group === 0) for (let c = 0; c < nb; c++) dvh.set(dv.subarray(c * kvDim + kvh * Dh, c * kvDim + (kvh + 1) * Dh), c * Dh);
            be.matmulCols(dvh, nb, w.wo, hq * Dh, Dh, P.subarray(hq * nb * D, (hq + 1) * nb * D));
          }
          be.gemm(probs!, nR, H * nb, P, D, ob);
          let oOld: Float32Array;
          if (contiguous(rows)) {
            oOld = store.o.subarray(rows[0] * D, (rows[0] + nR) * D);
          } else {
            oOld = sc.f32('oOld', nR * D);
            gatherRows(oOld, store.o, rows, D);
          }
          be.add(ob, oOld, nR * D);
          const oe = sc.f32('oExact', nb * D);
          be.matmul(ctx, nb, w.wo, oe, null, salient.subarray(j0, j1));
          for (let j = 0; j < nb; j++) ob.set(oe.subarray(j * D, (j + 1) * D), (salient[j0 + j] - r0) * D);
        } else {
          gatherRows(ob, store.o, rows, D);
        }
        if (tf.padding.zeroPadQueries && km) {
          for (let i = 0; i < nR; i++) if (!km[rows[i]]) ob.fill(0, i * D, (i + 1) * D);
        }
      }
      scatterRows(store.c, cb, rows, qDim);
      scatterRows(store.lse, lb, rows, H);
      j0 = j1;
    }

    // A_out(l) from the policy; it is also A_in(l+1).
    const out = policy.forceAll ? salient : policy.select(li, cos, R);
    counts.salientPerLayer[li] += out.length;
    counts.ffnRows += out.length;

    if (!projectedAll) {
      if (projectedAny) {
        for (let b = 0; b < B; b++) {
          const r0 = rowOff[b];
          const nR = rowOff[b + 1] - r0;
          if (!projected[b]) be.matmul(ctx.subarray(r0 * qDim), nR, w.wo, o.subarray(r0 * D, (r0 + nR) * D));
        }
      } else {
        be.matmul(ctx, R, w.wo, o);
      }
    }
    if (reuseOutput) for (let b = 0; b < B; b++) scatterRows(plan.sequences[b].cache.layers[li].o, o.subarray(rowOff[b] * D), plan.sequences[b].rows, D);
    be.add(res, o, R * D);
    be.rmsnorm(res, R, D, w.ffnNorm, cfg.rmsNormEps, h);
    const nOut = out.length;
    if (nOut > 0) {
      const g = sc.f32('g', nOut * F);
      const u = sc.f32('u', nOut * F);
      const f = sc.f32('f', nOut * D);
      be.matmul(h, nOut, w.gate, g, null, out);
      be.matmul(h, nOut, w.up, u, null, out);
      be.siluMul(g, u, nOut * F, g);
      be.matmul(g, nOut, w.down, f);
      let b = 0;
      for (let j = 0; j < nOut; j++) {
        while (out[j] >= rowOff[b + 1]) b++;
        const p = plan.sequences[b].rows[out[j] - rowOff[b]];
        plan.sequences[b].cache.layers[li].f.set(f.subarray(j * D, (j + 1) * D), p * D);
      }
    }
    // Layer output for every query row (fresh F for A_out, cached F for the rest) joins the residual stream now —
    // the next layer's first step — read in place when the rows are one run of positions.
    for (let b = 0; b < B; b++) {
      const fcache = plan.sequences[b].cache.layers[li].f;
      const rows = plan.sequences[b].rows;
      const r0 = rowOff[b];
      const nR = rowOff[b + 1] - r0;
      let fb: Float32Array;
      if (contiguous(rows)) {
        fb = fcache.subarray(rows[0] * D, (rows[0] + nR) * D);
      } else {
        fb = x.subarray(r0 * D, (r0 + nR) * D);
        gatherRows(fb, fcache, rows, D);
      }
      be.add(res.subarray(r0 * D, (r0 + nR) * D), fb, nR * D);
    }
    if (li === tf.weights.layers.length - 1) {
      counts.recomputed = splitBySequence(out, rowOff, plan);
    }
    salient = out;
  }

  // Final norm and LM head only for the rows whose logits are wanted (they must be query rows).
  const want = batch.logitRows ?? null;
  const nL = want ? want.length : R;
  const sel = sc.i32('sel', nL);
  if (want) {
    for (let j = 0; j < nL; j++) {
      let b = 0;
      while (want[j] >= seqStart[b + 1]) b++;
      const p = want[j] - seqStart[b];
      const idx = binarySearch(plan.sequences[b].rows, p);
      if (idx < 0) throw new RangeError(`forwardPlanned: logits wanted for position ${p} of sequence ${b}, which is not a query row`);
      sel[j] = rowOff[b] + idx;
    }
  } else {
    for (let j = 0; j < nL; j++) sel[j] = j;
  }
  const hn = sc.f32('hn', nL * D);
  for (let j = 0; j < nL; j++) hn.set(res.subarray(sel[j] * D, (sel[j] + 1) * D), j * D);
  be.rmsnorm(hn, nL, D, tf.weights.finalNorm, cfg.rmsNormEps, hn);
  const logits = new Float32Array(nL * cfg.vocabSize);
  be.matmul(hn, nL, tf.weights.head, logits);
  return logits;
}

/**
 * Whether updating a sequence's o_proj outputs through the projected ΔV columns costs less than projecting its nR
 * query rows: nb·(2·qDim + nR·H)·D multiply-adds (P, the salient rows, probs·P) against nR·qDim·D, with a factor 2
 * of margin for the extra passes over Wo and the fp32 product (the bf16 GEMM can be twice as fast).
 */
export function reuseIsCheaper(nb: number, nR: number, qDim: number, D: number, H: number): boolean {
  return 2 * nb * (2 * qDim + nR * H) * D <= nR * qDim * D;
}

/** Whether ascending positions form one run (so their cache rows are one contiguous view). */
function contiguous(rows: Int32Array): boolean {
  return rows.length > 0 && rows[rows.length - 1] - rows[0] === rows.length - 1;
}

/** dst[i] = src[rows[i]] for rows of `width` values; runs of consecutive rows are copied in one call. */
function gatherRows(dst: Float32Array, src: Float32Array, rows: Int32Array, width: number): void {
  for (let i = 0; i < rows.length; ) {
    let j = i + 1;
    while (j < rows.length && rows[j] === rows[j - 1] + 1) j++;
    dst.set(src.subarray(rows[i] * width, (rows[j - 1] + 1) * width), i * width);
    i = j;
  }
}

/** dst[rows[i]] = src[i] (inverse of gatherRows). */
function scatterRows(dst: Float32Array, src: Float32Array, rows: Int32Array, width: number): void {
  for (let i = 0; i < rows.length; ) {
    let j = i + 1;
    while (j < rows.length && rows[j] === rows[j - 1] + 1) j++;
    dst.set(src.subarray(i * width, j * width), rows[i] * width);
    i = j;
  }
}

function iota(n: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  return a;
}

function binarySearch(a: Int32Array, v: number): number {
  let lo = 0;
  let hi = a.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] === v) return mid;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Positions of each sequence -> ascending indices into the concatenated query rows. */
function toRowIndices(plan: RecomputePlan, rowOff: Int32Array, pick: (b: number) => Int32Array): Int32Array {
  const out: number[] = [];
  plan.sequences.forEach((sp, b) => {
    const ps = [...pick(b)].sort((x, y) => x - y);
    for (const p of ps) {
      const i = binarySearch(sp.rows, p);
      if (i < 0) throw new RangeError(`forwardPlanned: salient position ${p} of sequence ${b} is not a query row`);
      out.push(rowOff[b] + i);
    }
  });
  return Int32Array.from(out);
}

function splitBySequence(rowsIdx: Int32Array, rowOff: Int32Array, plan: RecomputePlan): Int32Array[] {
  return plan.sequences.map((sp, b) => {
    const out: number[] = [];
    for (const r of rowsIdx) if (r >= rowOff[b] && r < rowOff[b + 1]) out.push(sp.rows[r - rowOff[b]]);
    return Int32Array.from(out);
  });
}

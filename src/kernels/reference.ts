/**
 * The reference backend: plain TypeScript, float64 accumulation, no cleverness. It is the oracle every fast
 * backend is tested against and the fallback when the native addon cannot load. It must stay obviously correct;
 * speed is not its job. Arguments are checked as the native backend checks them (./args.ts), so a wrong size throws
 * instead of reading undefined (NaN) past an array's end.
 */
import type { HostWeight, KernelBackend, PreparedWeight } from './backend.js';
import { bf16ToF32 } from '../tensor/dtype.js';
import { groups, QK, quantizeActivationRow, quantizeInt8, quantizeQ4 } from './quant.js';
import {
  checkAdd, checkAttention, checkAttentionDelta, checkAttentionRescale, checkCosineRows, checkGemm, checkLogitStats,
  checkMatmul, checkMatmulCols, checkPrepareWeight, checkRmsnorm, checkRope, checkSiluMul, describe,
} from './args.js';

interface RefWeight extends PreparedWeight {
  readonly f32?: Float32Array; // dense: [N, K], widened once
  readonly q?: Int8Array; // quantised: [N, Kp] integer values (q4: q − 8), zero padded to whole groups
  readonly scale?: Float64Array; // int8: [N]; q4: [N, G]
}

function widen(w: HostWeight): Float32Array {
  if (w.dtype === 'f32') return w.data as Float32Array;
  const src = w.data as Uint16Array;
  const out = new Float32Array(src.length);
  const o32 = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) o32[i] = src[i] << 16;
  return out;
}

/** A quantised weight as integers [N, Kp] and float64 scales (the reference's working form). */
function unpackQuant(w: HostWeight): { q: Int8Array; scale: Float64Array } {
  const N = w.outFeatures;
  const K = w.inFeatures;
  const G = groups(K);
  const Kp = G * QK;
  const q = new Int8Array(N * Kp);
  if (w.dtype === 'int8') {
    const src = w.data as Int8Array;
    for (let n = 0; n < N; n++) q.set(src.subarray(n * K, (n + 1) * K), n * Kp);
    return { q, scale: Float64Array.from(w.scales as Float32Array) };
  }
  const src = w.data as Uint8Array;
  const rb = G * (QK / 2);
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < rb; j++) {
      const b = src[n * rb + j];
      q[n * Kp + 2 * j] = (b & 15) - 8;
      q[n * Kp + 2 * j + 1] = (b >> 4) - 8;
    }
  }
  return { q, scale: Float64Array.from(w.scales as Uint16Array, (h) => bf16ToF32(h)) };
}

/** The widened (dense) or integer (quantised) form of a weight this backend prepared. */
function refWeight(fn: string, w: PreparedWeight): RefWeight {
  const r = w as RefWeight | null;
  if (!(r?.f32 instanceof Float32Array) && !(r?.q instanceof Int8Array && r.scale instanceof Float64Array)) {
    throw new TypeError(`${fn}: weight must be a weight prepared by the reference backend, found ${describe(w)}`);
  }
  return r;
}

/**
 * Quantised product of rows with a quantised weight (./quant.ts): each logical activation row (lead zeros, n values
 * from x at xo(m), zeros) is quantised in the groups [g0, g0 + G) of the weight, the integer dot products per group
 * are exact, and out = Σ_g dx·I·d[n] (int8) or Σ_g dx·d[n,g]·I (q4) in float64, then bias.
 */
function quantProduct(
  w: RefWeight, x: Float32Array, M: number, xo: (m: number) => number, lead: number, n: number, g0: number, G: number,
  out: Float32Array, bias: Float32Array | null | undefined,
): void {
  const N = w.outFeatures;
  const Gw = groups(w.inFeatures);
  const Kp = Gw * QK;
  const q = w.q!;
  const sc = w.scale!;
  const xq = new Int8Array(G * QK);
  const dx = new Float32Array(G);
  for (let m = 0; m < M; m++) {
    quantizeActivationRow(x, xo(m), lead, n, G, xq, 0, dx, 0);
    for (let c = 0; c < N; c++) {
      let s = 0;
      for (let g = 0; g < G; g++) {
        let I = 0;
        const wo = c * Kp + (g0 + g) * QK;
        for (let j = 0; j < QK; j++) I += xq[g * QK + j] * q[wo + j];
        s += w.dtype === 'int8' ? dx[g] * I : dx[g] * sc[c * Gw + g0 + g] * I;
      }
      if (w.dtype === 'int8') s *= sc[c];
      out[m * N + c] = bias ? s + bias[c] : s;
    }
  }
}

export class ReferenceBackend implements KernelBackend {
  readonly name = 'reference';

  prepareWeight(w: HostWeight): PreparedWeight {
    checkPrepareWeight(w);
    const { outFeatures: N, inFeatures: K } = w;
    if (w.dtype === 'bf16' || w.dtype === 'f32') {
      if (w.quant) {
        const dense = w.data as Uint16Array | Float32Array;
        const h = w.quant === 'int8' ? quantizeInt8(w.dtype, dense, N, K) : quantizeQ4(w.dtype, dense, N, K);
        return this.prepareWeight({ dtype: w.quant, data: h.q, scales: h.scales, outFeatures: N, inFeatures: K });
      }
      const f32 = widen(w);
      const p: RefWeight = { dtype: w.dtype, outFeatures: N, inFeatures: K, nbytes: f32.byteLength, f32 };
      return p;
    }
    const { q, scale } = unpackQuant(w);
    const p: RefWeight = { dtype: w.dtype, outFeatures: N, inFeatures: K, nbytes: q.byteLength + scale.byteLength, q, scale };
    return p;
  }

  matmul(x: Float32Array, M: number, w: PreparedWeight, out: Float32Array, bias?: Float32Array | null, xRows?: Int32Array | null): void {
    checkMatmul(x, M, w, out, bias, xRows);
    const rw = refWeight('matmul', w);
    if (w.outFeatures === 0) return; // nothing to write: no loop over an M the arrays do not bound
    const K = w.inFeatures;
    if (rw.q) {
      quantProduct(rw, x, M, (m) => (xRows ? xRows[m] : m) * K, 0, K, 0, groups(K), out, bias);
      return;
    }
    const W = rw.f32!;
    const N = w.outFeatures;
    for (let m = 0; m < M; m++) {
      const xo = (xRows ? xRows[m] : m) * K;
      for (let n = 0; n < N; n++) {
        const wo = n * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += x[xo + k] * W[wo + k];
        out[m * N + n] = bias ? s + bias[n] : s;
      }
    }
  }

  matmulCols(x: Float32Array, M: number, w: PreparedWeight, k0: number, kLen: number, out: Float32Array): void {
    checkMatmulCols(x, M, w, k0, kLen, out);
    const rw = refWeight('matmulCols', w);
    if (w.outFeatures === 0) return; // nothing to write: no loop over an M the arrays do not bound
    const K = w.inFeatures;
    if (rw.q) {
      // The slice's groups of the weight: [g0, g1), the slice starting `lead` features into group g0.
      const g0 = Math.floor(k0 / QK);
      const g1 = kLen === 0 ? g0 : Math.ceil((k0 + kLen) / QK);
      quantProduct(rw, x, M, (m) => m * kLen, k0 - g0 * QK, kLen, g0, g1 - g0, out, null);
      return;
    }
    const W = rw.f32!;
    const N = w.outFeatures;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < kLen; k++) s += x[m * kLen + k] * W[n * K + k0 + k];
        out[m * N + n] = s;
      }
    }
  }

  gemm(a: Float32Array, M: number, K: number, b: Float32Array, N: number, out: Float32Array): void {
    checkGemm(a, M, K, b, N, out);
    if (N === 0) return; // nothing to write: no loop over an M the arrays do not bound
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[m * K + k] * b[k * N + n];
        out[m * N + n] = s;
      }
    }
  }

  rmsnorm(x: Float32Array, M: number, D: number, weight: Float32Array, eps: number, out: Float32Array): void {
    checkRmsnorm(x, M, D, weight, eps, out);
    if (D === 0) return; // nothing to write: no loop over an M the arrays do not bound
    for (let m = 0; m < M; m++) {
      const o = m * D;
      let ss = 0;
      for (let d = 0; d < D; d++) ss += x[o + d] * x[o + d];
      const r = 1 / Math.sqrt(ss / D + eps);
      for (let d = 0; d < D; d++) out[o + d] = x[o + d] * r * weight[d];
    }
  }

  rope(x: Float32Array, M: number, nHeads: number, Dh: number, positions: Int32Array, cos: Float32Array, sin: Float32Array): void {
    checkRope(x, M, nHeads, Dh, positions, cos, sin);
    if (nHeads === 0 || Dh === 0) return; // nothing to rotate: no loop over a head count the arrays do not bound
    const h = Dh >> 1;
    for (let m = 0; m < M; m++) {
      const t = positions[m] * h;
      for (let hd = 0; hd < nHeads; hd++) {
        const o = (m * nHeads + hd) * Dh;
        for (let j = 0; j < h; j++) {
          const c = cos[t + j];
          const s = sin[t + j];
          const x1 = x[o + j];
          const x2 = x[o + h + j];
          x[o + j] = x1 * c - x2 * s;
          x[o + h + j] = x2 * c + x1 * s;
        }
      }
    }
  }

  attention(
    q: Float32Array, Mq: number, k: Float32Array, v: Float32Array, Mk: number,
    H: number, Hkv: number, Dh: number, keyMask: Uint8Array | null, out: Float32Array, lse?: Float32Array | null,
  ): void {
    checkAttention(q, Mq, k, v, Mk, H, Hkv, Dh, keyMask, out, lse);
    const group = H / Hkv;
    const scale = 1 / Math.sqrt(Dh);
    const scores = new Float64Array(Mk);
    const acc = new Float64Array(Dh);
    for (let i = 0; i < Mq; i++) {
      for (let h = 0; h < H; h++) {
        const qo = (i * H + h) * Dh;
        const kvh = Math.floor(h / group);
        let max = -Infinity;
        for (let j = 0; j < Mk; j++) {
          if (keyMask && !keyMask[j]) { scores[j] = -Infinity; continue; }
          const ko = (j * Hkv + kvh) * Dh;
          let s = 0;
          for (let d = 0; d < Dh; d++) s += q[qo + d] * k[ko + d];
          s *= scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        acc.fill(0);
        let z = 0;
        if (max !== -Infinity) {
          for (let j = 0; j < Mk; j++) {
            if (scores[j] === -Infinity) continue;
            const p = Math.exp(scores[j] - max);
            z += p;
            const vo = (j * Hkv + kvh) * Dh;
            for (let d = 0; d < Dh; d++) acc[d] += p * v[vo + d];
          }
        }
        const oo = (i * H + h) * Dh;
        for (let d = 0; d < Dh; d++) out[oo + d] = z > 0 ? acc[d] / z : 0;
        if (lse) lse[i * H + h] = z > 0 ? max + Math.log(z) : -Infinity;
      }
    }
  }

  attentionDelta(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, dv: Float32Array, ctx: Float32Array, probs?: Float32Array | null,
  ): void {
    checkAttentionDelta(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, dv, ctx, probs);
    const group = H / Hkv;
    const scale = 1 / Math.sqrt(Dh);
    const nc = cols.length;
    if (probs) probs.fill(0, 0, Mq * H * nc);
    const scores = new Float64Array(Mk);
    for (let i = 0; i < Mq; i++) {
      for (let h = 0; h < H; h++) {
        const qo = (i * H + h) * Dh;
        const kvh = Math.floor(h / group);
        let max = -Infinity;
        for (let j = 0; j < Mk; j++) {
          if (keyMask && !keyMask[j]) { scores[j] = -Infinity; continue; }
          const ko = (j * Hkv + kvh) * Dh;
          let s = 0;
          for (let d = 0; d < Dh; d++) s += q[qo + d] * k[ko + d];
          scores[j] = s * scale;
          if (scores[j] > max) max = scores[j];
        }
        if (max === -Infinity) continue;
        let z = 0;
        for (let j = 0; j < Mk; j++) if (scores[j] !== -Infinity) z += Math.exp(scores[j] - max);
        const oo = (i * H + h) * Dh;
        for (let c = 0; c < nc; c++) {
          const sc = scores[cols[c]];
          if (sc === -Infinity) continue;
          const p = Math.exp(sc - max) / z;
          if (probs) probs[(i * H + h) * nc + c] = p;
          const vo = (c * Hkv + kvh) * Dh;
          for (let d = 0; d < Dh; d++) ctx[oo + d] += p * dv[vo + d];
        }
      }
    }
  }

  attentionRescale(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, kOld: Float32Array, vOld: Float32Array, vNew: Float32Array,
    lse: Float32Array, ctx: Float32Array, incremental: boolean,
  ): void {
    checkAttentionRescale(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, kOld, vOld, vNew, lse, ctx, incremental);
    const group = H / Hkv;
    const scale = 1 / Math.sqrt(Dh);
    const kvDim = Hkv * Dh;
    const dot = (a: Float32Array, ao: number, b: Float32Array, bo: number) => {
      let s = 0;
      for (let d = 0; d < Dh; d++) s += a[ao + d] * b[bo + d];
      return s * scale;
    };
    for (let i = 0; i < Mq; i++) {
      for (let h = 0; h < H; h++) {
        const qo = (i * H + h) * Dh;
        const kvh = Math.floor(h / group);
        const lseOld = lse[i * H + h];
        if (lseOld === -Infinity) continue;
        const lNew: number[] = [];
        const lOld: number[] = [];
        for (let c = 0; c < cols.length; c++) {
          const live = !keyMask || keyMask[cols[c]];
          lNew.push(live ? dot(q, qo, k, cols[c] * kvDim + kvh * Dh) : -Infinity);
          lOld.push(live ? dot(q, qo, kOld, c * kvDim + kvh * Dh) : -Infinity);
        }
        let lseNew: number;
        let r: number; // Z_old / Z_new
        if (incremental) {
          // Cached Z_old (from the query that produced C_old), updated by the changed columns only.
          let z = 1;
          for (let c = 0; c < cols.length; c++) z += Math.exp(lNew[c] - lseOld) - Math.exp(lOld[c] - lseOld);
          lseNew = lseOld + Math.log(Math.max(z, 1e-30));
          r = Math.exp(lseOld - lseNew);
        } else {
          // Exact Z_new over all current keys; Z_old taken under the CURRENT query (the old keys differ only in
          // the changed columns), so the update stays consistent when the query itself has drifted.
          let m = -Infinity;
          const sc = new Float64Array(Mk);
          for (let j = 0; j < Mk; j++) {
            sc[j] = keyMask && !keyMask[j] ? -Infinity : dot(q, qo, k, j * kvDim + kvh * Dh);
            if (sc[j] > m) m = sc[j];
          }
          let z = 0;
          for (let j = 0; j < Mk; j++) if (sc[j] !== -Infinity) z += Math.exp(sc[j] - m);
          let zOld = z;
          for (let c = 0; c < cols.length; c++) zOld += Math.exp(lOld[c] - m) - Math.exp(lNew[c] - m);
          lseNew = m + Math.log(z);
          r = zOld / z;
        }
        for (let d = 0; d < Dh; d++) {
          let acc = r * ctx[qo + d];
          for (let c = 0; c < cols.length; c++) {
            const vo = c * kvDim + kvh * Dh + d;
            acc += Math.exp(lNew[c] - lseNew) * vNew[vo] - Math.exp(lOld[c] - lseNew) * vOld[vo];
          }
          ctx[qo + d] = acc;
        }
        lse[i * H + h] = lseNew;
      }
    }
  }

  cosineRows(a: Float32Array, b: Float32Array, M: number, D: number, out: Float32Array): void {
    checkCosineRows(a, b, M, D, out);
    for (let m = 0; m < M; m++) {
      let dot = 0;
      let aa = 0;
      let bb = 0;
      for (let d = 0; d < D; d++) {
        const x = a[m * D + d];
        const y = b[m * D + d];
        dot += x * y;
        aa += x * x;
        bb += y * y;
      }
      out[m] = (dot / Math.sqrt(Math.max(aa, 1e-8))) / Math.sqrt(Math.max(bb, 1e-8));
    }
  }

  logitStats(logits: Float32Array, M: number, V: number, argmax: Int32Array, p1: Float64Array, p2: Float64Array, negEntropy: Float64Array | null): void {
    checkLogitStats(logits, M, V, argmax, p1, p2, negEntropy);
    for (let m = 0; m < M; m++) {
      const o = m * V;
      let best = 0;
      let max = -Infinity;
      for (let v = 0; v < V; v++) if (logits[o + v] > max) { max = logits[o + v]; best = v; }
      let second = -Infinity;
      for (let v = 0; v < V; v++) if (v !== best && logits[o + v] > second) second = logits[o + v];
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[o + v] - max);
      argmax[m] = best;
      p1[m] = 1 / z;
      p2[m] = second === -Infinity ? 0 : Math.exp(second - max) / z;
      if (negEntropy) {
        let h = 0;
        for (let v = 0; v < V; v++) {
          const p = Math.exp(logits[o + v] - max) / z;
          h += p * Math.log(p + 1e-10);
        }
        negEntropy[m] = h;
      }
    }
  }

  siluMul(gate: Float32Array, up: Float32Array, n: number, out: Float32Array): void {
    checkSiluMul(gate, up, n, out);
    for (let i = 0; i < n; i++) {
      const g = gate[i];
      out[i] = (g / (1 + Math.exp(-g))) * up[i];
    }
  }

  add(dst: Float32Array, src: Float32Array, n: number): void {
    checkAdd(dst, src, n);
    for (let i = 0; i < n; i++) dst[i] += src[i];
  }
}

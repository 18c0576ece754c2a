/**
 * The KernelBackend ops (../backend.ts) on host arrays, run by the WebGPU kernels: each call checks its arguments
 * exactly as the other backends do (../args.ts, same messages), uploads its inputs, runs the op in one batch, reads
 * the outputs back into the caller's arrays (only the elements the op defines: a longer view keeps the rest) and
 * frees the temporaries. Every op returns a Promise (a WebGPU read-back is asynchronous), so this is the
 * asynchronous twin of KernelBackend, not a drop-in one.
 *
 * It is the conformance path (the shared kernel suite runs it against the reference backend, in a browser and
 * through the `webgpu` package in Node) and a simple way to call single kernels; a forward pass should keep its
 * tensors on the device and use WebGpuKernels directly (docs/webgpu.md).
 */
import type { HostWeight, KernelBackend, PreparedWeight } from '../backend.js';
import {
  checkAdd, checkAttention, checkAttentionDelta, checkAttentionRescale, checkCosineRows, checkGemm, checkLogitStats,
  checkMatmul, checkMatmulCols, checkRmsnorm, checkRope, checkSiluMul, describe,
} from '../args.js';
import { GpuWeight, type GpuTensor, type WebGpuKernels } from './kernels.js';

type Ops = Exclude<keyof KernelBackend, 'name' | 'prepareWeight'>;

/** KernelBackend with every op asynchronous. */
export type AsyncKernelBackend = { readonly name: string; prepareWeight(w: HostWeight): PreparedWeight } & {
  [K in Ops]: (...args: Parameters<KernelBackend[K]>) => Promise<void>;
};

function gpuWeight(fn: string, w: PreparedWeight): GpuWeight {
  if (!(w instanceof GpuWeight)) throw new TypeError(`${fn}: weight must be a weight prepared by the WebGPU backend, found ${describe(w)}`);
  return w;
}

export class WebGpuHostBackend implements AsyncKernelBackend {
  readonly name = 'webgpu';

  constructor(readonly kernels: WebGpuKernels) {}

  prepareWeight(w: HostWeight): PreparedWeight {
    return this.kernels.prepareWeight(w);
  }

  /** Runs `body` with an uploader whose tensors are all freed afterwards. */
  private async run(body: (up: <T extends Float32Array | Int32Array | Uint8Array | null | undefined>(a: T) => T extends null | undefined ? null : GpuTensor, zeros: (n: number) => GpuTensor) => Promise<void>): Promise<void> {
    const made: GpuTensor[] = [];
    const k = this.kernels;
    const up = ((a: Float32Array | Int32Array | Uint8Array | null | undefined) => {
      if (a === null || a === undefined) return null;
      const t = k.upload(a);
      made.push(t);
      return t;
    }) as <T extends Float32Array | Int32Array | Uint8Array | null | undefined>(a: T) => T extends null | undefined ? null : GpuTensor;
    const zeros = (n: number) => {
      const t = k.tensor('f32', n);
      made.push(t);
      return t;
    };
    try {
      await body(up, zeros);
    } finally {
      for (const t of made) t.destroy();
    }
  }

  /** Reads tensors back into the first n[i] elements of the host arrays. */
  private async back(pairs: Array<[GpuTensor, Float32Array, number]>): Promise<void> {
    const got = await this.kernels.read(...pairs.map(([t, , n]) => t.view(0, n)));
    pairs.forEach(([, host, n], i) => host.set((got[i] as Float32Array).subarray(0, n)));
  }

  async matmul(x: Float32Array, M: number, w: PreparedWeight, out: Float32Array, bias?: Float32Array | null, xRows?: Int32Array | null): Promise<void> {
    checkMatmul(x, M, w, out, bias, xRows);
    const W = gpuWeight('matmul', w);
    const n = M * W.outFeatures;
    if (n === 0) return;
    await this.run(async (up, zeros) => {
      const o = zeros(n);
      this.kernels.matmul(up(x), M, W, o, up(bias), up(xRows));
      await this.back([[o, out, n]]);
    });
  }

  async matmulCols(x: Float32Array, M: number, w: PreparedWeight, k0: number, kLen: number, out: Float32Array): Promise<void> {
    checkMatmulCols(x, M, w, k0, kLen, out);
    const W = gpuWeight('matmulCols', w);
    const n = M * W.outFeatures;
    if (n === 0) return;
    await this.run(async (up, zeros) => {
      const o = zeros(n);
      this.kernels.matmulCols(up(x), M, W, k0, kLen, o);
      await this.back([[o, out, n]]);
    });
  }

  async gemm(a: Float32Array, M: number, K: number, b: Float32Array, N: number, out: Float32Array): Promise<void> {
    checkGemm(a, M, K, b, N, out);
    const n = M * N;
    if (n === 0) return;
    await this.run(async (up, zeros) => {
      const o = zeros(n);
      this.kernels.gemm(up(a), M, K, up(b), N, o);
      await this.back([[o, out, n]]);
    });
  }

  async rmsnorm(x: Float32Array, M: number, D: number, weight: Float32Array, eps: number, out: Float32Array): Promise<void> {
    checkRmsnorm(x, M, D, weight, eps, out);
    const n = M * D;
    if (n === 0) return;
    await this.run(async (up, zeros) => {
      const o = zeros(n);
      this.kernels.rmsnorm(up(x), M, D, up(weight), eps, o);
      await this.back([[o, out, n]]);
    });
  }

  async rope(x: Float32Array, M: number, nHeads: number, Dh: number, positions: Int32Array, cos: Float32Array, sin: Float32Array): Promise<void> {
    checkRope(x, M, nHeads, Dh, positions, cos, sin);
    const n = M * nHeads * Dh;
    if (n === 0) return;
    await this.run(async (up) => {
      const t = up(x.subarray(0, n));
      this.kernels.rope(t, M, nHeads, Dh, up(positions), up(cos), up(sin));
      await this.back([[t, x, n]]);
    });
  }

  async attention(
    q: Float32Array, Mq: number, k: Float32Array, v: Float32Array, Mk: number,
    H: number, Hkv: number, Dh: number, keyMask: Uint8Array | null, out: Float32Array, lse?: Float32Array | null,
  ): Promise<void> {
    checkAttention(q, Mq, k, v, Mk, H, Hkv, Dh, keyMask, out, lse);
    const n = Mq * H * Dh;
    if (n === 0) return;
    await this.run(async (up, zeros) => {
      const o = zeros(n);
      const l = lse ? zeros(Mq * H) : null;
      this.kernels.attention(up(q), Mq, up(k), up(v), Mk, H, Hkv, Dh, up(keyMask), o, l);
      await this.back(l && lse ? [[o, out, n], [l, lse, Mq * H]] : [[o, out, n]]);
    });
  }

  async attentionDelta(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, dv: Float32Array, ctx: Float32Array, probs?: Float32Array | null,
  ): Promise<void> {
    checkAttentionDelta(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, dv, ctx, probs);
    const n = Mq * H * Dh;
    const np = Mq * H * cols.length;
    if (n === 0) return;
    await this.run(async (up, zeros) => {
      const c = up(ctx.subarray(0, n));
      const p = probs ? zeros(np) : null;
      this.kernels.attentionDelta(up(q), Mq, up(k), Mk, H, Hkv, Dh, up(keyMask), up(cols), up(dv), c, p);
      await this.back(p && probs ? [[c, ctx, n], [p, probs, np]] : [[c, ctx, n]]);
    });
  }

  async attentionRescale(
    q: Float32Array, Mq: number, k: Float32Array, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: Uint8Array | null, cols: Int32Array, kOld: Float32Array, vOld: Float32Array, vNew: Float32Array,
    lse: Float32Array, ctx: Float32Array, incremental: boolean,
  ): Promise<void> {
    checkAttentionRescale(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, kOld, vOld, vNew, lse, ctx, incremental);
    const n = Mq * H * Dh;
    if (n === 0) return;
    await this.run(async (up) => {
      const c = up(ctx.subarray(0, n));
      const l = up(lse.subarray(0, Mq * H));
      this.kernels.attentionRescale(up(q), Mq, up(k), Mk, H, Hkv, Dh, up(keyMask), up(cols), up(kOld), up(vOld), up(vNew), l, c, incremental);
      await this.back([[c, ctx, n], [l, lse, Mq * H]]);
    });
  }

  async cosineRows(a: Float32Array, b: Float32Array, M: number, D: number, out: Float32Array): Promise<void> {
    checkCosineRows(a, b, M, D, out);
    if (M === 0) return;
    await this.run(async (up, zeros) => {
      const o = zeros(M);
      this.kernels.cosineRows(up(a), up(b), M, D, o);
      await this.back([[o, out, M]]);
    });
  }

  async logitStats(logits: Float32Array, M: number, V: number, argmax: Int32Array, p1: Float64Array, p2: Float64Array, negEntropy: Float64Array | null): Promise<void> {
    checkLogitStats(logits, M, V, argmax, p1, p2, negEntropy);
    if (M === 0) return;
    const k = this.kernels;
    const x = k.upload(logits.subarray(0, M * V));
    const stats = k.tensor('u32', 4 * M);
    try {
      k.logitStats(x, M, V, stats, negEntropy !== null);
      const r = await k.readLogitStats(stats, M);
      argmax.set(r.argmax);
      p1.set(r.p1);
      p2.set(r.p2);
      if (negEntropy) negEntropy.set(r.negEntropy);
    } finally {
      x.destroy();
      stats.destroy();
    }
  }

  async siluMul(gate: Float32Array, up: Float32Array, n: number, out: Float32Array): Promise<void> {
    checkSiluMul(gate, up, n, out);
    if (n === 0) return;
    await this.run(async (upl, zeros) => {
      const o = zeros(n);
      this.kernels.siluMul(upl(gate.subarray(0, n)), upl(up.subarray(0, n)), n, o);
      await this.back([[o, out, n]]);
    });
  }

  async add(dst: Float32Array, src: Float32Array, n: number): Promise<void> {
    checkAdd(dst, src, n);
    if (n === 0) return;
    await this.run(async (up) => {
      const d = up(dst.subarray(0, n));
      this.kernels.add(d, up(src.subarray(0, n)), n);
      await this.back([[d, dst, n]]);
    });
  }
}

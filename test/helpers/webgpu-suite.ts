/**
 * How the WebGPU kernels run the shared kernel suite (./kernel-suite.ts), in headless Chromium (test/webgpu/page.ts)
 * and in Node through the `webgpu` package (test/webgpu.node.test.ts), plus the cases only the device API has: row
 * gather / scatter and sub, operands that alias (views of one buffer, in-place ops: staged through copies), weights
 * split into row chunks, and the device API's argument checks. Browser-safe: no Node imports.
 *
 * Configurations (`WEBGPU_CONFIGS`): the default device (subgroup kernels when the adapter has them) runs everything;
 * a device without subgroups (the tiled kernel for every M) and one whose weights are split into 2 KiB row chunks
 * run the matmul-family case at the shapes whose code path they change (PRODUCTS).
 */
import type { GpuLike } from '../../src/kernels/webgpu/gpu-types.js';
import { GpuTensor, WebGpuKernels, type WebGpuOptions } from '../../src/kernels/webgpu/kernels.js';
import { WebGpuHostBackend } from '../../src/kernels/webgpu/host-backend.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import {
  CheckFailure, KERNEL_SUITE, SABOTAGE_SUITE, TOL_F32, WEBGPU_TOLERANCES, assertClose, checkGemm, checkMatmul, checkMatmulCols, mulberry32, randView,
  type SuiteCase,
} from './kernel-suite.js';

export interface WebGpuConfig {
  readonly name: string;
  readonly options: WebGpuOptions;
  /** The device cases this configuration runs instead of the whole suite (empty: everything). */
  readonly only: readonly string[];
}

/** A device-API case: gets the kernels of its configuration. */
export interface DeviceCase {
  readonly name: string;
  run(k: WebGpuKernels): Promise<void>;
}

/**
 * The matmul family at the shapes whose code path a configuration changes: M ≤ 8 (the skinny subgroup kernel by
 * default, the tiled one without subgroups) and M > 8, every weight layout, bias and gathered rows, odd K (bf16
 * pairs padded), matmulCols slices and gemm. With small weight chunks every weight spans several chunks, the last
 * one short.
 */
const PRODUCTS: DeviceCase = {
  name: 'matmul, matmulCols and gemm at M <= 8 and M > 8, every weight layout',
  async run(k) {
    const be = new WebGpuHostBackend(k);
    let seed = 950;
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const M of [1, 3, 8, 13]) {
        for (const [K, N] of [[37, 77], [130, 45]] as Array<[number, number]>) {
          await checkMatmul(be, { M, K, N, dtype, bias: seed % 2 === 0, gather: seed % 3 === 0, seed: seed++ });
        }
      }
      await checkMatmul(be, { M: 5, K: 301, N: 290, dtype, bias: true, gather: true, bf16Input: dtype === 'bf16', seed: seed++ });
      for (const [M, K, N, k0, kLen] of [[1, 64, 33, 0, 16], [3, 64, 70, 16, 16], [13, 37, 9, 30, 7]]) {
        await checkMatmulCols(be, { M, K, N, k0, kLen, dtype, bf16Input: dtype === 'bf16', seed: seed++ });
      }
    }
    for (const [M, K, N] of [[1, 7, 33], [3, 96, 70], [13, 96, 70]]) await checkGemm(be, M, K, N, seed++);
  },
};

/** Embedding lookups from a prepared weight: every row exact (bf16 widened, f32 copied), across row chunks. */
const WEIGHT_ROWS_CASE: DeviceCase = {
  name: 'gatherWeightRows: rows of bf16 (odd width) and f32 weights, exactly, at a view; out-of-range indices skipped',
  async run(k) {
    const rnd = mulberry32(901);
    for (const dtype of ['bf16', 'f32'] as const) {
      const N = 70;
      const K = dtype === 'bf16' ? 33 : 40; // odd bf16 rows are padded to even in the device layout
      const f = randView(N * K, rnd);
      const u = new Uint32Array(f.buffer, f.byteOffset, f.length);
      const bits = Uint16Array.from(u, (x) => x >>> 16);
      const host = { dtype, outFeatures: N, inFeatures: K, data: dtype === 'bf16' ? bits : f };
      const w = k.prepareWeight(host);
      const idx = Int32Array.from([69, 0, 35, 35, -1, 70, 12, 68]);
      const rows = k.upload(idx);
      const fill = randView(3 + idx.length * K, rnd);
      const all = k.upload(fill);
      k.gatherWeightRows(all.view(3), w, rows);
      const [got] = await k.read(all.view(3));
      const want = fill.slice(3);
      idx.forEach((r, i) => {
        if (r < 0 || r >= N) return;
        for (let c = 0; c < K; c++) want[i * K + c] = dtype === 'bf16' ? new Float32Array(new Uint32Array([bits[r * K + c] << 16]).buffer)[0] : f[r * K + c];
      });
      assertClose(got, want, 0, `gatherWeightRows ${dtype}`);
      for (const t of [rows, all]) t.destroy();
      k.destroyWeight(w);
    }
  },
};

export const WEBGPU_CONFIGS: readonly WebGpuConfig[] = [
  { name: 'webgpu', options: {}, only: [] },
  { name: 'webgpu without subgroups', options: { subgroups: false }, only: [PRODUCTS.name] },
  { name: 'webgpu with weights in 2 KiB row chunks', options: { weightChunkBytes: 2048 }, only: [PRODUCTS.name, WEIGHT_ROWS_CASE.name] },
];

function ok(cond: unknown, message: string): asserts cond {
  if (!cond) throw new CheckFailure(message);
}

/** fn must throw synchronously an error of class `kind` whose message is exactly `message`. */
function throwsExactly(fn: () => unknown, kind: 'TypeError' | 'RangeError', message: string): void {
  try {
    fn();
  } catch (e) {
    ok((e as Error).name === kind && (e as Error).message === message, `expected ${kind}: ${message}\n     got ${(e as Error).name}: ${(e as Error).message}`);
    return;
  }
  throw new CheckFailure(`expected ${kind}: ${message}; nothing was thrown`);
}

const ref = new ReferenceBackend();

export const DEVICE_SUITE: readonly DeviceCase[] = [
  PRODUCTS,
  WEIGHT_ROWS_CASE,
  {
    name: 'gatherRows, scatterRows and sub on views at odd offsets; out-of-range row indices are skipped',
    async run(k) {
      const rnd = mulberry32(900);
      const width = 37;
      const srcRows = 11;
      const host = randView(3 + srcRows * width, rnd);
      const src = k.upload(host).view(3); // a view at an odd element offset
      const idx = Int32Array.from([4, 0, 10, 4, 7, -1, 11, 2]); // a repeat, and two indices outside [0, 11)
      const rows = k.upload(idx);
      const dstHost = randView(5 + idx.length * width, rnd);
      const dstAll = k.upload(dstHost);
      const dst = dstAll.view(5);
      k.gatherRows(dst, src, rows, width);
      const want = dstHost.slice(5);
      idx.forEach((r, i) => { if (r >= 0 && r < srcRows) want.set(host.subarray(3 + r * width, 3 + (r + 1) * width), i * width); });
      const [got] = await k.read(dst);
      assertClose(got, want, 0, 'gatherRows');
      // scatter: distinct rows, one out of range
      const sIdx = Int32Array.from([9, 1, 12, 5]);
      const sRows = k.upload(sIdx);
      const sSrc = k.upload(randView(sIdx.length * width, rnd));
      const [sSrcHost] = await k.read(sSrc);
      const target = k.upload(host).view(3);
      k.scatterRows(target, sSrc, sRows, width);
      const sWant = host.slice(3);
      sIdx.forEach((r, i) => { if (r < srcRows) sWant.set((sSrcHost as Float32Array).subarray(i * width, (i + 1) * width), r * width); });
      const [sGot] = await k.read(target);
      assertClose(sGot, sWant, 0, 'scatterRows');
      // sub: out = a − b into a third view of the same buffer as b (staged)
      const n = 1000;
      const ab = randView(2 * n + 7, rnd);
      const both = k.upload(ab);
      const out = k.tensor('f32', n);
      k.sub(out, both.view(7, n), both.view(7 + n, n), n);
      const [subGot] = await k.read(out);
      const subWant = new Float32Array(n);
      for (let i = 0; i < n; i++) subWant[i] = ab[7 + i] - ab[7 + n + i];
      assertClose(subGot, subWant, 0, 'sub');
      for (const t of [src, rows, dstAll, sRows, sSrc, target, both, out]) t.destroy();
    },
  },
  {
    name: 'aliased operands: q, k, v as views of one buffer, out and lse in one buffer, in-place rmsnorm and siluMul, add of two views of one buffer',
    async run(k) {
      const rnd = mulberry32(901);
      const [Mq, Mk, H, Hkv, Dh] = [5, 33, 4, 2, 16];
      const nq = Mq * H * Dh;
      const nk = Mk * Hkv * Dh;
      const all = randView(nq + 2 * nk, rnd);
      const qkv = k.upload(all);
      const res = k.tensor('f32', nq + Mq * H + 1);
      k.attention(qkv.view(0, nq), Mq, qkv.view(nq, nk), qkv.view(nq + nk, nk), Mk, H, Hkv, Dh, null, res.view(0, nq), res.view(nq + 1, Mq * H));
      const [got] = await k.read(res);
      const want = new Float32Array(nq);
      const wantLse = new Float32Array(Mq * H);
      ref.attention(all.subarray(0, nq), Mq, all.subarray(nq, nq + nk), all.subarray(nq + nk), Mk, H, Hkv, Dh, null, want, wantLse);
      assertClose(got.subarray(0, nq), want, TOL_F32, 'attention out (aliased views)');
      assertClose(got.subarray(nq + 1), wantLse, TOL_F32, 'attention lse (aliased views)');
      ok(got[nq] === 0, 'attention: the element between out and lse stays untouched');
      // in place: rmsnorm x → x, siluMul gate → gate
      const [M, D] = [3, 50];
      const xh = randView(M * D, rnd, 3);
      const wh = randView(D, rnd);
      const x = k.upload(xh);
      k.rmsnorm(x, M, D, k.upload(wh), 1e-6, x);
      const g = k.upload(randView(M * D, rnd, 5));
      const [gh] = await k.read(g);
      const u = k.upload(randView(M * D, rnd, 2));
      const [uh] = await k.read(u);
      k.siluMul(g, u, M * D, g);
      const [xGot, gGot] = await k.read(x, g);
      const xWant = new Float32Array(M * D);
      ref.rmsnorm(xh, M, D, wh, 1e-6, xWant);
      assertClose(xGot, xWant, TOL_F32, 'rmsnorm in place');
      const gWant = new Float32Array(M * D);
      ref.siluMul(gh as Float32Array, uh as Float32Array, M * D, gWant);
      assertClose(gGot, gWant, TOL_F32, 'siluMul in place');
      // add: src is another view of dst's buffer
      const pair = randView(2 * D, rnd);
      const p = k.upload(pair);
      k.add(p.view(0, D), p.view(D, D), D);
      const [pGot] = await k.read(p);
      const pWant = pair.slice();
      for (let i = 0; i < D; i++) pWant[i] += pair[D + i];
      assertClose(pGot, pWant, 0, 'add of two views of one buffer');
    },
  },
  {
    name: 'ops recorded before a write see the old contents; one read returns several tensors',
    async run(k) {
      const a = k.upload(Float32Array.from([1, 2, 3, 4]));
      const b = k.upload(Float32Array.from([10, 20, 30, 40]));
      const c = k.tensor('f32', 4);
      k.sub(c, b, a, 4); // recorded, not yet submitted
      k.write(a, Float32Array.from([100, 100, 100, 100])); // submits the sub first
      k.add(b, a, 4);
      const [cGot, bGot] = await k.read(c, b);
      ok([...cGot].join() === '9,18,27,36', `sub before the write: ${[...cGot]}`);
      ok([...bGot].join() === '110,120,130,140', `add after the write: ${[...bGot]}`);
    },
  },
  {
    name: 'device API argument checks: one line naming the op and argument, nothing recorded',
    async run(k) {
      const f = k.tensor('f32', 16);
      const i = k.tensor('i32', 4);
      const w = k.prepareWeight({ dtype: 'bf16', data: new Uint16Array(4 * 6), outFeatures: 4, inFeatures: 6 });
      throwsExactly(() => k.matmul(f, 3, w, f), 'RangeError', 'matmul: x has 16 elements, needs M*K = 3*6 = 18');
      throwsExactly(() => k.matmul(i as unknown as GpuTensor, 1, w, f), 'TypeError', 'matmul: x must be a GpuTensor (f32), found a GpuTensor (i32)');
      throwsExactly(() => k.matmul(new Float32Array(16) as unknown as GpuTensor, 1, w, f), 'TypeError', 'matmul: x must be a GpuTensor (f32), found a Float32Array');
      throwsExactly(() => k.matmul(f, 2, ref.prepareWeight({ dtype: 'f32', data: new Float32Array(6), outFeatures: 1, inFeatures: 6 }) as never, f), 'TypeError',
        'matmul: weight must be a weight prepared by the WebGPU kernels (prepareWeight), found an object');
      throwsExactly(() => k.matmulCols(f, 2, w, 1, 2, f), 'RangeError', 'matmulCols: bf16 weights are packed in input pairs; k0 (1) and kLen (2) must be even');
      throwsExactly(() => k.attention(f, 1, f, f, 1, 1, 1, 512, null, f), 'RangeError',
        'attention: Dh (512) exceeds 256, the largest head dimension the WebGPU attention kernels hold in workgroup memory');
      throwsExactly(() => k.attention(f, 1, f, f, 1, 4, 3, 4, null, f), 'RangeError', 'attention: H (4) must be a multiple of Hkv (3)');
      throwsExactly(() => k.logitStats(f, 2, 8, i as never, true), 'TypeError', 'logitStats: stats must be a GpuTensor (u32), found a GpuTensor (i32)');
      const tooMany = Math.floor(k.maxBufferBytes / 4) + 1;
      throwsExactly(() => k.tensor('f32', tooMany), 'RangeError', `tensor: ${tooMany * 4} bytes exceed the ${k.maxBufferBytes}-byte buffer limit of this WebGPU device`);
      throwsExactly(() => f.view(10, 7), 'RangeError', 'view: length must be an integer in [0, 6], found 7');
      const gone = k.tensor('f32', 4);
      gone.destroy();
      throwsExactly(() => k.add(gone, f, 4), 'RangeError', 'add: dst is a destroyed GpuTensor');
      // Nothing was recorded: f is still zero.
      const [fGot] = await k.read(f);
      ok(fGot.every((v) => v === 0), 'a refused op changed nothing');
    },
  },
];

/** The cases a configuration runs: kernel suite and sabotage through the host backend, then the device cases. */
export function casesOf(config: WebGpuConfig): DeviceCase[] {
  if (config.only.length) return DEVICE_SUITE.filter((c) => config.only.includes(c.name));
  const host = (c: SuiteCase, prefix = '') => ({ name: prefix + c.name, run: (k: WebGpuKernels) => c.run(new WebGpuHostBackend(k), WEBGPU_TOLERANCES) });
  return [
    ...KERNEL_SUITE.map((c) => host(c)),
    ...SABOTAGE_SUITE.map((c) => host(c, 'the suite detects broken kernels: ')),
    ...DEVICE_SUITE,
  ];
}

/** Creates the kernels of a configuration on `gpu`. */
export function makeKernels(gpu: GpuLike, config: WebGpuConfig): Promise<WebGpuKernels> {
  return WebGpuKernels.create(gpu, config.options);
}

export { GpuTensor };

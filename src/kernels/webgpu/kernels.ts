/**
 * WebGPU kernels with device-resident tensors: the ops a forward pass needs (the KernelBackend ops of ../backend.ts
 * plus DyLLM's row gather / scatter and a subtraction), on GpuTensor handles instead of host arrays.
 *
 * Execution model: every op checks its arguments (./checks.ts) and is recorded at once into the current batch (one
 * command encoder, one compute pass); nothing runs until `submit()` (or `read()` / `finish()`, which submit first)
 * sends the batch as one command buffer. `read()` is the only way data comes back: one copy per tensor into a
 * mappable buffer and one wait for all of them, so a forward pass can enqueue all its ops and read back only the
 * logit row statistics it needs. Ops see the results of earlier ops in program order (WebGPU orders the dispatches
 * of a pass); `write()` into an existing tensor first submits what is pending, so it never overtakes an op recorded
 * before it.
 *
 * Tensors: one GPUBuffer per allocation, f32 / i32 / u32 elements; `view(start, length)` addresses part of one
 * without copying (kernels take element offsets, so views need no alignment). A buffer may be bound only once per
 * dispatch when it is written (WebGPU forbids aliasing writable bindings), so when two operands of one op are views
 * of the same buffer (or the same tensor, as in an in-place RMSNorm), the later one is staged through a temporary
 * copy (copied in before the dispatch when read, copied back after it when written). Key masks are u32 per key
 * (`upload` widens a Uint8Array). Weights (`prepareWeight`) keep bf16 as bf16, two per u32, rows padded to an even
 * count, and are split into row chunks under the device's storage-binding limit (an LLM head is larger than the
 * 128 MiB default), one dispatch per chunk.
 *
 * Validation and out-of-memory errors of the GPU are collected per batch (error scopes) and thrown, one line, by the
 * next `read()` / `finish()`.
 */
import type { PreparedWeight } from '../backend.js';
import { int } from '../args.js';
import type { GpuLike } from './gpu-types.js';
import { f32bits, GpuRecorder, MAX_GROUPS, WebGpuUnavailableError, type LogitStatsResult, type Operand, type WebGpuOptions } from './device.js';
import { heads, need, tensor, weight } from './checks.js';
import { GpuTensor, GpuWeight, type GpuDtype } from './tensor.js';
import { elementwiseShader, type ElementwiseOp } from './shaders/elementwise.js';
import { COSINE, RMSNORM, ROPE, ROWS, WEIGHT_ROWS } from './shaders/rowwise.js';
import { LOGIT_STATS } from './shaders/logit-stats.js';
import { ATTENTION, ATTENTION_DELTA, RESCALE_APPLY, RESCALE_WEIGHTS } from './shaders/attention.js';
import { LAYOUT_CODE, SKINNY_COLS, SKINNY_MAX_M, TILE, skinnyMatmulShader, tiledMatmulShader, type WeightLayout } from './shaders/matmul.js';

export { GpuTensor, GpuWeight, type GpuDtype };
export { WebGpuError, WebGpuUnavailableError, type GpuArray, type LogitStatsResult, type WebGpuOptions } from './device.js';

export class WebGpuKernels extends GpuRecorder {
  /** Requests an adapter and a device (with 'subgroups' when offered and wanted, and the adapter's buffer limits). */
  static async create(gpu: GpuLike, opts: WebGpuOptions = {}): Promise<WebGpuKernels> {
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) throw new WebGpuUnavailableError('no WebGPU adapter');
    const subgroups = opts.subgroups !== false && adapter.features.has('subgroups');
    const device = await adapter.requestDevice({
      requiredFeatures: subgroups ? ['subgroups'] : [],
      requiredLimits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxBufferSize: adapter.limits.maxBufferSize,
      },
    });
    return new WebGpuKernels(gpu, device, adapter.info ?? {}, subgroups, opts);
  }

  // ---- ops -----------------------------------------------------------------------------------------------------

  /** out[M, N] = x[M, K] · Wᵀ (+ bias[N]); xRows (optional, i32 [M]) gathers the rows of x. */
  matmul(x: GpuTensor, M: number, w: GpuWeight, out: GpuTensor, bias?: GpuTensor | null, xRows?: GpuTensor | null): void {
    const fn = 'matmul';
    tensor(fn, 'x', x, 'f32');
    const m = int(fn, 'M', M);
    const W = weight(fn, w);
    tensor(fn, 'out', out, 'f32');
    const b = tensor(fn, 'bias', bias, 'f32', true);
    const r = tensor(fn, 'xRows', xRows, 'i32', true);
    const N = W.outFeatures;
    const K = W.inFeatures;
    need(fn, 'out', out, 'M*N', [m, N]);
    need(fn, 'bias', b, 'N', [N]);
    let xRowsBound: number;
    if (r) {
      need(fn, 'xRows', r, 'M', [m]);
      xRowsBound = K > 0 ? Math.floor(x.length / K) : 0xffffffff;
    } else {
      need(fn, 'x', x, 'M*K', [m, K]);
      xRowsBound = m;
    }
    this.weightProduct(fn, x, m, K, K, W, 0, out, N, b, r, Math.min(xRowsBound, 0xffffffff));
  }

  /** out[M, N] = x[M, kLen] · W[:, k0 : k0+kLen]ᵀ (bf16: k0 and kLen even unless the slice ends at the last feature). */
  matmulCols(x: GpuTensor, M: number, w: GpuWeight, k0: number, kLen: number, out: GpuTensor): void {
    const fn = 'matmulCols';
    tensor(fn, 'x', x, 'f32');
    const m = int(fn, 'M', M);
    const W = weight(fn, w);
    const c0 = int(fn, 'k0', k0);
    const len = int(fn, 'kLen', kLen);
    tensor(fn, 'out', out, 'f32');
    const K = W.inFeatures;
    const end = c0 + len;
    if (end > K) throw new RangeError(`${fn}: columns [${c0}, ${c0} + ${len}) are outside the weight's ${K} input features`);
    if (W.dtype === 'bf16' && (c0 % 2 !== 0 || (len % 2 !== 0 && end !== K))) {
      throw new RangeError(`${fn}: bf16 weights are packed in input pairs; k0 (${c0}) and kLen (${len}) must be even`);
    }
    need(fn, 'x', x, 'M*kLen', [m, len]);
    need(fn, 'out', out, 'M*N', [m, W.outFeatures]);
    this.weightProduct(fn, x, m, len, len, W, c0, out, W.outFeatures, null, null, m);
  }

  /** out[M, N] = a[M, K] · b[K, N], both f32 row-major tensors. */
  gemm(a: GpuTensor, M: number, K: number, b: GpuTensor, N: number, out: GpuTensor): void {
    const fn = 'gemm';
    tensor(fn, 'a', a, 'f32');
    const m = int(fn, 'M', M);
    const k = int(fn, 'K', K);
    tensor(fn, 'b', b, 'f32');
    const n = int(fn, 'N', N);
    tensor(fn, 'out', out, 'f32');
    need(fn, 'a', a, 'M*K', [m, k]);
    need(fn, 'b', b, 'K*N', [k, n]);
    need(fn, 'out', out, 'M*N', [m, n]);
    if (m === 0 || n === 0) return;
    this.productDispatch(fn, 'f32kn', a, m, k, k, m, { t: b, access: 'r', n: k * n }, b.offset, n, 0, out, out.offset, n, n, null, null);
  }

  /** out[M, D] = x / sqrt(mean(x²) + eps) · weight (out may be x). */
  rmsnorm(x: GpuTensor, M: number, D: number, w: GpuTensor, eps: number, out: GpuTensor): void {
    const fn = 'rmsnorm';
    tensor(fn, 'x', x, 'f32');
    const m = int(fn, 'M', M);
    const d = int(fn, 'D', D);
    tensor(fn, 'weight', w, 'f32');
    if (typeof eps !== 'number') throw new TypeError(`${fn}: eps must be a number, found ${typeof eps}`);
    if (!(eps >= 0) || eps === Infinity) throw new RangeError(`${fn}: eps must be a finite number >= 0, found ${eps}`);
    tensor(fn, 'out', out, 'f32');
    const n = need(fn, 'x', x, 'M*D', [m, d]);
    need(fn, 'weight', w, 'D', [d]);
    need(fn, 'out', out, 'M*D', [m, d]);
    if (n === 0) return;
    this.dispatch(fn, 'rmsnorm', () => RMSNORM, [{ t: x, access: 'r', n }, { t: w, access: 'r', n: d }, { t: out, access: 'w', n }],
      (o) => [m, d, o[0], o[1], o[2], f32bits(eps)], this.grid(m));
  }

  /** Half-split rotary embedding in place on x[M, nHeads·Dh] at positions (i32 [M]) from cos/sin [·, Dh/2]. */
  rope(x: GpuTensor, M: number, nHeads: number, Dh: number, positions: GpuTensor, cos: GpuTensor, sin: GpuTensor): void {
    const fn = 'rope';
    tensor(fn, 'x', x, 'f32');
    const m = int(fn, 'M', M);
    const nh = int(fn, 'nHeads', nHeads);
    const dh = int(fn, 'Dh', Dh, 0, 65536);
    tensor(fn, 'positions', positions, 'i32');
    tensor(fn, 'cos', cos, 'f32');
    tensor(fn, 'sin', sin, 'f32');
    if (dh % 2 !== 0) throw new RangeError(`${fn}: Dh (${dh}) must be even`);
    const n = need(fn, 'x', x, 'M*nHeads*Dh', [m, nh, dh]);
    need(fn, 'positions', positions, 'M', [m]);
    if (n === 0) return;
    const table = Math.min(cos.length, sin.length);
    this.dispatch(fn, 'rope', () => ROPE,
      [{ t: x, access: 'rw', n }, { t: positions, access: 'r', n: m }, { t: cos, access: 'r', n: table }, { t: sin, access: 'r', n: table }],
      (o) => [m, nh, dh, o[0], o[1], o[2], o[3], table], this.grid(Math.ceil(n / 2 / 256)));
  }

  /**
   * Bidirectional attention: q[Mq, H·Dh], k/v[Mk, Hkv·Dh] → out[Mq, H·Dh]; keyMask (u32 [Mk], optional: 0 hides
   * a key); lse (optional, f32 [Mq, H]) receives each row's log-sum-exp (−∞ for a row with no visible key).
   */
  attention(
    q: GpuTensor, Mq: number, k: GpuTensor, v: GpuTensor, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: GpuTensor | null, out: GpuTensor, lse?: GpuTensor | null,
  ): void {
    const fn = 'attention';
    tensor(fn, 'q', q, 'f32');
    const mq = int(fn, 'Mq', Mq);
    tensor(fn, 'k', k, 'f32');
    tensor(fn, 'v', v, 'f32');
    const mk = int(fn, 'Mk', Mk);
    const [h, hkv, dh] = heads(fn, H, Hkv, Dh);
    const mask = tensor(fn, 'keyMask', keyMask, 'u32', true);
    tensor(fn, 'out', out, 'f32');
    const l = tensor(fn, 'lse', lse, 'f32', true);
    const nq = need(fn, 'q', q, 'Mq*H*Dh', [mq, h, dh]);
    const nk = need(fn, 'k', k, 'Mk*Hkv*Dh', [mk, hkv, dh]);
    need(fn, 'v', v, 'Mk*Hkv*Dh', [mk, hkv, dh]);
    need(fn, 'keyMask', mask, 'Mk', [mk]);
    need(fn, 'out', out, 'Mq*H*Dh', [mq, h, dh]);
    need(fn, 'lse', l, 'Mq*H', [mq, h]);
    if (nq === 0) return;
    this.dispatch(fn, 'attention', () => ATTENTION, [
      { t: q, access: 'r', n: nq }, { t: k, access: 'r', n: nk }, { t: v, access: 'r', n: nk }, { t: mask, access: 'r', n: mk },
      { t: out, access: 'w', n: nq }, { t: l, access: 'w', n: mq * h },
    ], (o) => attnParams({ mq, mk, h, hkv, dh, qo: o[0], ko: o[1], vo: o[2], mo: o[3], hasMask: mask, oo: o[4], lo: o[5], hasLse: l }), this.grid(mq * h));
  }

  /**
   * DyLLM's delta update: ctx[i] += Σ_c softmax(q_i·Kᵀ·scale)[cols[c]] · dv[c] with the softmax over all Mk keys;
   * cols i32 [nc] (nc = cols.length), dv [nc, Hkv·Dh], ctx [Mq, H·Dh] in place; probs (optional) [Mq, H, nc].
   */
  attentionDelta(
    q: GpuTensor, Mq: number, k: GpuTensor, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: GpuTensor | null, cols: GpuTensor, dv: GpuTensor, ctx: GpuTensor, probs?: GpuTensor | null,
  ): void {
    const fn = 'attentionDelta';
    tensor(fn, 'q', q, 'f32');
    const mq = int(fn, 'Mq', Mq);
    tensor(fn, 'k', k, 'f32');
    const mk = int(fn, 'Mk', Mk);
    const [h, hkv, dh] = heads(fn, H, Hkv, Dh);
    const mask = tensor(fn, 'keyMask', keyMask, 'u32', true);
    tensor(fn, 'cols', cols, 'i32');
    tensor(fn, 'dv', dv, 'f32');
    tensor(fn, 'ctx', ctx, 'f32');
    const pr = tensor(fn, 'probs', probs, 'f32', true);
    const nc = cols.length;
    const nq = need(fn, 'q', q, 'Mq*H*Dh', [mq, h, dh]);
    const nk = need(fn, 'k', k, 'Mk*Hkv*Dh', [mk, hkv, dh]);
    need(fn, 'keyMask', mask, 'Mk', [mk]);
    const ndv = need(fn, 'dv', dv, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
    need(fn, 'ctx', ctx, 'Mq*H*Dh', [mq, h, dh]);
    const np = need(fn, 'probs', pr, 'Mq*H*cols.length', [mq, h, nc]);
    if (nq === 0) return;
    this.dispatch(fn, 'attentionDelta', () => ATTENTION_DELTA, [
      { t: q, access: 'r', n: nq }, { t: k, access: 'r', n: nk }, { t: mask, access: 'r', n: mk }, { t: cols, access: 'r', n: nc },
      { t: dv, access: 'r', n: ndv }, { t: ctx, access: 'rw', n: nq }, { t: pr, access: 'w', n: np },
    ], (o) => attnParams({ mq, mk, h, hkv, dh, qo: o[0], ko: o[1], mo: o[2], hasMask: mask, co: o[3], nc, dvo: o[4], oo: o[5], po: o[6], hasProbs: pr }),
    this.grid(mq * h));
  }

  /**
   * The corrected attention update (../backend.ts attentionRescale): k holds the NEW keys (all Mk); kOld/vOld/vNew
   * [nc, Hkv·Dh] the changed columns' old and new rows; lse [Mq, H] and ctx [Mq, H·Dh] are updated in place.
   * Two dispatches (weights into a temporary scratch tensor, then the update).
   */
  attentionRescale(
    q: GpuTensor, Mq: number, k: GpuTensor, Mk: number, H: number, Hkv: number, Dh: number,
    keyMask: GpuTensor | null, cols: GpuTensor, kOld: GpuTensor, vOld: GpuTensor, vNew: GpuTensor,
    lse: GpuTensor, ctx: GpuTensor, incremental: boolean,
  ): void {
    const fn = 'attentionRescale';
    tensor(fn, 'q', q, 'f32');
    const mq = int(fn, 'Mq', Mq);
    tensor(fn, 'k', k, 'f32');
    const mk = int(fn, 'Mk', Mk);
    const [h, hkv, dh] = heads(fn, H, Hkv, Dh);
    const mask = tensor(fn, 'keyMask', keyMask, 'u32', true);
    tensor(fn, 'cols', cols, 'i32');
    tensor(fn, 'kOld', kOld, 'f32');
    tensor(fn, 'vOld', vOld, 'f32');
    tensor(fn, 'vNew', vNew, 'f32');
    tensor(fn, 'lse', lse, 'f32');
    tensor(fn, 'ctx', ctx, 'f32');
    if (typeof incremental !== 'boolean') throw new TypeError(`${fn}: incremental must be a boolean, found ${typeof incremental}`);
    const nc = cols.length;
    const nq = need(fn, 'q', q, 'Mq*H*Dh', [mq, h, dh]);
    const nk = need(fn, 'k', k, 'Mk*Hkv*Dh', [mk, hkv, dh]);
    need(fn, 'keyMask', mask, 'Mk', [mk]);
    const nOld = need(fn, 'kOld', kOld, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
    need(fn, 'vOld', vOld, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
    need(fn, 'vNew', vNew, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
    const nl = need(fn, 'lse', lse, 'Mq*H', [mq, h]);
    need(fn, 'ctx', ctx, 'Mq*H*Dh', [mq, h, dh]);
    if (nq === 0) return;
    const scratchLen = need(fn, 'scratch', null, 'Mq*H*(2+2*cols.length)', [mq, h, 2 + 2 * nc]);
    const scratch = this.temp(fn, scratchLen);
    const base = { mq, mk, h, hkv, dh, nc, incremental };
    this.dispatch(fn, 'rescaleWeights', () => RESCALE_WEIGHTS, [
      { t: q, access: 'r', n: nq }, { t: k, access: 'r', n: nk }, { t: mask, access: 'r', n: mk }, { t: cols, access: 'r', n: nc },
      { t: kOld, access: 'r', n: nOld }, { t: lse, access: 'r', n: nl }, { t: scratch, access: 'w', n: scratchLen },
    ], (o) => attnParams({ ...base, qo: o[0], ko: o[1], mo: o[2], hasMask: mask, co: o[3], kOldo: o[4], lo: o[5], so: o[6] }), this.grid(mq * h));
    this.dispatch(fn, 'rescaleApply', () => RESCALE_APPLY, [
      { t: lse, access: 'rw', n: nl }, { t: scratch, access: 'r', n: scratchLen }, { t: vOld, access: 'r', n: nOld },
      { t: vNew, access: 'r', n: nOld }, { t: ctx, access: 'rw', n: nq },
    ], (o) => attnParams({ ...base, lo: o[0], so: o[1], vOldo: o[2], vNewo: o[3], oo: o[4] }), this.grid(mq * h));
  }

  /** out[m] = cos(a[m], b[m]) over D. */
  cosineRows(a: GpuTensor, b: GpuTensor, M: number, D: number, out: GpuTensor): void {
    const fn = 'cosineRows';
    tensor(fn, 'a', a, 'f32');
    tensor(fn, 'b', b, 'f32');
    const m = int(fn, 'M', M);
    const d = int(fn, 'D', D);
    tensor(fn, 'out', out, 'f32');
    const n = need(fn, 'a', a, 'M*D', [m, d]);
    need(fn, 'b', b, 'M*D', [m, d]);
    need(fn, 'out', out, 'M', [m]);
    if (m === 0) return;
    this.dispatch(fn, 'cosine', () => COSINE, [{ t: a, access: 'r', n }, { t: b, access: 'r', n }, { t: out, access: 'w', n: m }],
      (o) => [m, d, o[0], o[1], o[2]], this.grid(m));
  }

  /**
   * Logit row statistics of logits[M, V] into stats (u32 [M·4]: argmax, then the f32 bits of p1, p2, negEntropy —
   * the last 0 unless `entropy`). `readLogitStats` reads and decodes them.
   */
  logitStats(logits: GpuTensor, M: number, V: number, stats: GpuTensor, entropy: boolean): void {
    const fn = 'logitStats';
    tensor(fn, 'logits', logits, 'f32');
    const m = int(fn, 'M', M);
    const v = int(fn, 'V', V, 1, 2 ** 31 - 1);
    tensor(fn, 'stats', stats, 'u32');
    const n = need(fn, 'logits', logits, 'M*V', [m, v]);
    need(fn, 'stats', stats, 'M*4', [m, 4]);
    if (m === 0) return;
    this.dispatch(fn, 'logitStats', () => LOGIT_STATS, [{ t: logits, access: 'r', n }, { t: stats, access: 'w', n: 4 * m }],
      (o) => [m, v, o[0], o[1], entropy ? 1 : 0], this.grid(m));
  }

  /** Reads and decodes M rows of logitStats output. */
  async readLogitStats(stats: GpuTensor, M: number): Promise<LogitStatsResult> {
    tensor('readLogitStats', 'stats', stats, 'u32');
    const m = int('readLogitStats', 'M', M);
    need('readLogitStats', 'stats', stats, 'M*4', [m, 4]);
    const [bits] = await this.read(stats.view(0, 4 * m));
    const f = new Float32Array(bits.buffer, bits.byteOffset, bits.length);
    const r = { argmax: new Int32Array(m), p1: new Float32Array(m), p2: new Float32Array(m), negEntropy: new Float32Array(m) };
    for (let i = 0; i < m; i++) {
      r.argmax[i] = bits[4 * i];
      r.p1[i] = f[4 * i + 1];
      r.p2[i] = f[4 * i + 2];
      r.negEntropy[i] = f[4 * i + 3];
    }
    return r;
  }

  /** out[i] = silu(gate[i]) · up[i] for i < n (out may be gate or up). */
  siluMul(gate: GpuTensor, up: GpuTensor, n: number, out: GpuTensor): void {
    this.elementwise('siluMul', 'silu_mul', ['gate', gate], ['up', up], n, ['out', out]);
  }

  /** dst[i] += src[i] for i < n. */
  add(dst: GpuTensor, src: GpuTensor, n: number): void {
    this.elementwise('add', 'add', ['dst', dst], ['src', src], n, ['dst', dst]);
  }

  /** out[i] = a[i] − b[i] for i < n (DyLLM's ΔV = V_new − V_old). */
  sub(out: GpuTensor, a: GpuTensor, b: GpuTensor, n: number): void {
    this.elementwise('sub', 'sub', ['a', a], ['b', b], n, ['out', out]);
  }

  /** dst[i] = src[rows[i]] for rows of `width` values, i < rows.length (an index outside src's rows is skipped). */
  gatherRows(dst: GpuTensor, src: GpuTensor, rows: GpuTensor, width: number): void {
    this.rows('gatherRows', dst, src, rows, width, false);
  }

  /** dst[rows[i]] = src[i] (rows distinct; an index outside dst's rows is skipped). */
  scatterRows(dst: GpuTensor, src: GpuTensor, rows: GpuTensor, width: number): void {
    this.rows('scatterRows', dst, src, rows, width, true);
  }

  /**
   * dst[i] = row rows[i] of a prepared weight as f32 (bf16 widened exactly), for i < rows.length: an embedding
   * lookup from the table as stored (an index outside the weight's rows is skipped). One dispatch per row chunk.
   */
  gatherWeightRows(dst: GpuTensor, w: GpuWeight, rows: GpuTensor): void {
    const fn = 'gatherWeightRows';
    tensor(fn, 'dst', dst, 'f32');
    const W = weight(fn, w);
    tensor(fn, 'rows', rows, 'i32');
    const n = rows.length;
    const K = W.inFeatures;
    const moved = need(fn, 'dst', dst, 'rows.length*inFeatures', [n, K]);
    if (moved === 0) return;
    for (const c of W.chunks) {
      if (c.rows === 0) continue;
      this.dispatch(fn, 'weightRows', () => WEIGHT_ROWS, [
        { t: dst, access: 'w', n: moved }, { t: null, raw: c.root.buffer, access: 'r', n: 0 }, { t: rows, access: 'r', n },
      ], (o) => [n, K, o[0], o[2], c.n0, c.rows, W.rowStride, W.dtype === 'bf16' ? 1 : 0], this.grid(Math.ceil(moved / 256)));
    }
  }

  // ---- internals -----------------------------------------------------------------------------------------------

  private elementwise(fn: string, op: ElementwiseOp, [an, a]: [string, GpuTensor], [bn, b]: [string, GpuTensor], n: number, [on, o]: [string, GpuTensor]): void {
    tensor(fn, an, a, 'f32');
    tensor(fn, bn, b, 'f32');
    const len = int(fn, 'n', n);
    if (on !== an) tensor(fn, on, o, 'f32');
    need(fn, an, a, 'n', [len]);
    need(fn, bn, b, 'n', [len]);
    if (on !== an) need(fn, on, o, 'n', [len]);
    if (len === 0) return;
    // In place (add): dst is bound once, read and written.
    const ops: Operand[] = on === an
      ? [{ t: a, access: 'rw', n: len }, { t: b, access: 'r', n: len }]
      : [{ t: a, access: 'r', n: len }, { t: b, access: 'r', n: len }, { t: o, access: 'w', n: len }];
    this.dispatch(fn, `ew-${op}${on === an ? '-inplace' : ''}`, () => elementwiseShader(op, on === an), ops,
      (off) => [len, off[0], off[1], on === an ? off[0] : off[2]], this.grid(Math.ceil(len / 256)));
  }

  private rows(fn: string, dst: GpuTensor, src: GpuTensor, rows: GpuTensor, width: number, scatter: boolean): void {
    tensor(fn, 'dst', dst, 'f32');
    tensor(fn, 'src', src, 'f32');
    tensor(fn, 'rows', rows, 'i32');
    const w = int(fn, 'width', width);
    const n = rows.length;
    const moved = need(fn, scatter ? 'src' : 'dst', scatter ? src : dst, 'rows.length*width', [n, w]);
    if (moved === 0) return;
    const bound = Math.floor((scatter ? dst : src).length / w);
    this.dispatch(fn, 'rows', () => ROWS, [
      { t: dst, access: scatter ? 'rw' : 'w', n: scatter ? dst.length : moved },
      { t: src, access: 'r', n: scatter ? moved : src.length },
      { t: rows, access: 'r', n },
    ], (o) => [n, w, o[0], o[1], o[2], bound, scatter ? 1 : 0], this.grid(Math.ceil(moved / 256)));
  }

  /** The matmul family over a prepared weight, one dispatch per row chunk. */
  private weightProduct(fn: string, x: GpuTensor, M: number, K: number, xs: number, W: GpuWeight, wk0: number, out: GpuTensor, N: number,
    bias: GpuTensor | null, rows: GpuTensor | null, xRowsBound: number): void {
    if (M === 0 || N === 0) return;
    const layout: WeightLayout = W.dtype === 'bf16' ? 'bf16' : 'f32';
    const xLen = rows ? x.length : M * xs;
    for (const c of W.chunks) {
      if (c.rows === 0) continue;
      const wElems = c.rows * W.rowStride;
      this.productDispatch(fn, layout, x, M, K, xs, xRowsBound, { t: null, raw: c.root.buffer, access: 'r', n: wElems }, 0, W.rowStride, wk0,
        out, out.offset + c.n0, c.rows, N, bias ? bias.view(c.n0, c.rows) : null, rows, xLen);
    }
  }

  private productDispatch(fn: string, layout: WeightLayout, x: GpuTensor, M: number, K: number, xs: number, xRowsBound: number,
    wOperand: Operand, wo: number, ws: number, wk0: number, out: GpuTensor, outStart: number, N: number, os: number,
    bias: GpuTensor | null, rows: GpuTensor | null, xLen = rows ? x.length : M * xs): void {
    const skinny = this.subgroups && M <= SKINNY_MAX_M;
    const outView = out.view(outStart - out.offset, out.length - (outStart - out.offset));
    const outN = (M - 1) * os + N;
    const T = TILE.g * TILE.r;
    const groups = skinny ? this.grid(Math.ceil(N / SKINNY_COLS)) : [Math.ceil(N / T), Math.ceil(M / T)] as [number, number];
    if (groups[0] > MAX_GROUPS || groups[1] > MAX_GROUPS) throw new RangeError(`${fn}: M = ${M}, N = ${N} need more than ${MAX_GROUPS} workgroups in one dimension`);
    this.dispatch(fn, skinny ? 'skinny' : 'tiled', () => (skinny ? skinnyMatmulShader() : tiledMatmulShader()), [
      { t: x, access: 'r', n: xLen }, wOperand, { t: outView, access: 'w', n: outN }, { t: bias, access: 'r', n: N }, { t: rows, access: 'r', n: M },
    ], (o) => [M, N, K, o[0], xs, xRowsBound, wOperand.t ? o[1] : wo, ws, wk0, o[2], os, o[3], bias ? 1 : 0, o[4], rows ? 1 : 0, LAYOUT_CODE[layout]], groups);
  }

}

interface AttnValues {
  mq: number; mk: number; h: number; hkv: number; dh: number;
  qo?: number; ko?: number; vo?: number; oo?: number; mo?: number; hasMask?: unknown; lo?: number; hasLse?: unknown;
  co?: number; nc?: number; dvo?: number; po?: number; hasProbs?: unknown; kOldo?: number; vOldo?: number; vNewo?: number; so?: number; incremental?: boolean;
}

/** The attention kernels' uniform struct, in declaration order (shaders/attention.ts). */
function attnParams(a: AttnValues): number[] {
  return [
    a.mq, a.mk, a.h, a.hkv, a.dh, f32bits(1 / Math.sqrt(a.dh)),
    a.qo ?? 0, a.ko ?? 0, a.vo ?? 0, a.oo ?? 0, a.mo ?? 0, a.hasMask ? 1 : 0, a.lo ?? 0, a.hasLse ? 1 : 0,
    a.co ?? 0, a.nc ?? 0, a.dvo ?? 0, a.po ?? 0, a.hasProbs ? 1 : 0, a.kOldo ?? 0, a.vOldo ?? 0, a.vNewo ?? 0, a.so ?? 0, a.incremental ? 1 : 0,
  ];
}

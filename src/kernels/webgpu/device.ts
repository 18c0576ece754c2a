/**
 * The recording side of the WebGPU kernels (./kernels.ts): the device, its tensors and weights, and how ops become
 * dispatches — one command encoder and compute pass per batch, uniform parameters in arenas, aliased operands
 * staged through temporaries, GPU errors collected per batch. The execution model is described in ./kernels.ts.
 */
import type { HostWeight } from '../backend.js';
import { checkPrepareWeight, int } from '../args.js';
import { BufferUsage, MAP_READ, type GpuAdapterInfoLike, type GpuBufferLike, type GpuCommandEncoderLike, type GpuComputePassLike, type GpuComputePipelineLike, type GpuDeviceLike, type GpuErrorLike, type GpuLike } from './gpu-types.js';
import { tensor } from './checks.js';
import { GpuTensor, GpuWeight, type Chunk, type GpuDtype, type Root } from './tensor.js';

export type GpuArray = Float32Array | Int32Array | Uint32Array;

/** Thrown when WebGPU cannot be used at all (no adapter, no device). */
export class WebGpuUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebGpuUnavailableError';
  }
}

/** A GPU-side failure reported by an error scope or a lost device (one line). */
export class WebGpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebGpuError';
  }
}

export interface WebGpuOptions {
  /** Use the subgroup kernels when the adapter offers the 'subgroups' feature (default true). */
  subgroups?: boolean;
  /**
   * Largest piece of a prepared weight, in bytes (default and upper bound: the device's storage-binding limit):
   * weights are split into row chunks under it, one dispatch per chunk.
   */
  weightChunkBytes?: number;
}

/** Logit row statistics as read back: f32 probabilities (the GPU has no f64). */
export interface LogitStatsResult {
  readonly argmax: Int32Array;
  readonly p1: Float32Array;
  readonly p2: Float32Array;
  readonly negEntropy: Float32Array;
}

/** One operand of a dispatch, in binding order from 1: a tensor, a raw buffer (weight chunk), or absent. */
export interface Operand {
  readonly t: GpuTensor | null;
  readonly raw?: GpuBufferLike;
  readonly access: 'r' | 'w' | 'rw';
  /** Elements of the tensor the op touches (from its offset). */
  readonly n: number;
}

export const SLOT = 256; // bytes per uniform slot (WebGPU's largest permitted minUniformBufferOffsetAlignment)
export const ARENA_SLOTS = 256;
export const MAX_GROUPS = 65535; // WebGPU's default maxComputeWorkgroupsPerDimension

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);
/** The bits of a float32, for uniform fields declared f32. */
export function f32bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0];
}

export interface Arena {
  readonly buffer: GpuBufferLike;
  readonly data: Uint32Array;
  used: number;
}


/** The device and the recording of ops; WebGpuKernels adds the ops themselves. */
export class GpuRecorder {
  readonly name = 'webgpu';
  /** Whether the subgroup kernels are in use. */
  readonly subgroups: boolean;
  /** Largest buffer this instance allocates, in bytes (the device's storage-binding and buffer-size limits). */
  readonly maxBufferBytes: number;
  /** Largest piece of a prepared weight, in bytes. */
  readonly weightChunkBytes: number;
  protected readonly pipelines = new Map<string, GpuComputePipelineLike>();
  protected readonly dummies: GpuBufferLike[] = [];
  protected encoder: GpuCommandEncoderLike | null = null;
  protected pass: GpuComputePassLike | null = null;
  protected arenas: Arena[] = [];
  protected afterSubmit: Array<() => void> = [];
  protected errors: Array<Promise<GpuErrorLike | null>> = [];
  protected lostMessage: string | null = null;

  protected constructor(
    /** Held for the device's lifetime: the `webgpu` package's instance must outlive its devices (it is freed when collected). */
    private readonly gpu: GpuLike,
    readonly device: GpuDeviceLike, readonly adapterInfo: GpuAdapterInfoLike, subgroups: boolean, opts: WebGpuOptions,
  ) {
    this.subgroups = subgroups;
    const lim = device.limits;
    this.maxBufferBytes = Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize);
    this.weightChunkBytes = Math.min(this.maxBufferBytes, opts.weightChunkBytes ?? Infinity);
    void device.lost.then((info) => {
      this.lostMessage = `webgpu: device lost${info.reason ? ` (${info.reason})` : ''}: ${firstLine(info.message)}`;
    });
  }

  // ---- tensors ----------------------------------------------------------------------------------------------------

  /** A zero-filled tensor of `length` elements. */
  tensor(dtype: GpuDtype, length: number): GpuTensor {
    const n = int('tensor', 'length', length);
    if (dtype !== 'f32' && dtype !== 'i32' && dtype !== 'u32') throw new TypeError(`tensor: dtype must be 'f32', 'i32' or 'u32', found ${String(dtype)}`);
    return new GpuTensor(this, this.allocate('tensor', n * 4, false), dtype, 0, n);
  }

  /** A new tensor holding `data` (a Uint8Array becomes u32 per element: key masks). */
  upload(data: Float32Array | Int32Array | Uint32Array | Uint8Array): GpuTensor {
    const dtype: GpuDtype = data instanceof Float32Array ? 'f32' : data instanceof Int32Array ? 'i32' : 'u32';
    if (!(data instanceof Float32Array || data instanceof Int32Array || data instanceof Uint32Array || data instanceof Uint8Array)) {
      throw new TypeError('upload: data must be a Float32Array, Int32Array, Uint32Array or Uint8Array');
    }
    const root = this.allocate('upload', data.length * 4, true);
    const dst = new Uint32Array(root.buffer.getMappedRange());
    if (data instanceof Uint8Array) dst.set(data);
    else dst.set(new Uint32Array(data.buffer, data.byteOffset, data.length));
    root.buffer.unmap();
    return new GpuTensor(this, root, dtype, 0, data.length);
  }

  /** Overwrites the first data.length elements of `t` (after submitting every op recorded so far). */
  write(t: GpuTensor, data: Float32Array | Int32Array | Uint32Array | Uint8Array): void {
    const dt: GpuDtype = data instanceof Float32Array ? 'f32' : data instanceof Int32Array ? 'i32' : 'u32';
    tensor('write', 't', t, dt);
    if (data.length > t.length) throw new RangeError(`write: data has ${data.length} elements, the tensor ${t.length}`);
    if (data.length === 0) return;
    this.submit();
    const bits = data instanceof Uint8Array ? Uint32Array.from(data) : new Uint32Array(data.buffer, data.byteOffset, data.length);
    this.openBatch();
    this.device.queue.writeBuffer(t.buffer, t.offset * 4, bits);
  }

  /** Submits what is pending, then copies the tensors back: one wait for all of them. */
  async read(...ts: GpuTensor[]): Promise<GpuArray[]> {
    ts.forEach((t, i) => {
      if (!(t instanceof GpuTensor)) throw new TypeError(`read: argument ${i} must be a GpuTensor`);
      if (t.destroyed) throw new RangeError(`read: argument ${i} is a destroyed GpuTensor`);
    });
    this.openBatch();
    this.endPass();
    const staging = ts.map((t) => {
      const buf = this.device.createBuffer({ size: Math.max(4, t.length * 4), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
      if (t.length > 0) this.encoder!.copyBufferToBuffer(t.buffer, t.offset * 4, buf, 0, t.length * 4);
      return buf;
    });
    this.submit();
    let mapError: unknown = null;
    await Promise.all(staging.map((b) => b.mapAsync(MAP_READ))).catch((e) => { mapError = e; });
    try {
      await this.checkErrors(); // a GPU error explains a failed map better than the map's own message
      if (mapError) throw new WebGpuError(`webgpu: read failed: ${firstLine((mapError as Error).message)}`);
    } catch (e) {
      for (const b of staging) b.destroy();
      throw e;
    }
    return ts.map((t, i) => {
      const bytes = staging[i].getMappedRange().slice(0, t.length * 4);
      staging[i].unmap();
      staging[i].destroy();
      return t.dtype === 'f32' ? new Float32Array(bytes) : t.dtype === 'i32' ? new Int32Array(bytes) : new Uint32Array(bytes);
    });
  }

  /** Submits what is pending and waits until the device has run it; throws the batch's first GPU error. */
  async finish(): Promise<void> {
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    await this.checkErrors();
  }

  /** Sends every recorded op as one command buffer (a no-op when nothing is recorded). */
  submit(): void {
    if (!this.encoder) return;
    this.endPass();
    const cb = this.encoder.finish();
    for (const a of this.arenas) this.device.queue.writeBuffer(a.buffer, 0, a.data, 0, a.used * (SLOT / 4));
    this.device.queue.submit([cb]);
    this.errors.push(this.device.popErrorScope(), this.device.popErrorScope());
    for (const a of this.arenas) a.buffer.destroy(); // WebGPU frees it once the submitted work is done
    this.arenas = [];
    this.encoder = null;
    for (const f of this.afterSubmit) f();
    this.afterSubmit = [];
  }

  /** Frees the device (every tensor and weight of this instance). */
  destroy(): void {
    this.device.destroy();
  }

  /** @internal Frees a buffer now, or after the pending batch is submitted when ops in it may use the buffer. */
  release(root: Root): void {
    if (root.destroyed) return;
    root.destroyed = true;
    if (this.encoder) this.afterSubmit.push(() => root.buffer.destroy());
    else root.buffer.destroy();
  }

  // ---- weights -------------------------------------------------------------------------------------------------

  /** Uploads a weight (bf16 stays bf16, two per u32); the host copy is not kept. */
  prepareWeight(w: HostWeight): GpuWeight {
    checkPrepareWeight(w);
    if (w.dtype !== 'bf16' && w.dtype !== 'f32') {
      throw new TypeError(`prepareWeight: the WebGPU kernels take bf16 or f32 weights, found ${w.dtype} (quantised weights run on the native and reference backends; docs/quantization.md)`);
    }
    const dtype = w.dtype;
    const N = w.outFeatures;
    const K = w.inFeatures;
    const bf16 = w.dtype === 'bf16';
    const stride = bf16 ? K + (K & 1) : K; // elements per stored row
    const rowBytes = stride * (bf16 ? 2 : 4);
    if (rowBytes > this.weightChunkBytes) throw new RangeError(`prepareWeight: one row of ${K} input features (${rowBytes} bytes) exceeds the ${this.weightChunkBytes}-byte weight chunk limit`);
    const perChunk = rowBytes === 0 ? Math.max(N, 1) : Math.floor(this.weightChunkBytes / rowBytes);
    const chunks: Chunk[] = [];
    let nbytes = 0;
    for (let n0 = 0; n0 < N || (N === 0 && n0 === 0); n0 += perChunk) {
      const rows = Math.min(perChunk, N - n0);
      const root = this.allocate('prepareWeight', rows * rowBytes, true);
      const range = root.buffer.getMappedRange();
      if (bf16) {
        const src = w.data as Uint16Array;
        const dst = new Uint16Array(range);
        if (stride === K) dst.set(src.subarray(n0 * K, (n0 + rows) * K));
        else for (let r = 0; r < rows; r++) dst.set(src.subarray((n0 + r) * K, (n0 + r + 1) * K), r * stride);
      } else {
        new Float32Array(range).set((w.data as Float32Array).subarray(n0 * K, (n0 + rows) * K));
      }
      root.buffer.unmap();
      chunks.push({ root, n0, rows });
      nbytes += rows * rowBytes;
      if (N === 0) break;
    }
    return new GpuWeight(dtype, N, K, nbytes, stride, chunks);
  }

  /** Frees a weight's buffers. */
  destroyWeight(w: GpuWeight): void {
    for (const c of w.chunks) this.release(c.root);
  }

  /** A grid of at least n workgroups (2-D past 65535; shaders skip the surplus). */
  protected grid(n: number): [number, number] {
    if (n <= MAX_GROUPS) return [n, 1];
    const y = Math.ceil(n / MAX_GROUPS);
    if (y > MAX_GROUPS) throw new RangeError(`webgpu: ${n} workgroups exceed a ${MAX_GROUPS}x${MAX_GROUPS} grid`);
    return [MAX_GROUPS, y];
  }

  protected pipeline(key: string, code: () => string): GpuComputePipelineLike {
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code: code(), label: `dyllm ${key}` });
      p = this.device.createComputePipeline({ layout: 'auto', label: `dyllm ${key}`, compute: { module, entryPoint: 'main' } });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * Records one dispatch: stages operands whose buffer an earlier operand already binds, writes the uniform
   * parameters (params receives each operand's element offset as bound), binds and dispatches.
   */
  protected dispatch(fn: string, key: string, code: () => string, operands: Operand[], params: (offsets: number[]) => number[], groups: [number, number]): void {
    this.openBatch();
    const pipe = this.pipeline(key, code);
    const bound: GpuBufferLike[] = [];
    const offsets: number[] = [];
    const copyBack: Array<() => void> = [];
    const seen = new Set<GpuBufferLike>();
    operands.forEach((op, i) => {
      let buf: GpuBufferLike;
      let off = 0;
      if (op.raw) {
        buf = op.raw;
      } else if (!op.t) {
        buf = this.dummy(i);
      } else if (seen.has(op.t.buffer)) {
        // Aliased with an earlier operand: a temporary copy of the touched range.
        const t = op.t;
        const tmp = this.temp(fn, op.n);
        if (op.access !== 'w' && op.n > 0) this.copy(t.buffer, t.offset, tmp.buffer, 0, op.n);
        if (op.access !== 'r' && op.n > 0) copyBack.push(() => this.copy(tmp.buffer, 0, t.buffer, t.offset, op.n));
        buf = tmp.buffer;
      } else {
        buf = op.t.buffer;
        off = op.t.offset;
      }
      seen.add(buf);
      bound.push(buf);
      offsets.push(off);
    });
    const values = params(offsets);
    const { buffer: ubuf, offset: uoff } = this.uniformSlot(values);
    const group = this.device.createBindGroup({
      layout: pipe.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: ubuf, offset: uoff, size: SLOT } },
        ...bound.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
      ],
    });
    if (!this.pass) this.pass = this.encoder!.beginComputePass();
    this.pass.setPipeline(pipe);
    this.pass.setBindGroup(0, group);
    this.pass.dispatchWorkgroups(groups[0], groups[1]);
    for (const f of copyBack) f();
  }

  /** A temporary f32 tensor freed after the batch is submitted. */
  protected temp(fn: string, n: number): GpuTensor {
    const t = new GpuTensor(this, this.allocate(fn, n * 4, false), 'f32', 0, n);
    this.release(t.root);
    return t;
  }

  protected copy(src: GpuBufferLike, srcElem: number, dst: GpuBufferLike, dstElem: number, n: number): void {
    this.endPass();
    this.encoder!.copyBufferToBuffer(src, srcElem * 4, dst, dstElem * 4, n * 4);
  }

  protected endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Opens a batch (command encoder and error scopes) if none is open. */
  protected openBatch(): void {
    if (this.lostMessage) throw new WebGpuError(this.lostMessage);
    if (this.encoder) return;
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.encoder = this.device.createCommandEncoder();
  }

  protected uniformSlot(values: number[]): { buffer: GpuBufferLike; offset: number } {
    let a = this.arenas[this.arenas.length - 1];
    if (!a || a.used === ARENA_SLOTS) {
      a = {
        buffer: this.device.createBuffer({ size: SLOT * ARENA_SLOTS, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST }),
        data: new Uint32Array((SLOT * ARENA_SLOTS) / 4),
        used: 0,
      };
      this.arenas.push(a);
    }
    const base = a.used * (SLOT / 4);
    for (let i = 0; i < values.length; i++) a.data[base + i] = values[i] >>> 0;
    return { buffer: a.buffer, offset: SLOT * a.used++ };
  }

  /** A 16-byte placeholder for binding slot i of an absent optional operand (distinct per slot: no aliasing). */
  protected dummy(i: number): GpuBufferLike {
    while (this.dummies.length <= i) this.dummies.push(this.device.createBuffer({ size: 16, usage: BufferUsage.STORAGE }));
    return this.dummies[i];
  }

  /** A storage buffer of `bytes` (at least 16), bounded by the buffer limit before anything is allocated. */
  protected allocate(fn: string, bytes: number, mapped: boolean): Root {
    if (bytes > this.maxBufferBytes) throw new RangeError(`${fn}: ${bytes} bytes exceed the ${this.maxBufferBytes}-byte buffer limit of this WebGPU device`);
    this.openBatch();
    const size = Math.max(16, Math.ceil(bytes / 4) * 4);
    const buffer = this.device.createBuffer({ size, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST, mappedAtCreation: mapped });
    return { buffer, bytes: size, destroyed: false };
  }

  protected async checkErrors(): Promise<void> {
    const pending = this.errors;
    this.errors = [];
    const errs = (await Promise.all(pending)).filter((e): e is GpuErrorLike => e !== null);
    if (this.lostMessage) throw new WebGpuError(this.lostMessage);
    if (errs.length) throw new WebGpuError(`webgpu: ${firstLine(errs[0].message)}`);
  }
}

export function firstLine(s: string): string {
  return String(s).split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
}

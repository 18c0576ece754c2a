/**
 * Argument checks of the device-resident WebGPU ops (./kernels.ts), in the words of the host checks (../args.ts):
 * one line naming the op and the argument, what was expected and what was found; TypeError for a wrong kind of
 * value, RangeError for a size out of range or a tensor shorter than the sizes need. They run before anything is
 * enqueued, so a refused op leaves every tensor as it was.
 *
 * Index tensors (xRows, cols, positions, rows) live on the device, so their values cannot be checked here without a
 * read-back: the shaders skip an index outside its range instead of reading or writing past a tensor (host
 * callers check the values first: ./host-backend.ts runs the ../args.ts checks).
 */
import { MAX_HEAD_DIM, MAX_INT32, describe, int, product } from '../args.js';
import type { GpuDtype, GpuTensor, GpuWeight } from './tensor.js';

/** Largest head dimension the attention shaders hold in workgroup memory. */
export const MAX_GPU_HEAD_DIM = 256;

/** `v` is a live GpuTensor of dtype `dt` (optional: null/undefined allowed, returned as null). */
export function tensor(fn: string, what: string, v: unknown, dt: GpuDtype, optional = false): GpuTensor | null {
  if (optional && (v === null || v === undefined)) return null;
  const t = v as GpuTensor | null;
  if (typeof t !== 'object' || t === null || (t as { kind?: unknown }).kind !== 'gpu-tensor') {
    throw new TypeError(`${fn}: ${what} must be a GpuTensor (${dt})${optional ? ' or null' : ''}, found ${describe(v)}`);
  }
  if (t.dtype !== dt) throw new TypeError(`${fn}: ${what} must be a GpuTensor (${dt}), found a GpuTensor (${t.dtype})`);
  if (t.destroyed) throw new RangeError(`${fn}: ${what} is a destroyed GpuTensor`);
  return t;
}

/** Tensor `what` (absent: passes) holds at least Π factors elements. */
export function need(fn: string, what: string, t: GpuTensor | null, expr: string, factors: number[]): number {
  const n = product(fn, expr, factors);
  if (t && t.length < n) {
    throw new RangeError(`${fn}: ${what} has ${t.length} elements, needs ${expr}${factors.length > 1 ? ` = ${factors.join('*')}` : ''} = ${n}`);
  }
  return n;
}

export function weight(fn: string, w: unknown): GpuWeight {
  const g = w as GpuWeight | null;
  if (typeof g !== 'object' || g === null || (g as { kind?: unknown }).kind !== 'gpu-weight') {
    throw new TypeError(`${fn}: weight must be a weight prepared by the WebGPU kernels (prepareWeight), found ${describe(w)}`);
  }
  if (g.destroyed) throw new RangeError(`${fn}: weight was destroyed`);
  return g;
}

/** H, Hkv ≥ 1 with H a multiple of Hkv, 1 ≤ Dh ≤ the shaders' limit. */
export function heads(fn: string, H: unknown, Hkv: unknown, Dh: unknown): [number, number, number] {
  const h = int(fn, 'H', H, 1, MAX_INT32);
  const hkv = int(fn, 'Hkv', Hkv, 1, MAX_INT32);
  const dh = int(fn, 'Dh', Dh, 1, MAX_HEAD_DIM);
  if (dh > MAX_GPU_HEAD_DIM) throw new RangeError(`${fn}: Dh (${dh}) exceeds ${MAX_GPU_HEAD_DIM}, the largest head dimension the WebGPU attention kernels hold in workgroup memory`);
  if (h % hkv !== 0) throw new RangeError(`${fn}: H (${h}) must be a multiple of Hkv (${hkv})`);
  return [h, hkv, dh];
}

export { int };

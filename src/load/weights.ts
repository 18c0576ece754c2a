/**
 * WeightStore: strict, name-addressed access to a checkpoint. Every tensor is requested by its exact checkpoint
 * name and expected shape; a missing name, a wrong shape or an unsupported dtype is a LoadError naming the file.
 * It records which names were used so unused tensors can be reported.
 */
import type { HostWeight } from '../kernels/backend.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../tensor/dtype.js';
import { LoadError } from './errors.js';
import type { Checkpoint } from './safetensors.js';

export class WeightStore {
  private readonly used = new Set<string>();

  constructor(readonly checkpoint: Checkpoint) {}

  private check(name: string, shape: readonly number[]) {
    const info = this.checkpoint.info(name);
    if (!info) throw new LoadError(this.checkpoint.dir, `tensor ${name} ${JSON.stringify(shape)}`, 'no such tensor in the checkpoint', 'is this the right model_type?');
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new LoadError(info.file, `tensor ${name} with shape ${JSON.stringify(shape)}`, `shape ${JSON.stringify(info.shape)}`, 'config.json does not match the weights');
    }
    this.used.add(name);
    return info;
  }

  has(name: string): boolean {
    return this.checkpoint.info(name) !== undefined;
  }

  /**
   * A [out, in] matrix; bf16 and f32 keep their dtype, f16 is widened to f32 (no f16 kernels). The data may be a
   * view into the mapped checkpoint file: read it, never write it.
   */
  matrix(name: string, outFeatures: number, inFeatures: number): HostWeight {
    const info = this.check(name, [outFeatures, inFeatures]);
    const data = this.checkpoint.read(name);
    if (info.dtype === 'BF16') return { dtype: 'bf16', data, outFeatures, inFeatures };
    if (info.dtype === 'F16') return { dtype: 'f32', data: f16ArrayToF32(data as Uint16Array), outFeatures, inFeatures };
    return { dtype: 'f32', data, outFeatures, inFeatures };
  }

  /** A 1-D tensor (norm weight, bias) as float32. */
  vector(name: string, length: number): Float32Array {
    const info = this.check(name, [length]);
    const data = this.checkpoint.read(name);
    if (info.dtype === 'BF16') return bf16ArrayToF32(data as Uint16Array);
    if (info.dtype === 'F16') return f16ArrayToF32(data as Uint16Array);
    return data as Float32Array;
  }

  /**
   * Says a tensor's host data is no longer needed by the caller (a backend packed it into a layout of its own): a
   * mapped checkpoint drops its pages from the resident set. Always safe: the data stays readable (faulted back in).
   */
  release(name: string): void {
    this.checkpoint.release(name);
  }

  /** Names present in the checkpoint but never requested. */
  unused(): string[] {
    return this.checkpoint.names().filter((n) => !this.used.has(n));
  }
}

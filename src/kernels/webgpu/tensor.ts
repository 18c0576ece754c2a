/**
 * The handles of the WebGPU kernels (./kernels.ts): device-resident tensors and prepared weights. Apart from the
 * kernels so that the argument checks (./checks.ts) can name these types without importing the kernels.
 */
import type { PreparedWeight } from '../backend.js';
import { int } from '../args.js';
import type { GpuBufferLike } from './gpu-types.js';

export type GpuDtype = 'f32' | 'i32' | 'u32';

/** What frees a tensor's buffer: the kernels that allocated it. */
export interface TensorOwner {
  release(root: Root): void;
}

export interface Root {
  readonly buffer: GpuBufferLike;
  readonly bytes: number;
  destroyed: boolean;
}

/** A device-resident array (or a view of one): `length` elements of `dtype` from element `offset` of its buffer. */
export class GpuTensor {
  readonly kind = 'gpu-tensor';
  constructor(
    private readonly owner: TensorOwner,
    /** @internal */ readonly root: Root,
    readonly dtype: GpuDtype,
    readonly offset: number,
    readonly length: number,
  ) {}

  get buffer(): GpuBufferLike {
    return this.root.buffer;
  }

  get destroyed(): boolean {
    return this.root.destroyed;
  }

  /** Elements [start, start + length) of this tensor, sharing its buffer. */
  view(start: number, length: number = this.length - start): GpuTensor {
    int('view', 'start', start, 0, this.length);
    int('view', 'length', length, 0, this.length - start);
    return new GpuTensor(this.owner, this.root, this.dtype, this.offset + start, length);
  }

  /** Frees the buffer (and so every view of it), after any recorded op that uses it has been submitted. */
  destroy(): void {
    this.owner.release(this.root);
  }
}

export interface Chunk {
  readonly root: Root;
  readonly n0: number;
  readonly rows: number;
}

/** A weight on the device: bf16 as u32 pairs ([N, Kp], Kp = K rounded up to even) or f32 [N, K], in row chunks. */
export class GpuWeight implements PreparedWeight {
  readonly kind = 'gpu-weight';
  constructor(
    readonly dtype: 'bf16' | 'f32',
    readonly outFeatures: number,
    readonly inFeatures: number,
    readonly nbytes: number,
    /** Elements (bf16 or f32) per stored row. */
    readonly rowStride: number,
    readonly chunks: readonly Chunk[],
  ) {}

  get destroyed(): boolean {
    return this.chunks.some((c) => c.root.destroyed);
  }
}

/**
 * A model whose dense forward runs on WebGPU (forward/gpu.ts): a DiffusionModel with only the asynchronous forward
 * (`forwardAsync`, which the denoising loop awaits: engine/generate.ts). Built from a host model loaded through
 * kernels/webgpu/host-weights.ts (the weights are uploaded from the host arrays it kept); the host model's backend
 * stays the model's backend for the host-side row statistics the loop may compute.
 *
 * The cached passes (DyLLM, Fast-dLLM, dLLM-Cache) do not run on WebGPU yet (docs/webgpu.md "What is left"), so
 * `forward` and `forwardPlanned` refuse with one line.
 *
 * May import: kernels/, models/.
 */
import type { HostWeight, KernelBackend, PreparedWeight } from '../kernels/backend.js';
import type { WebGpuKernels } from '../kernels/webgpu/kernels.js';
import type { ModelConfig } from '../load/config.js';
import { GpuForward } from './forward/gpu.js';
import { Transformer } from './transformer.js';
import type { DiffusionModel, ForwardBatch, LogitRowStats, StatsRequest } from './types.js';

export const GPU_CACHED_REFUSAL = 'the cached passes (DyLLM, Fast-dLLM, dLLM-Cache) do not run on WebGPU yet: use --accel none, or another backend';

export class GpuModel implements DiffusionModel {
  readonly config: ModelConfig;
  readonly backend: KernelBackend;
  readonly gpu: GpuForward;

  constructor(kernels: WebGpuKernels, host: DiffusionModel, hostOf: (w: PreparedWeight) => HostWeight) {
    if (!(host instanceof Transformer)) throw new TypeError('GpuModel: the host model must be a Transformer (models/transformer.ts)');
    this.config = host.config;
    this.backend = host.backend;
    this.gpu = new GpuForward(kernels, host, hostOf);
  }

  get weightBytes(): number {
    return this.gpu.weightBytes;
  }

  forward(): Float32Array {
    throw new RangeError('this model runs on WebGPU: its forward is asynchronous (generate() awaits it)');
  }

  forwardPlanned(): Float32Array {
    throw new RangeError(GPU_CACHED_REFUSAL);
  }

  forwardAsync(batch: ForwardBatch, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    return this.gpu.forward(batch, stats);
  }

  /** Frees the model's device tensors (not the kernels' device). */
  destroy(): void {
    this.gpu.destroy();
  }
}

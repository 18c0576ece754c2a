/**
 * A model whose dense forward runs on WebGPU (forward/gpu.ts): a DiffusionModel with only the asynchronous forward
 * (`forwardAsync`, which the denoising loop awaits: engine/generate.ts). Built from a host model loaded through
 * kernels/webgpu/host-weights.ts (the weights are uploaded from the host arrays it kept); the host model's backend
 * stays the model's backend for the host-side row statistics the loop may compute.
 *
 * DyLLM's cached step runs through `forwardPlannedAsync` (forward/gpu-planned.ts: the delta update, o_proj of every
 * query row), with its caches on the device until `releaseCaches`. The synchronous `forward` and `forwardPlanned`
 * refuse with one line, so the methods that call them (Fast-dLLM, dLLM-Cache) do not run on WebGPU.
 *
 * May import: kernels/, models/.
 */
import type { HostWeight, KernelBackend, PreparedWeight } from '../kernels/backend.js';
import type { WebGpuKernels } from '../kernels/webgpu/kernels.js';
import type { ModelConfig } from '../load/config.js';
import type { RecomputePlan, StepCounts } from '../cache/plan.js';
import type { SequenceCache } from '../cache/layer-cache.js';
import { GpuForward } from './forward/gpu.js';
import { GpuCaches, gpuForwardPlanned } from './forward/gpu-planned.js';
import { Transformer } from './transformer.js';
import type { DiffusionModel, ForwardBatch, LogitRowStats, StatsRequest } from './types.js';

/**
 * Why resolved acceleration options cannot run on a GpuModel (one line, naming the option), or null: dense and DyLLM
 * with the delta update and without the tolerances run; the other methods and options do not yet.
 */
export function gpuAccelRefusal(accel: { readonly method: string; readonly [knob: string]: unknown }, dense: boolean): string | null {
  if (dense) return null;
  if (accel.method !== 'dyllm') return `--accel ${accel.method}: only dense steps and DyLLM run on WebGPU yet; use --accel none or dyllm, or another backend`;
  if (accel.attnUpdate !== undefined && accel.attnUpdate !== 'delta') return `--attn-update ${String(accel.attnUpdate)}: DyLLM on WebGPU runs the delta update only; drop --attn-update`;
  if (accel.oProj === 'reuse-always') return 'oProj reuse-always: DyLLM on WebGPU projects every query row; use --o-proj reuse or recompute';
  if ((accel.qkvTol ?? null) !== null) return '--qkv-tol: the Q/K/V tolerance does not run on WebGPU yet; drop it';
  if ((accel.headTol ?? null) !== null) return '--head-tol: the head tolerance does not run on WebGPU yet; drop it';
  return null;
}

export class GpuModel implements DiffusionModel {
  readonly config: ModelConfig;
  readonly backend: KernelBackend;
  readonly gpu: GpuForward;
  private readonly caches: GpuCaches;

  constructor(kernels: WebGpuKernels, host: DiffusionModel, hostOf: (w: PreparedWeight) => HostWeight) {
    if (!(host instanceof Transformer)) throw new TypeError('GpuModel: the host model must be a Transformer (models/transformer.ts)');
    this.config = host.config;
    // The host backend (for host-side row statistics), named for what runs the forward.
    this.backend = Object.create(host.backend, { name: { value: 'webgpu' } }) as KernelBackend;
    this.gpu = new GpuForward(kernels, host, hostOf);
    this.caches = new GpuCaches(this.gpu);
  }

  get weightBytes(): number {
    return this.gpu.weightBytes;
  }

  forward(): Float32Array {
    throw new RangeError('this model runs on WebGPU: its forward is asynchronous (generate() awaits it)');
  }

  forwardPlanned(): Float32Array {
    throw new RangeError('this model runs on WebGPU: its cached steps are asynchronous (forwardPlannedAsync, which DyLLM\'s steps await); Fast-dLLM and dLLM-Cache do not run on WebGPU yet');
  }

  forwardAsync(batch: ForwardBatch, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    return this.gpu.forward(batch, stats);
  }

  forwardPlannedAsync(batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    return gpuForwardPlanned(this.gpu, this.caches, batch, plan, counts, stats);
  }

  /** Frees the device caches of DyLLM's requests (all but those of `keep`): call when a request ends. */
  releaseCaches(keep: readonly SequenceCache[] = []): void {
    this.caches.release(keep);
  }

  /** Frees the model's device tensors (not the kernels' device). */
  destroy(): void {
    this.caches.release();
    this.gpu.destroy();
  }
}

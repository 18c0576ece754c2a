/**
 * The engine worker's model under `dyllm serve --backend webgpu`: a GpuModel (models/gpu-model.ts) that outlives its
 * device. When a step finds the device lost, the model is dropped and the next step asks for a new device
 * (engine/gpu-pipeline.ts newModel: the host weights uploaded again); when none can be had, every step fails with one
 * line saying that the GPU is gone. The scheduler (async-steps.ts) fails the requests whose state was on the lost device.
 */
import { WebGpuError } from '../kernels/webgpu/device.js';
import type { KernelBackend } from '../kernels/backend.js';
import type { ModelConfig } from '../load/config.js';
import type { RecomputePlan, StepCounts } from '../cache/plan.js';
import type { SequenceCache } from '../cache/layer-cache.js';
import type { DiffusionModel, ForwardBatch, LogitRowStats, StatsRequest } from '../models/types.js';
import { oneLine } from './text.js';

/** The prefix of the WebGpuError a lost device raises (kernels/webgpu/device.ts). */
const LOST = 'webgpu: device lost';

/** Whether `e` says the WebGPU device was lost. */
export function isDeviceLost(e: unknown): boolean {
  return e instanceof WebGpuError && e.message.startsWith(LOST);
}

/** What this module uses of a GpuModel. */
export interface DeviceModel extends DiffusionModel {
  forwardAsync(batch: ForwardBatch, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats>;
  forwardPlannedAsync(batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats>;
  releaseCaches(keep?: readonly SequenceCache[]): void;
  destroy(): void;
}

export class RenewableGpuModel implements DiffusionModel {
  readonly config: ModelConfig;
  readonly backend: KernelBackend;
  private current: DeviceModel | null;
  private renewing: Promise<DeviceModel> | null = null;
  /** Why the last device went away (for the message when no new one can be had). */
  private lostWhy = '';

  constructor(first: DeviceModel, private readonly newModel: () => Promise<DeviceModel>) {
    this.config = first.config;
    this.backend = first.backend;
    this.current = first;
  }

  get weightBytes(): number {
    return this.current?.weightBytes ?? 0;
  }

  forward(): Float32Array {
    throw new RangeError('this model runs on WebGPU: its forward is asynchronous (the scheduler awaits it)');
  }

  forwardPlanned(): Float32Array {
    throw new RangeError('this model runs on WebGPU: its cached steps are asynchronous; Fast-dLLM and dLLM-Cache do not run on WebGPU yet');
  }

  async forwardAsync(batch: ForwardBatch, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    const m = await this.model();
    return this.watch(m, () => m.forwardAsync(batch, stats));
  }

  async forwardPlannedAsync(batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts, stats: StatsRequest | null): Promise<Float32Array | LogitRowStats> {
    const m = await this.model();
    return this.watch(m, () => m.forwardPlannedAsync(batch, plan, counts, stats));
  }

  /** Frees the device caches of the runs not in `keep` (all when none are given). */
  releaseCaches(keep: readonly SequenceCache[] = []): void {
    this.current?.releaseCaches(keep);
  }

  private async watch<T>(m: DeviceModel, step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (e) {
      if (isDeviceLost(e) && this.current === m) {
        this.current = null;
        this.lostWhy = oneLine(e).replace(/^webgpu: /, '');
        try {
          m.destroy();
        } catch {
          // its device is gone anyway
        }
      }
      throw e;
    }
  }

  /** The model on a live device: the current one, or a new one after a loss (one attempt shared by concurrent callers). */
  private async model(): Promise<DeviceModel> {
    if (this.current) return this.current;
    this.renewing ??= this.newModel().finally(() => (this.renewing = null));
    try {
      this.current = await this.renewing;
      return this.current;
    } catch (e) {
      throw new WebGpuError(`webgpu: the GPU is gone: ${this.lostWhy}, and no new device could be had (${oneLine(e)}); restart the server, or serve with --backend auto`);
    }
  }
}

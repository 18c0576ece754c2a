/**
 * The WebGPU pipeline that `dyllm generate --backend webgpu` and `dyllm serve --backend webgpu` run (docs/webgpu.md):
 * the model folder loaded with host handles for its weights (kernels/webgpu/host-weights.ts: no reference copies),
 * then uploaded to the `webgpu` package's adapter as a GpuModel (models/gpu-model.ts). `newModel()` uploads the same
 * host weights again to a new device: a server whose device was lost builds its next model with it.
 */
import { HostWeightsBackend } from '../kernels/webgpu/host-weights.js';
import { createNodeWebGpuKernels } from '../kernels/webgpu/node.js';
import { GpuModel } from '../models/gpu-model.js';
import { loadPipeline, type Pipeline, type PipelineOptions } from './pipeline.js';

export interface GpuPipeline {
  /** The loaded pipeline with its model on the GPU. */
  readonly pipeline: Pipeline & { readonly model: GpuModel };
  /** The same weights on a new device (the `webgpu` package's first adapter, asked again). */
  newModel(): Promise<GpuModel>;
}

/** Loads `dir` for WebGPU (bf16 or f32 weights as stored; the caller refuses --quant) and uploads it. */
export async function loadGpuPipeline(dir: string, opts: Pick<PipelineOptions, 'onProgress'> = {}): Promise<GpuPipeline> {
  const be = new HostWeightsBackend(false);
  const host = await loadPipeline(dir, { backend: be, onProgress: opts.onProgress });
  const newModel = async (): Promise<GpuModel> => new GpuModel(await createNodeWebGpuKernels(), host.model, (w) => be.hostOf(w));
  return { pipeline: { ...host, model: await newModel() }, newModel };
}

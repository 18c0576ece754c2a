/**
 * Load a Hugging Face model folder unconverted: config.json -> ModelConfig, safetensors (single or sharded) ->
 * strict WeightStore -> the architecture's model on the chosen kernel backend.
 */
import type { KernelBackend } from '../kernels/backend.js';
import { selectBackend, type BackendName } from '../kernels/select.js';
import { loadConfig, type GenerationDefaults, type ModelConfig } from '../load/config.js';
import { Checkpoint } from '../load/safetensors.js';
import { WeightStore } from '../load/weights.js';
import { architectures } from './registry.js';
import type { DiffusionModel } from './types.js';

export interface LoadedModel {
  readonly model: DiffusionModel;
  readonly config: ModelConfig;
  readonly generation: GenerationDefaults;
  /** Checkpoint tensors the architecture did not use (reported, not fatal). */
  readonly unusedTensors: readonly string[];
}

export function loadModel(dir: string, opts: { backend?: BackendName | KernelBackend } = {}): LoadedModel {
  const { config, generation } = loadConfig(dir);
  const backend = typeof opts.backend === 'object' ? opts.backend : selectBackend(opts.backend ?? 'auto');
  const store = new WeightStore(new Checkpoint(dir));
  const model = architectures[config.arch](config, store, backend);
  return { model, config, generation, unusedTensors: store.unused() };
}

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

/** Weight loading progress: bytes of tensor data read so far, of `total` (the checkpoint's tensor bytes). */
export type LoadProgress = (bytesRead: number, totalBytes: number) => void;

export function loadModel(dir: string, opts: { backend?: BackendName | KernelBackend; onProgress?: LoadProgress } = {}): LoadedModel {
  const { config, generation } = loadConfig(dir);
  const backend = typeof opts.backend === 'object' ? opts.backend : selectBackend(opts.backend ?? 'auto');
  const ckpt = new Checkpoint(dir);
  const progress = opts.onProgress;
  if (progress) {
    // Count each tensor's bytes as it is read (the architecture reads them one by one).
    const total = ckpt.nbytes();
    const read = ckpt.read.bind(ckpt);
    let done = 0;
    ckpt.read = (name) => {
      const data = read(name);
      const t = ckpt.info(name)!;
      done += t.end - t.begin;
      progress(done, total);
      return data;
    };
  }
  const store = new WeightStore(ckpt);
  const model = architectures[config.arch](config, store, backend);
  if (progress) progress(ckpt.nbytes(), ckpt.nbytes()); // done (tensors the architecture does not use are never read)
  // What the model still reads from the mapped files (the embedding rows, norm weights) is faulted back in as it is
  // used; the rest of the file leaves the resident set now.
  ckpt.release();
  return { model, config, generation, unusedTensors: store.unused() };
}

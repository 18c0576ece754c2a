/** model_type -> constructor: the only dispatch table over architectures. */
import type { KernelBackend } from '../kernels/backend.js';
import type { Architecture, ModelConfig } from '../load/config.js';
import type { WeightStore } from '../load/weights.js';
import { createDream } from './dream.js';
import { createLlada } from './llada.js';
import type { DiffusionModel } from './types.js';

export const architectures: Readonly<Record<Architecture, (cfg: ModelConfig, store: WeightStore, backend: KernelBackend) => DiffusionModel>> = {
  llada: createLlada,
  dream: createDream,
};

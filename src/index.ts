/**
 * dyllm's public API: `load` a model and generate text from prompts (src/api.ts: `m.generate`, `m.stream`), and
 * below it the pipeline, the step iterator over token ids and the option resolvers it is built on (for custom
 * loops), with the types around them. Everything else is internal.
 */
export { loadPipeline, encodePrompt, decodeAnswer, type Pipeline, type SpecialIds } from './engine/pipeline.js';
export { generate, generateSteps, type GenerateRequest, type GenerateResult, type GenerateStats, type StepEvent, type SequenceStep } from './engine/generate.js';
export { resolveOptions, type GenerateOptions, type GenerateOptionsInput } from './engine/options.js';
export { resolveAccel, type AccelOptions, type AccelOptionsInput } from './engine/accel.js';
export { registerAccel, accelMethod, accelMethods } from './engine/accel/registry.js';
export type { AccelMethod, AccelRequest, AccelTelemetry, CanvasLayout, StepForward } from './engine/accel/types.js';
export { loadModel, type LoadedModel } from './models/load-model.js';
export type { DiffusionModel, ForwardBatch } from './models/types.js';
export { selectBackend, type BackendName } from './kernels/select.js';
export type { KernelBackend } from './kernels/backend.js';
export { LoadError, ConfigError } from './load/errors.js';
export { bundledModelPath, resolveModelDir, pullModel, hubCacheDir, parseRepoRef } from './load/hub.js';
export type { ModelConfig } from './load/config.js';
export {
  load, type DyllmModel, type LoadOptions, type Prompt, type GenerationOptions, type AccelCallOptions, type Completion, type CompletionStats,
  type Step, type BatchStep, type StepInfo, type CanvasView,
} from './api.js';
export type { ChatMessage } from './load/chat-template.js';

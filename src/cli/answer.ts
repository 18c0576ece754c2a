/** The JSON answer of `dyllm generate --json` and of a queued generate job (src/queue): text, tokens and stats. */
import { accelMethod } from '../engine/accel/registry.js';
import type { AccelOptions } from '../engine/accel.js';
import type { GenerateStats } from '../engine/generate.js';
import { decodeAnswer, type Pipeline } from '../engine/pipeline.js';

/**
 * `dyllm generate --json`'s object for one generated sequence: the answer text, the generated tokens and the
 * run's statistics (also each line of a queued batch's output, src/queue).
 */
export function answerJson(p: Pipeline, tokens: ArrayLike<number>, s: GenerateStats, accel: AccelOptions, threads?: number): { text: string; tokens: number[]; stats: Record<string, unknown> } {
  const method = accelMethod(accel.method);
  const cacheBytes = method.cacheBytesPerToken(p.config, accel);
  return {
    text: decodeAnswer(p, tokens),
    tokens: Array.from(tokens),
    stats: {
      steps: s.steps,
      nfe: s.nfe,
      elapsed_ms: Math.round(s.elapsedMs * 1000) / 1000,
      tokens_per_s: Math.round(s.tokensPerS * 1000) / 1000,
      generated_tokens: s.generatedTokens,
      salient_fraction: s.salientFraction,
      kv_fraction: s.kvFraction,
      salient_rows_per_layer: s.salientRowsPerLayer,
      accel: accel.method,
      ...method.stats?.(accel),
      ...(cacheBytes > 0 ? { cache_bytes_per_token: cacheBytes } : {}),
      backend: p.model.backend.name,
      ...(threads !== undefined ? { threads } : {}),
    },
  };
}

/**
 * Saliency policies: pure decisions over per-row signals, no activations. DyLLM's rule (arXiv 2603.08026):
 * a row is salient in a layer when the cosine between its new and cached attention context is below τ (strict),
 * one threshold for every layer, no cap and no minimum.
 */
import { ConfigError } from '../load/errors.js';
import type { SaliencyPolicy } from './plan.js';

export function cosineThreshold(tau: number): SaliencyPolicy {
  if (!Number.isFinite(tau) || tau <= -1 || tau > 1.5) throw new ConfigError(`threshold: expected τ in (-1, 1.5], found ${tau}`);
  return {
    name: `dyllm(τ=${tau})`,
    forceAll: false,
    select(_layer, cos, n) {
      let c = 0;
      for (let i = 0; i < n; i++) if (cos[i] < tau) c++;
      const out = new Int32Array(c);
      c = 0;
      for (let i = 0; i < n; i++) if (cos[i] < tau) out[c++] = i;
      return out;
    },
  };
}

/** Every row salient in every layer (the dense-equivalent plan; also how dense steps fill the caches). */
export const recomputeAll: SaliencyPolicy = {
  name: 'all',
  forceAll: true,
  select(_layer, _cos, n) {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = i;
    return out;
  },
};

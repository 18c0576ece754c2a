/**
 * LLaDA (GSAI-ML/LLaDA-8B-Instruct and relatives): a LLaMA-style bidirectional transformer. What is particular
 * to it: checkpoint names under `model.transformer.*`, `ff_proj` is the SwiGLU gate, `ff_out` is both the block
 * down projection and the LM head, no biases, no logit shift. Padding (post-2025-10-21 HF code): positions are
 * 0..L−1 of the whole padded row, and only padded *keys* are hidden; padded queries still attend.
 */
import type { KernelBackend } from '../kernels/backend.js';
import type { ModelConfig } from '../load/config.js';
import type { WeightStore } from '../load/weights.js';
import { loadWeights, Transformer, type PaddingRules, type WeightNames } from './transformer.js';

export const lladaWeightNames: WeightNames = {
  embed: 'model.transformer.wte.weight',
  finalNorm: 'model.transformer.ln_f.weight',
  head: 'model.transformer.ff_out.weight',
  layer: (i) => {
    const p = `model.transformer.blocks.${i}.`;
    return {
      attnNorm: p + 'attn_norm.weight',
      wq: p + 'q_proj.weight',
      wk: p + 'k_proj.weight',
      wv: p + 'v_proj.weight',
      bq: null,
      bk: null,
      bv: null,
      wo: p + 'attn_out.weight',
      ffnNorm: p + 'ff_norm.weight',
      gate: p + 'ff_proj.weight',
      up: p + 'up_proj.weight',
      down: p + 'ff_out.weight',
    };
  },
};

/** Same names with the optional q/k/v biases of `include_qkv_bias: true` variants. */
function names(cfg: ModelConfig): WeightNames {
  if (!cfg.qkvBias) return lladaWeightNames;
  return {
    ...lladaWeightNames,
    layer: (i) => {
      const n = lladaWeightNames.layer(i);
      return { ...n, bq: n.wq.replace('weight', 'bias'), bk: n.wk.replace('weight', 'bias'), bv: n.wv.replace('weight', 'bias') };
    },
  };
}

export const lladaPadding: PaddingRules = {
  positions(_mask, L, pos) {
    for (let i = 0; i < L; i++) pos[i] = i;
  },
  keyMask(mask) {
    // A mask with no zero is dropped by the HF code (no bias at all): same result, cheaper.
    return mask && mask.includes(0) ? mask : null;
  },
  zeroPadQueries: false,
};

export function createLlada(cfg: ModelConfig, store: WeightStore, backend: KernelBackend): Transformer {
  return new Transformer(cfg, backend, loadWeights(store, cfg, names(cfg), backend), lladaPadding);
}

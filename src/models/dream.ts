/**
 * Dream (Dream-org/Dream-v0-Instruct-7B, Dream-Coder): a Qwen2.5 transformer run bidirectionally. What is
 * particular to it: Qwen2 checkpoint names, q/k/v biases, GQA (28 query heads share 4 KV heads), and logits
 * shifted right by one position — applied by its diffusion family (families/dream.ts logitRow), not here.
 * Padding: positions count real tokens only (cumsum(mask) − 1, pads at 1); the mask is key AND query, so a pad
 * query row attends to nothing and its attention output is zero.
 */
import type { KernelBackend } from '../kernels/backend.js';
import type { ModelConfig } from '../load/config.js';
import type { WeightStore } from '../load/weights.js';
import { loadWeights, Transformer, type PaddingRules, type WeightNames } from './transformer.js';

export const dreamWeightNames: WeightNames = {
  embed: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  head: 'lm_head.weight',
  layer: (i) => {
    const p = `model.layers.${i}.`;
    return {
      attnNorm: p + 'input_layernorm.weight',
      wq: p + 'self_attn.q_proj.weight',
      wk: p + 'self_attn.k_proj.weight',
      wv: p + 'self_attn.v_proj.weight',
      bq: p + 'self_attn.q_proj.bias',
      bk: p + 'self_attn.k_proj.bias',
      bv: p + 'self_attn.v_proj.bias',
      wo: p + 'self_attn.o_proj.weight',
      ffnNorm: p + 'post_attention_layernorm.weight',
      gate: p + 'mlp.gate_proj.weight',
      up: p + 'mlp.up_proj.weight',
      down: p + 'mlp.down_proj.weight',
    };
  },
};

export const dreamPadding: PaddingRules = {
  positions(mask, L, pos) {
    let c = 0;
    for (let i = 0; i < L; i++) {
      const real = !mask || mask[i] !== 0;
      if (real) c++;
      // tok_idx = cumsum(mask) - 1, with pad positions set to 1 (HF generation_utils).
      pos[i] = mask ? (real ? c - 1 : 1) : i;
    }
  },
  keyMask(mask) {
    return mask && mask.includes(0) ? mask : null;
  },
  zeroPadQueries: true,
};

export function createDream(cfg: ModelConfig, store: WeightStore, backend: KernelBackend): Transformer {
  return new Transformer(cfg, backend, loadWeights(store, cfg, dreamWeightNames, backend), dreamPadding);
}

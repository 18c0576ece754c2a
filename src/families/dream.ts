/**
 * The Dream family (Dream-org/Dream-v0-Instruct-7B generation_utils.py `_sample`): no blocks — every masked
 * position may commit at every step, with counts from the timesteps linspace(1, eps, steps + 1); logits are shifted
 * (position i reads the model row i − 1, position 0 its own); the confidences and the choice are sampler/dream.ts.
 * The official padded batch shares one transfer count (the batch mean) and one generator; packed sequences each
 * compute alone.
 */
import { dreamSelect, validateDreamOptions, type DreamOptions, type DreamSequence } from '../sampler/dream.js';
import { dreamTimesteps } from '../sampler/schedule.js';
import type { DiffusionFamily, FamilySampler, SamplerSetup } from './types.js';

/** Steps allowed beyond the gen length: twice the official generation_config.json's 512 (it runs 512 at any length). */
const MAX_STEPS = 1024;

function sampler(setup: SamplerSetup): FamilySampler {
  const { options: o, sequences, rngs } = setup;
  const opts: DreamOptions = { temperature: o.temperature, topP: o.topP, topK: o.topK, alg: o.alg, algTemp: o.algTemp, parallelThreshold: o.parallelThreshold };
  validateDreamOptions(opts);
  const timesteps = dreamTimesteps(o.steps, o.eps);
  const plain = o.temperature === 0 && o.alg !== 'origin' && !(o.topP !== null && o.topP < 1) && o.topK === null;
  return {
    candidateEnd: (seq) => sequences[seq].tokens.length,
    rowStats: plain ? { entropy: o.alg === 'entropy' } : null,
    select(step, rows) {
      const seqs: DreamSequence[] = rows.map((r) => ({ logits: r.logits, masked: new Uint8Array(r.n).fill(1), stats: r.stats, vocabSize: setup.vocabSize }));
      // The padded layout shares k across the batch (and the first sequence's generator), as the official batch
      // does; packed sequences each get their own k, so they compute exactly what they compute alone.
      return o.batchLayout === 'left-pad'
        ? dreamSelect({ sequences: seqs, step, timesteps, options: opts, rng: rngs[rows[0].seq] })
        : seqs.map((d, i) => dreamSelect({ sequences: [d], step, timesteps, options: opts, rng: rngs[rows[i].seq] })[0]);
    },
    advance: () => false,
  };
}

export const dream: DiffusionFamily = {
  arch: 'dream',
  label: 'Dream',
  turnEndToken: '<|im_end|>',
  embeddingRowsKey: 'vocab_size',
  idsFromGenerationConfig: ['eos_token_id'],
  needsPrompt: true,
  usesBlocks: false,
  maxSteps: MAX_STEPS,
  options: ['alg', 'algTemp', 'topP', 'topK', 'eps'],
  generationConfig: {
    genLength: 'max_new_tokens', steps: 'steps', temperature: 'temperature', alg: 'alg', algTemp: 'alg_temp', topP: 'top_p', topK: 'top_k', eps: 'eps',
  },
  // The paper's fast setting for Dream.
  accelDefaults: { dyllm: { threshold: 0.995 } },
  logitRow: (pos) => Math.max(pos - 1, 0),
  checkSchedule(genLength, _steps, _blockLength, given) {
    return given !== undefined && given !== genLength ? { option: 'blockLength', detail: 'Dream has no semi-autoregressive blocks; leave it unset' } : null;
  },
  checkOptions(o) {
    if (o.cfgScale > 0) return { option: 'cfgScale', detail: 'classifier-free guidance is a LLaDA sampler option; Dream has none' };
    if (o.parallelThreshold !== null && o.alg === 'origin') {
      return { option: 'parallelThreshold', detail: 'needs a confidence alg (maskgit_plus, topk_margin or entropy); alg origin has no confidence to compare (set alg, or leave the threshold off)' };
    }
    return null;
  },
  sampler,
};

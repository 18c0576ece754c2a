/**
 * The LLaDA family (ML-GSAI/LLaDA generate.py): the canvas is denoised in semi-autoregressive blocks, each given
 * steps / blocks steps with `get_num_transfer_tokens`' counts; only the masked positions of the current block (and
 * any prompt masks before it) may commit; position i reads its own logits row; the confidences and the choice are
 * sampler/llada.ts. A block ends when its steps are spent or it has no mask left (parallel decoding fills blocks
 * early), and the run ends after the last block, as generate.py's loop does.
 */
import { lladaSelect, validateLladaOptions, type LladaOptions } from '../sampler/llada.js';
import { lladaBlockPlan, lladaTransferCounts } from '../sampler/schedule.js';
import type { CanvasSequence, DiffusionFamily, FamilySampler, SamplerSetup } from './types.js';

/** Per sequence: the current block, the step inside it, and the block's commit counts. */
interface BlockState {
  block: number;
  blockStep: number;
  schedule: Int32Array;
}

function sampler(setup: SamplerSetup): FamilySampler {
  const { options: o, sequences, maskId, rngs } = setup;
  const opts: LladaOptions = {
    temperature: o.temperature, remasking: o.remasking, logitsEosInf: o.logitsEosInf, confidenceEosEotInf: o.confidenceEosEotInf,
    eosId: setup.eosId, eotId: setup.eotId ?? setup.eosId, parallelThreshold: o.parallelThreshold,
  };
  validateLladaOptions(opts, setup.vocabSize);
  const { numBlocks, stepsPerBlock } = lladaBlockPlan(o.genLength, o.blockLength, o.steps);
  const blockStart = (s: CanvasSequence, st: BlockState) => s.genStart + st.block * o.blockLength;
  const masksInBlock = (s: CanvasSequence, st: BlockState): number => {
    let n = 0;
    for (let i = blockStart(s, st); i < blockStart(s, st) + o.blockLength; i++) if (s.tokens[i] === maskId) n++;
    return n;
  };
  const startBlock = (s: CanvasSequence, st: BlockState): void => {
    st.schedule = lladaTransferCounts(masksInBlock(s, st), stepsPerBlock);
    st.blockStep = 0;
  };
  const state: BlockState[] = sequences.map((s) => {
    const st = { block: 0, blockStep: 0, schedule: new Int32Array(0) };
    startBlock(s, st);
    return st;
  });
  return {
    candidateEnd: (seq) => blockStart(sequences[seq], state[seq]) + o.blockLength,
    rowStats: o.temperature === 0 && o.remasking === 'low_confidence' && !o.logitsEosInf && !o.confidenceEosEotInf ? { entropy: false } : null,
    select: (_step, rows) => rows.map((r) => {
      const st = state[r.seq];
      const ones = new Uint8Array(r.n).fill(1);
      return lladaSelect({ logits: r.logits, masked: ones, candidate: ones, k: st.schedule[st.blockStep], options: opts, rng: rngs[r.seq], stats: r.stats, vocabSize: setup.vocabSize });
    }),
    advance(seq) {
      const s = sequences[seq];
      const st = state[seq];
      st.blockStep++;
      // Next block when this one is filled (early with parallel decoding) or its steps are spent.
      while (st.block < numBlocks && (st.blockStep >= stepsPerBlock || masksInBlock(s, st) === 0)) {
        st.block++;
        if (st.block < numBlocks) startBlock(s, st);
      }
      // Past the last block the official loop ends, even with masks left (a prompt mask took some of the blocks'
      // commits; generate.py returns the canvas as it is).
      return st.block >= numBlocks;
    },
  };
}

export const llada: DiffusionFamily = {
  arch: 'llada',
  label: 'LLaDA',
  turnEndToken: '<|eot_id|>',
  embeddingRowsKey: 'embedding_size',
  idsFromGenerationConfig: ['eos_token_id', 'bos_token_id'],
  needsPrompt: false,
  usesBlocks: true,
  maxSteps: null,
  options: ['blockLength', 'remasking', 'cfgScale', 'logitsEosInf', 'confidenceEosEotInf'],
  generationConfig: { genLength: 'max_new_tokens', steps: 'steps', blockLength: 'block_length' },
  // The paper's fast setting for LLaDA.
  accelDefaults: { dyllm: { threshold: 0.99 } },
  logitRow: (pos) => pos,
  checkSchedule(genLength, steps, blockLength) {
    if (genLength % blockLength !== 0) return { option: 'blockLength', detail: `${blockLength} must divide the gen length ${genLength}` };
    if (steps % (genLength / blockLength) !== 0) {
      return { option: 'steps', detail: `${steps} must be a multiple of the number of blocks (gen length / block length = ${genLength / blockLength})` };
    }
    return null;
  },
  checkOptions: () => null,
  sampler,
};

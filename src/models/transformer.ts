/**
 * The bidirectional transformer both families share (LLaDA, Dream): a DiffusionModel over the forward passes in
 * forward/ — `forward` the dense pass, `forwardPlanned` the cached pass a RecomputePlan drives. The architecture
 * files (llada.ts, dream.ts) supply the checkpoint names and their own padding rules; this file reads the weights.
 *
 * May import: kernels/backend, load/, tensor/, cache/plan (types), models/forward, models/types.
 */
import type { KernelBackend } from '../kernels/backend.js';
import type { ModelConfig } from '../load/config.js';
import type { WeightStore } from '../load/weights.js';
import type { RecomputePlan, StepCounts } from '../cache/plan.js';
import { Scratch } from '../tensor/scratch.js';
import { RopeTable, type LayerWeights, type PaddingRules, type TransformerCore, type TransformerWeights } from './forward/core.js';
import { denseForward } from './forward/dense.js';
import { forwardPlanned } from './forward/planned.js';
import type { DiffusionModel, ForwardBatch, Trace } from './types.js';

export type { PaddingRules } from './forward/core.js';

/** Checkpoint names of one architecture. */
export interface WeightNames {
  readonly embed: string;
  readonly finalNorm: string;
  readonly head: string;
  layer(i: number): {
    attnNorm: string; wq: string; wk: string; wv: string; wo: string;
    bq: string | null; bk: string | null; bv: string | null;
    ffnNorm: string; gate: string; up: string; down: string;
  };
}

/** Read every tensor an architecture needs, strictly, and hand the matrices to the backend. */
export function loadWeights(store: WeightStore, cfg: ModelConfig, names: WeightNames, backend: KernelBackend): TransformerWeights {
  const D = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const F = cfg.intermediateSize;
  // The backend packs each matrix into its own memory (or the store hands out one kept in a packed-weight cache
  // file, load/pack-cache.ts); the checkpoint's pages of it can then leave the resident set.
  const prep = (name: string, out: number, inp: number) => store.prepared(name, out, inp, backend);
  const layers: LayerWeights[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    const n = names.layer(i);
    layers.push({
      attnNorm: store.vector(n.attnNorm, D),
      wq: prep(n.wq, qDim, D),
      wk: prep(n.wk, kvDim, D),
      wv: prep(n.wv, kvDim, D),
      bq: n.bq ? store.vector(n.bq, qDim) : null,
      bk: n.bk ? store.vector(n.bk, kvDim) : null,
      bv: n.bv ? store.vector(n.bv, kvDim) : null,
      wo: prep(n.wo, D, qDim),
      ffnNorm: store.vector(n.ffnNorm, D),
      gate: prep(n.gate, F, D),
      up: prep(n.up, F, D),
      down: prep(n.down, D, F),
    });
  }
  // The head before the embedding, and the embedding's pages released at once: from here on it is looked up a row
  // at a time, so a mapped checkpoint never holds both vocabulary-sized tensors in the process while one is packed.
  const untiedHead = cfg.tieWordEmbeddings ? null : prep(names.head, cfg.vocabSize, D);
  // Its pages are faulted in ahead only when a tied head is about to be packed from it; otherwise a prompt's rows
  // come in as they are looked up.
  const embed = store.matrix(names.embed, cfg.vocabSize, D, { populate: cfg.tieWordEmbeddings });
  // prepareWeight never writes its input: a tied head is packed from the embedding itself
  const head = untiedHead ?? store.prepared(names.embed, cfg.vocabSize, D, backend, embed);
  store.release(names.embed);
  return { embed, layers, finalNorm: store.vector(names.finalNorm, D), head };
}

export class Transformer implements DiffusionModel, TransformerCore {
  readonly rope: RopeTable;
  readonly weightBytes: number;
  readonly scratch = new Scratch();

  constructor(
    readonly config: ModelConfig,
    readonly backend: KernelBackend,
    readonly weights: TransformerWeights,
    readonly padding: PaddingRules,
  ) {
    this.rope = new RopeTable(config.headDim, config.ropeTheta);
    let n = weights.embed.data.byteLength + weights.head.nbytes;
    for (const l of weights.layers) n += l.wq.nbytes + l.wk.nbytes + l.wv.nbytes + l.wo.nbytes + l.gate.nbytes + l.up.nbytes + l.down.nbytes;
    this.weightBytes = n;
  }

  forward(batch: ForwardBatch, trace?: Trace): Float32Array {
    return denseForward(this, batch, trace);
  }

  forwardPlanned(batch: ForwardBatch, plan: RecomputePlan, counts: StepCounts): Float32Array {
    return forwardPlanned(this, batch, plan, counts);
  }
}

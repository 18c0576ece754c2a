/**
 * The canvas of one request and the batches built from it: each sequence is its prompt (left-padded in the official
 * layout) followed by G masks; a step's ForwardBatch packs the active sequences (and classifier-free guidance's
 * unconditional copies) and asks for logits at the rows the family says predict each candidate position. Also:
 * the checks on prompts, the end-of-sequence rule, guidance, and merging several requests' batches into one forward.
 */
import type { DiffusionFamily } from '../families/types.js';
import type { ModelConfig } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import type { DiffusionModel, ForwardBatch } from '../models/types.js';
import type { RowStats } from '../sampler/confidence.js';
import type { GenerateOptions } from '../sampler/options.js';
import { emptyCounts } from '../cache/plan.js';
import type { CanvasLayout, PlannedPart } from './accel/types.js';
import type { SpecialIds } from './pipeline.js';
import { OptionError } from './schema.js';

/** Sequences one request may denoise together (a batch larger than this is a mistake, not a workload). */
export const MAX_BATCH = 1024;

export interface Seq {
  readonly tokens: Int32Array; // [len] prompt (+ pads) + G
  readonly mask: Uint8Array | null;
  readonly genStart: number;
  readonly isPrompt: Uint8Array; // positions that were not masks at start (CFG's prompt_index)
  done: boolean;
  /** Generated tokens: G, or up to and including the end token when stopped early (0 while running). */
  generated: number;
}

/** Prompts are checked before anything is allocated: ids inside the vocabulary, prompt + canvas inside the model. */
export function validatePrompts(prompts: readonly (readonly number[])[], cfg: ModelConfig, family: DiffusionFamily, G: number): void {
  if (!Array.isArray(prompts) || prompts.length === 0) throw new ConfigError('prompts: expected at least one prompt, found none');
  if (prompts.length > MAX_BATCH) throw new ConfigError(`prompts: expected at most ${MAX_BATCH} prompts in one request, found ${prompts.length}`);
  const V = cfg.vocabSize;
  prompts.forEach((p, b) => {
    if (!Array.isArray(p) && !(p instanceof Int32Array)) throw new ConfigError(`prompt ${b}: expected an array of token ids, found ${typeof p}`);
    if (p.length === 0 && family.needsPrompt) throw new ConfigError(`prompt ${b}: ${family.label} needs at least one prompt token`);
    if (p.length + G > cfg.maxSequenceLength) {
      throw new OptionError('genLength', `prompt ${b} has ${p.length} tokens, and ${p.length} + ${G} positions exceed the model's maximum sequence length ${cfg.maxSequenceLength} (shorten the prompt or lower the gen length)`);
    }
    // Masks inside prompts are allowed: the samplers may fill them (generate.py).
    for (const t of p) {
      if (!Number.isSafeInteger(t) || t < 0 || t >= V) throw new ConfigError(`prompt ${b}: token id ${t} is outside the vocabulary [0, ${V})`);
    }
  });
}

/**
 * Pre-committed generated regions (infilling): one per prompt, G ids each, the mask id where the sampler denoises;
 * the other positions start committed and, like the prompt, never change. Checked before anything is allocated.
 */
export function validateFixed(fixed: readonly (readonly number[])[], prompts: number, cfg: ModelConfig, G: number, maskId: number): void {
  if (!Array.isArray(fixed) || fixed.length !== prompts) throw new ConfigError(`fixed: expected one generated region per prompt (${prompts}), found ${Array.isArray(fixed) ? fixed.length : typeof fixed}`);
  fixed.forEach((f, b) => {
    if (!Array.isArray(f) && !(f instanceof Int32Array)) throw new ConfigError(`fixed ${b}: expected an array of token ids, found ${typeof f}`);
    if (f.length !== G) throw new ConfigError(`fixed ${b}: expected the gen length ${G} ids, found ${f.length}`);
    let masks = 0;
    for (const t of f) {
      if (!Number.isSafeInteger(t) || t < 0 || t >= cfg.vocabSize) throw new ConfigError(`fixed ${b}: token id ${t} is outside the vocabulary [0, ${cfg.vocabSize})`);
      if (t === maskId) masks++;
    }
    if (masks === 0) throw new ConfigError(`fixed ${b}: expected at least one mask to denoise, found none`);
  });
}

/**
 * Each prompt followed by G masks (or its `fixed` region: pre-committed tokens and masks): packed (each sequence
 * alone) or the official left padding with an attention mask. isPrompt marks every position that is not a mask at
 * the start, as generate.py's `prompt_index = (x != mask_id)` does (classifier-free guidance masks them all).
 */
export function buildCanvas(prompts: readonly (readonly number[])[], o: GenerateOptions, ids: SpecialIds, fixed?: readonly (readonly number[])[]): Seq[] {
  const maxP = Math.max(...prompts.map((p) => p.length));
  return prompts.map((p, b) => {
    const pad = o.batchLayout === 'left-pad' ? maxP - p.length : 0;
    const len = pad + p.length + o.genLength;
    const tokens = new Int32Array(len).fill(ids.mask);
    tokens.fill(ids.pad, 0, pad);
    tokens.set(p, pad);
    if (fixed) tokens.set(fixed[b], pad + p.length);
    let mask: Uint8Array | null = null;
    if (pad > 0) {
      mask = new Uint8Array(len).fill(1);
      mask.fill(0, 0, pad);
    }
    const isPrompt = new Uint8Array(len);
    for (let i = 0; i < (fixed ? len : pad + p.length); i++) isPrompt[i] = tokens[i] !== ids.mask ? 1 : 0;
    return { tokens, mask, genStart: pad + p.length, isPrompt, done: false, generated: 0 };
  });
}

export function canvasLayout(seqs: readonly Seq[], genLength: number): CanvasLayout {
  return { lengths: seqs.map((s) => s.tokens.length), genStart: seqs.map((s) => s.genStart), genLength, masks: seqs.map((s) => s.mask) };
}

/** Done when no mask is left, or (stopAtEos) an end token is decoded with every position before it committed. */
export function finishIfDone(s: Seq, G: number, maskId: number, stopAtEos: boolean, stopIds: ReadonlySet<number>, eos: number): void {
  const gen = s.tokens.subarray(s.genStart);
  let firstMask = -1;
  for (let i = 0; i < G; i++) {
    if (gen[i] === maskId) {
      firstMask = i;
      break;
    }
    if (stopAtEos && stopIds.has(gen[i])) {
      gen.fill(eos, i + 1); // positions after the end are not generated; fill them with EOS
      s.done = true;
      s.generated = i + 1;
      return;
    }
  }
  if (firstMask < 0) {
    s.done = true;
    s.generated = G;
  }
}

/** The batch of the active sequences (and CFG's unconditional copies), with logits for the candidate rows. */
export function buildBatch(seqs: readonly Seq[], active: readonly number[], cand: readonly Int32Array[], family: DiffusionFamily, cfg: boolean, maskId: number): ForwardBatch {
  const copies = cfg ? 2 : 1;
  let T = 0;
  for (const b of active) T += seqs[b].tokens.length;
  const tokens = new Int32Array(T * copies);
  const seqStart = new Int32Array(active.length * copies + 1);
  const anyMask = active.some((b) => seqs[b].mask !== null);
  const mask = anyMask ? new Uint8Array(T * copies).fill(1) : null;
  let nRows = 0;
  for (const c of cand) nRows += c.length;
  const logitRows = new Int32Array(nRows * copies);
  let row = 0;
  let lr = 0;
  for (let copy = 0; copy < copies; copy++) {
    active.forEach((b, ai) => {
      const s = seqs[b];
      seqStart[copy * active.length + ai] = row;
      tokens.set(s.tokens, row);
      // CFG's unconditional copy: every prompt position (prompt_index, pads included) becomes the mask.
      if (copy === 1) for (let i = 0; i < s.tokens.length; i++) if (s.isPrompt[i]) tokens[row + i] = maskId;
      if (mask && s.mask) mask.set(s.mask, row);
      for (const pos of cand[ai]) logitRows[lr++] = row + family.logitRow(pos);
      row += s.tokens.length;
    });
  }
  seqStart[active.length * copies] = row;
  return { tokens, seqStart, attentionMask: mask, logitRows };
}

/** Several requests' batches as one (their rows and logit rows in order; sequences never attend across requests). */
function mergeBatches(batches: readonly ForwardBatch[]): ForwardBatch {
  let T = 0;
  let S = 0;
  let L = 0;
  for (const b of batches) {
    T += b.tokens.length;
    S += b.seqStart.length - 1;
    L += b.logitRows ? b.logitRows.length : b.tokens.length;
  }
  const tokens = new Int32Array(T);
  const seqStart = new Int32Array(S + 1);
  const anyMask = batches.some((b) => b.attentionMask);
  const mask = anyMask ? new Uint8Array(T).fill(1) : null;
  const logitRows = new Int32Array(L);
  let t = 0;
  let s = 0;
  let l = 0;
  for (const b of batches) {
    tokens.set(b.tokens, t);
    if (mask && b.attentionMask) mask.set(b.attentionMask, t);
    for (let i = 0; i < b.seqStart.length - 1; i++) seqStart[s++] = t + b.seqStart[i];
    if (b.logitRows) for (const r of b.logitRows) logitRows[l++] = t + r;
    else for (let r = 0; r < b.tokens.length; r++) logitRows[l++] = t + r;
    t += b.tokens.length;
  }
  seqStart[S] = T;
  return { tokens, seqStart, attentionMask: mask, logitRows };
}

/** The merged logits cut back into each batch's own. */
function splitLogits(all: Float32Array, batches: readonly ForwardBatch[], V: number): Float32Array[] {
  const out: Float32Array[] = [];
  let off = 0;
  for (const b of batches) {
    const n = b.logitRows ? b.logitRows.length : b.tokens.length;
    out.push(all.subarray(off * V, (off + n) * V));
    off += n;
  }
  return out;
}

/**
 * One forward for several dense runs' batches (sequences never attend across requests, so each gets exactly
 * the logits it would get alone). Returns each batch's logits.
 */
export function forwardMerged(model: DiffusionModel, batches: readonly ForwardBatch[]): Float32Array[] {
  if (batches.length === 1) return [model.forward(batches[0])];
  return splitLogits(model.forward(mergeBatches(batches)), batches, model.config.vocabSize);
}

/**
 * One planned forward for several cached runs' steps whose parts share a key (StepForward.plan): the query and
 * salient rows of all of them go through one GEMM per projection and FFN, attention runs per sequence against its
 * own caches, and each run gets its own logits and counts (`done`). Every row's arithmetic is its own, so each run
 * gets the logits it would get alone. Everything that can refuse a plan does so before any cache is written.
 */
export function forwardMergedPlanned(model: DiffusionModel, members: readonly { batch: ForwardBatch; part: PlannedPart }[]): Float32Array[] {
  const L = model.config.numLayers;
  if (members.length === 1) {
    const { batch, part } = members[0];
    const counts = emptyCounts(L);
    const logits = model.forwardPlanned(batch, part.plan, counts);
    part.done(counts);
    return [logits];
  }
  const first = members[0].part;
  for (const m of members) {
    if (m.part.key !== first.key) throw new RangeError(`forwardMergedPlanned: parts "${first.key}" and "${m.part.key}" cannot share a forward`);
  }
  const batches = members.map((m) => m.batch);
  const sequences = members.flatMap((m) => m.part.plan.sequences);
  const counts = emptyCounts(L, sequences.length);
  const all = model.forwardPlanned(mergeBatches(batches), { ...first.plan, sequences }, counts);
  let s0 = 0;
  for (const m of members) {
    const n = m.part.plan.sequences.length;
    const per = counts.perSequence!.slice(s0, s0 + n);
    const own = emptyCounts(L);
    for (const c of per) {
      c.salientPerLayer.forEach((x, l) => (own.salientPerLayer[l] += x));
      own.kvRows += c.kvRows;
      own.ffnRows += c.ffnRows;
      own.queryRows += c.queryRows;
      own.oProjReused += c.oProjReused;
    }
    own.recomputed = counts.recomputed.slice(s0, s0 + n);
    m.part.done(own);
    s0 += n;
  }
  return splitLogits(all, batches, model.config.vocabSize);
}

export function sliceStats(s: RowStats, from: number, to: number): RowStats {
  return { argmax: s.argmax.subarray(from, to), p1: s.p1.subarray(from, to), p2: s.p2.subarray(from, to), negEntropy: s.negEntropy ? s.negEntropy.subarray(from, to) : null };
}

/** Classifier-free guidance on [conditional; unconditional] logits: u + (s + 1)·(c − u). */
export function guide(logits: Float32Array, scale: number): Float32Array {
  const half = logits.length / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const c = logits[i];
    const u = logits[half + i];
    out[i] = u + (scale + 1) * (c - u);
  }
  return out;
}

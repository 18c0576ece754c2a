/**
 * The denoising loop as a step iterator. Each step runs the model once over the active sequences, hands the
 * logits of the rows that may commit to the family's sampler (LLaDA generate.py / Dream _sample semantics), writes
 * the committed tokens and yields a StepEvent. The CLI, server and benchmarks only consume these events.
 *
 * What the loop owns: the canvas (prompt + G masks per sequence), LLaDA's blocks and per-block schedule, Dream's
 * timesteps and logit shift, the batch layout, parallel decoding, early stop and the statistics. What it does not
 * own: which token/rows to pick (sampler/), how logits are computed (the acceleration method: engine/accel/).
 */
import type { DiffusionModel, ForwardBatch } from '../models/types.js';
import { lladaSelect, validateLladaOptions } from '../sampler/llada.js';
import { dreamSelect, validateDreamOptions, type DreamSequence } from '../sampler/dream.js';
import { Rng } from '../sampler/rng.js';
import { dreamTimesteps, lladaTransferCounts } from '../sampler/schedule.js';
import type { Selection } from '../sampler/pick.js';
import type { LladaOptions } from '../sampler/llada.js';
import type { RowStats } from '../sampler/confidence.js';
import type { DreamOptions } from '../sampler/dream.js';
import type { ModelConfig } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import { OptionError } from './schema.js';
import type { GenerateOptions } from './options.js';
import { accelMethod } from './accel/registry.js';
import type { AccelOptions, AccelTelemetry, CanvasLayout, StepForward } from './accel/types.js';
import type { SpecialIds } from './pipeline.js';

const NO_ACCEL: AccelOptions = Object.freeze({ method: 'none' });

export interface SequenceStep {
  /** The generated region [G]; the mask id where still masked. */
  readonly canvas: Int32Array;
  /** Offsets in [0, G) committed this step. */
  readonly committed: Int32Array;
  readonly done: boolean;
}

export interface StepEvent {
  readonly step: number; // 0-based
  readonly maxSteps: number;
  readonly sequences: readonly SequenceStep[];
  readonly forwardMs: number;
  readonly sampleMs: number;
  /** Model evaluations so far (a CFG step counts two). */
  readonly nfe: number;
  readonly accel: AccelTelemetry | null;
}

export interface GenerateStats {
  readonly steps: number;
  readonly nfe: number;
  readonly elapsedMs: number;
  /** Generated tokens: G per sequence, or up to and including the end token when stopped early. */
  readonly generatedTokens: number;
  readonly tokensPerS: number;
  /** FFN rows recomputed ÷ dense over the run (1 for dense). */
  readonly salientFraction: number;
  /** K/V rows recomputed ÷ dense over the run (1 for dense). */
  readonly kvFraction: number;
  /** Salient (FFN-recomputed) rows per layer summed over the run; null for dense. */
  readonly salientRowsPerLayer: readonly number[] | null;
}

export interface GenerateResult {
  /** Per sequence, the generated region [G]. */
  readonly tokens: readonly Int32Array[];
  readonly stats: GenerateStats;
}

export interface GenerateRequest {
  readonly prompts: readonly (readonly number[])[];
  readonly options: GenerateOptions;
  /** Acceleration (default none: the dense forward), as resolveAccel returns it. */
  readonly accel?: AccelOptions;
  /** Checked between steps: true stops the loop (the result is then partial). */
  readonly cancelled?: () => boolean;
}

/** Sequences one request may denoise together (a batch larger than this is a mistake, not a workload). */
export const MAX_BATCH = 1024;

interface Seq {
  readonly tokens: Int32Array; // [len] prompt (+ pads) + G
  readonly mask: Uint8Array | null;
  readonly genStart: number;
  readonly isPrompt: Uint8Array; // positions that were not masks at start (CFG's prompt_index)
  done: boolean;
  block: number; // LLaDA: current block
  blockStep: number; // LLaDA: step inside the block
  schedule: Int32Array; // LLaDA: counts for the current block
  generated: number;
}

/** Prompts are checked before anything is allocated: ids inside the vocabulary, prompt + canvas inside the model. */
function validatePrompts(prompts: readonly (readonly number[])[], cfg: ModelConfig, G: number): void {
  if (!Array.isArray(prompts) || prompts.length === 0) throw new ConfigError('prompts: expected at least one prompt, found none');
  if (prompts.length > MAX_BATCH) throw new ConfigError(`prompts: expected at most ${MAX_BATCH} prompts in one request, found ${prompts.length}`);
  const V = cfg.vocabSize;
  prompts.forEach((p, b) => {
    if (!Array.isArray(p) && !(p instanceof Int32Array)) throw new ConfigError(`prompt ${b}: expected an array of token ids, found ${typeof p}`);
    if (p.length === 0 && cfg.arch === 'dream') throw new ConfigError(`prompt ${b}: Dream needs at least one prompt token`);
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
 * One request's denoising state, stepped from outside: `prepare()` builds the forward batch this step needs (or
 * null when finished), the caller computes its logits (alone with `forwardOwn`, or merged with other requests'
 * batches by `forwardMerged` when both are dense), and `finish()` samples, commits and returns the StepEvent.
 * Deterministic for a given seed, model and options (randomness: one Rng per sequence, seed + b).
 */
export class DenoiseRun {
  private readonly cfg: ModelConfig;
  private readonly o: GenerateOptions;
  private readonly seqs: Seq[];
  private readonly rngs: Rng[];
  private readonly stepper: StepForward;
  /** Whether this run's forward is the plain dense model (so it may share a batch with other dense runs). */
  readonly batchable: boolean;
  private readonly dream: boolean;
  private readonly numBlocks: number;
  private readonly stepsPerBlock: number;
  private readonly timesteps: Float32Array | null;
  private readonly stopIds: Set<number>;
  private readonly lladaOpts: LladaOptions;
  private readonly dreamOpts: DreamOptions;
  private readonly t0 = performance.now();
  private step = 0;
  private nfe = 0;
  private ffnRows = 0;
  private kvRows = 0;
  private denseFfnRows = 0;
  private perLayer: number[] | null = null;
  private pending: { active: number[]; cand: Int32Array[] } | null = null;
  private cancelled = false;

  constructor(readonly model: DiffusionModel, readonly ids: SpecialIds, readonly req: GenerateRequest) {
    const cfg = (this.cfg = model.config);
    const o = (this.o = req.options);
    const G = o.genLength;
    const maskId = ids.mask;
    validatePrompts(req.prompts, cfg, G);
    this.dream = cfg.arch === 'dream';
    // One PRNG per sequence (seed + b), so a sequence draws the same numbers in any batch.
    this.rngs = req.prompts.map((_, b) => new Rng(o.seed + b));
    // Canvas layout: packed (each sequence alone) or the official left padding with an attention mask.
    const maxP = Math.max(...req.prompts.map((p) => p.length));
    this.seqs = req.prompts.map((p) => {
      const pad = o.batchLayout === 'left-pad' ? maxP - p.length : 0;
      const len = pad + p.length + G;
      const tokens = new Int32Array(len).fill(maskId);
      tokens.fill(ids.pad, 0, pad);
      tokens.set(p, pad);
      let mask: Uint8Array | null = null;
      if (pad > 0) {
        mask = new Uint8Array(len).fill(1);
        mask.fill(0, 0, pad);
      }
      const isPrompt = new Uint8Array(len);
      for (let i = 0; i < pad + p.length; i++) isPrompt[i] = tokens[i] !== maskId ? 1 : 0;
      return { tokens, mask, genStart: pad + p.length, isPrompt, done: false, block: 0, blockStep: 0, schedule: new Int32Array(0), generated: 0 };
    });
    const layout: CanvasLayout = { lengths: this.seqs.map((s) => s.tokens.length), genStart: this.seqs.map((s) => s.genStart), genLength: G, masks: this.seqs.map((s) => s.mask) };
    const accel = req.accel ?? NO_ACCEL;
    const method = accelMethod(accel.method);
    if (!method.dense && o.cfgScale > 0) {
      throw new ConfigError('accel: classifier-free guidance with cached acceleration is not supported; use --accel none with --cfg-scale');
    }
    this.batchable = method.dense === true;
    this.stepper = method.create({ model, layout, gen: o }, accel);

    // LLaDA blocks: G = numBlocks · blockLength; steps = numBlocks · stepsPerBlock.
    this.numBlocks = this.dream ? 1 : G / o.blockLength;
    this.stepsPerBlock = this.dream ? o.steps : o.steps / this.numBlocks;
    this.timesteps = this.dream ? dreamTimesteps(o.steps, o.eps) : null;
    this.stopIds = new Set<number>([ids.eos, ...(ids.eot !== null ? [ids.eot] : [])]);
    this.lladaOpts = {
      temperature: o.temperature, remasking: o.remasking, logitsEosInf: o.logitsEosInf, confidenceEosEotInf: o.confidenceEosEotInf,
      eosId: ids.eos, eotId: ids.eot ?? ids.eos, parallelThreshold: o.parallelThreshold,
    };
    this.dreamOpts = { temperature: o.temperature, topP: o.topP, topK: o.topK, alg: o.alg, algTemp: o.algTemp, parallelThreshold: o.parallelThreshold };
    // What the samplers would refuse at their first step is refused here, before the request starts.
    if (this.dream) validateDreamOptions(this.dreamOpts);
    else validateLladaOptions(this.lladaOpts, cfg.vocabSize);
    if (!this.dream) for (const s of this.seqs) this.startBlock(s);
  }

  private startBlock(s: Seq): void {
    const from = s.genStart + s.block * this.o.blockLength;
    let n = 0;
    for (let i = from; i < from + this.o.blockLength; i++) if (s.tokens[i] === this.ids.mask) n++;
    s.schedule = lladaTransferCounts(n, this.stepsPerBlock);
    s.blockStep = 0;
  }

  /**
   * Row statistics from the kernels when the sampler can use them (greedy, no top-p/top-k, no logit edits), so the
   * vocabulary-wide softmax runs natively instead of in JS; null otherwise.
   */
  private rowStats(logits: Float32Array, V: number): RowStats | null {
    const o = this.o;
    if (o.temperature !== 0) return null;
    if (this.dream ? o.alg === 'origin' || (o.topP !== null && o.topP < 1) || o.topK !== null : o.remasking !== 'low_confidence' || o.logitsEosInf || o.confidenceEosEotInf) return null;
    const M = logits.length / V;
    const stats = { argmax: new Int32Array(M), p1: new Float64Array(M), p2: new Float64Array(M), negEntropy: this.dream && o.alg === 'entropy' ? new Float64Array(M) : null };
    this.model.backend.logitStats(logits, M, V, stats.argmax, stats.p1, stats.p2, stats.negEntropy);
    return stats;
  }

  /** Stop at the next step boundary (the result is then partial). */
  cancel(): void {
    this.cancelled = true;
  }

  get finished(): boolean {
    return this.cancelled || this.step >= this.o.steps || this.seqs.every((s) => s.done);
  }

  /** The forward batch of this step (active sequences, plus CFG's unconditional copies), or null when finished. */
  prepare(): ForwardBatch | null {
    if (this.req.cancelled?.()) this.cancelled = true;
    if (this.finished) return null;
    const active: number[] = [];
    this.seqs.forEach((s, b) => s.done || active.push(b));
    // Rows that may commit this step, and the model rows whose logits they read.
    const cand: Int32Array[] = [];
    for (const b of active) {
      const s = this.seqs[b];
      const end = this.dream ? s.tokens.length : s.genStart + (s.block + 1) * this.o.blockLength;
      const c: number[] = [];
      for (let i = 0; i < end; i++) if (s.tokens[i] === this.ids.mask) c.push(i);
      cand.push(Int32Array.from(c));
    }
    this.pending = { active, cand };
    return buildBatch(this.seqs, active, cand, this.dream, this.o.cfgScale > 0, this.ids.mask);
  }

  /** This run's own forward (its acceleration method's; the dense model for none). */
  forwardOwn(batch: ForwardBatch): Float32Array {
    return this.stepper.forward(batch, this.pending!.active, this.step);
  }

  /** Sample from the logits of the prepared batch's logitRows, commit, and report the step. */
  finish(rawLogits: Float32Array, forwardMs: number): StepEvent {
    const { active, cand } = this.pending!;
    this.pending = null;
    const o = this.o;
    const cfg = this.cfg;
    const maskId = this.ids.mask;
    const G = o.genLength;
    const step = this.step;
    this.nfe += o.cfgScale > 0 ? 2 : 1;
    const accel = this.batchable ? null : this.stepper.telemetry();
    if (accel) {
      this.ffnRows += accel.ffnRows;
      this.kvRows += accel.kvRows;
      this.denseFfnRows += accel.denseFfnRows;
      this.perLayer ??= new Array(cfg.numLayers).fill(0);
      accel.salientPerLayer.forEach((n, l) => (this.perLayer![l] += n));
    } else {
      let rows = 0;
      for (const b of active) rows += this.seqs[b].tokens.length;
      this.ffnRows += rows * cfg.numLayers;
      this.kvRows += rows * cfg.numLayers;
      this.denseFfnRows += rows * cfg.numLayers;
    }
    const ts = performance.now();
    const logits = o.cfgScale > 0 ? guide(rawLogits, o.cfgScale) : rawLogits;
    const V = cfg.vocabSize;
    const stats = this.rowStats(logits, V);

    // Sample.
    let selections: Selection[];
    if (this.dream) {
      const dseqs: DreamSequence[] = [];
      let off = 0;
      for (const c of cand) {
        dseqs.push({ logits: logits.subarray(off * V, (off + c.length) * V), masked: new Uint8Array(c.length).fill(1), stats: stats && sliceStats(stats, off, off + c.length) });
        off += c.length;
      }
      // Dream shares k across the batch (mean masked count): kept for the official padded layout; packed
      // sequences each get their own k, so they compute exactly what they compute alone.
      selections = o.batchLayout === 'left-pad'
        ? dreamSelect({ sequences: dseqs, step, timesteps: this.timesteps!, options: this.dreamOpts, rng: this.rngs[active[0]] })
        : dseqs.map((d, ai) => dreamSelect({ sequences: [d], step, timesteps: this.timesteps!, options: this.dreamOpts, rng: this.rngs[active[ai]] })[0]);
    } else {
      selections = [];
      let off = 0;
      active.forEach((b, ai) => {
        const s = this.seqs[b];
        const c = cand[ai];
        const ones = new Uint8Array(c.length).fill(1);
        selections.push(lladaSelect({
          logits: logits.subarray(off * V, (off + c.length) * V), masked: ones, candidate: ones, k: s.schedule[s.blockStep],
          options: this.lladaOpts, rng: this.rngs[b], stats: stats && sliceStats(stats, off, off + c.length),
        }));
        off += c.length;
      });
    }

    // Commit, advance blocks, early stop.
    const committedByActive: Int32Array[] = [];
    active.forEach((b, ai) => {
      const s = this.seqs[b];
      const sel = selections[ai];
      const got: number[] = [];
      for (let j = 0; j < sel.rows.length; j++) {
        const pos = cand[ai][sel.rows[j]];
        s.tokens[pos] = sel.tokens[j];
        if (pos >= s.genStart) got.push(pos - s.genStart);
      }
      committedByActive.push(Int32Array.from(got));
      if (!this.dream) {
        s.blockStep++;
        // Next block when this one is filled (early with parallel decoding) or its steps are spent.
        while (s.block < this.numBlocks && (s.blockStep >= this.stepsPerBlock || !blockHasMask(s, o.blockLength, maskId))) {
          s.block++;
          if (s.block < this.numBlocks) this.startBlock(s);
        }
      }
      finishIfDone(s, G, maskId, o.stopAtEos, this.stopIds, this.ids.eos);
      // Past the last block the official loop ends, even with masks left (a prompt mask took some of the blocks'
      // commits; generate.py returns the canvas as it is). Blocks that parallel decoding filled early get here
      // before the step budget is spent.
      if (!this.dream && !s.done && s.block >= this.numBlocks) {
        s.done = true;
        s.generated = G;
      }
    });
    const sampleMs = performance.now() - ts;
    this.step++;
    const sequences: SequenceStep[] = this.seqs.map((s, b) => {
      const ai = active.indexOf(b);
      return { canvas: s.tokens.slice(s.genStart), committed: ai >= 0 ? committedByActive[ai] : new Int32Array(0), done: s.done };
    });
    return { step, maxSteps: o.steps, sequences, forwardMs, sampleMs, nfe: this.nfe, accel };
  }

  result(): GenerateResult {
    const elapsedMs = performance.now() - this.t0;
    const G = this.o.genLength;
    const generatedTokens = this.seqs.reduce((n, s) => n + (s.generated || G), 0);
    return {
      tokens: this.seqs.map((s) => s.tokens.slice(s.genStart)),
      stats: {
        steps: this.step,
        nfe: this.nfe,
        elapsedMs,
        generatedTokens,
        tokensPerS: generatedTokens / (elapsedMs / 1000),
        salientFraction: this.denseFfnRows ? this.ffnRows / this.denseFfnRows : 1,
        kvFraction: this.denseFfnRows ? this.kvRows / this.denseFfnRows : 1,
        salientRowsPerLayer: this.perLayer,
      },
    };
  }
}

/** The denoising loop for one request: yields one StepEvent per step; returns the final tokens and statistics. */
export function* generateSteps(model: DiffusionModel, ids: SpecialIds, req: GenerateRequest): Generator<StepEvent, GenerateResult> {
  const run = new DenoiseRun(model, ids, req);
  for (;;) {
    const batch = run.prepare();
    if (!batch) return run.result();
    const tf = performance.now();
    const logits = run.forwardOwn(batch);
    yield run.finish(logits, performance.now() - tf);
  }
}

/**
 * One forward for several dense runs' batches (sequences never attend across requests, so each gets exactly
 * the logits it would get alone). Returns each batch's logits.
 */
export function forwardMerged(model: DiffusionModel, batches: readonly ForwardBatch[]): Float32Array[] {
  if (batches.length === 1) return [model.forward(batches[0])];
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
  const all = model.forward({ tokens, seqStart, attentionMask: mask, logitRows });
  const V = model.config.vocabSize;
  const out: Float32Array[] = [];
  let off = 0;
  for (const b of batches) {
    const n = b.logitRows ? b.logitRows.length : b.tokens.length;
    out.push(all.subarray(off * V, (off + n) * V));
    off += n;
  }
  return out;
}

function blockHasMask(s: Seq, blockLength: number, maskId: number): boolean {
  const from = s.genStart + s.block * blockLength;
  for (let i = from; i < from + blockLength; i++) if (s.tokens[i] === maskId) return true;
  return false;
}

/** Done when no mask is left, or (stopAtEos) an end token is decoded with every position before it committed. */
function finishIfDone(s: Seq, G: number, maskId: number, stopAtEos: boolean, stopIds: Set<number>, eos: number): void {
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
function buildBatch(seqs: Seq[], active: number[], cand: Int32Array[], dream: boolean, cfg: boolean, maskId: number): ForwardBatch {
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
      // Dream predicts position i from the output at i − 1 (position 0 reuses its own row).
      for (const pos of cand[ai]) logitRows[lr++] = row + (dream ? Math.max(pos - 1, 0) : pos);
      row += s.tokens.length;
    });
  }
  seqStart[active.length * copies] = row;
  return { tokens, seqStart, attentionMask: mask, logitRows };
}

function sliceStats(s: RowStats, from: number, to: number): RowStats {
  return { argmax: s.argmax.subarray(from, to), p1: s.p1.subarray(from, to), p2: s.p2.subarray(from, to), negEntropy: s.negEntropy ? s.negEntropy.subarray(from, to) : null };
}

/** Classifier-free guidance on [conditional; unconditional] logits: u + (s + 1)·(c − u). */
function guide(logits: Float32Array, scale: number): Float32Array {
  const half = logits.length / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const c = logits[i];
    const u = logits[half + i];
    out[i] = u + (scale + 1) * (c - u);
  }
  return out;
}

/** Async wrapper: yields to the event loop between steps (Ctrl-C, timers and I/O stay responsive). */
export async function* generate(model: DiffusionModel, ids: SpecialIds, req: GenerateRequest): AsyncGenerator<StepEvent, GenerateResult> {
  const it = generateSteps(model, ids, req);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    yield r.value;
    await new Promise<void>((res) => setImmediate(res));
  }
}

/**
 * The denoising loop as a step iterator. Each step runs the request's acceleration method once over the active
 * sequences (engine/accel/: the dense model for none), hands the logits of the rows that may commit to the family's
 * sampler (families/: LLaDA generate.py / Dream `_sample` semantics), writes the committed tokens and yields a
 * StepEvent. The CLI, server and benchmarks only consume these events.
 *
 * What the loop owns: the canvas (prompt + G masks per sequence; canvas.ts), the step count, classifier-free
 * guidance, early stop and the statistics. What it does not own: which positions may commit and which do, with
 * which logits row (the family), how logits are computed (the acceleration method, then the model).
 */
import { familyOf } from '../families/registry.js';
import type { DiffusionFamily, FamilySampler } from '../families/types.js';
import type { ModelConfig } from '../load/config.js';
import { ConfigError } from '../load/errors.js';
import type { DiffusionModel, ForwardBatch, LogitRowStats, StatsRequest } from '../models/types.js';
import type { RowStats } from '../sampler/confidence.js';
import type { Selection } from '../sampler/pick.js';
import { Rng } from '../sampler/rng.js';
import { accelMethod } from './accel/registry.js';
import type { AccelOptions, AccelTelemetry, PlannedPart, StepForward } from './accel/types.js';
import { buildBatch, buildCanvas, canvasLayout, finishIfDone, guide, sliceStats, validateFixed, validatePrompts, type Seq } from './canvas.js';
import type { GenerateOptions } from './options.js';
import type { SpecialIds } from './pipeline.js';

// Where callers stepping several runs (server/scheduler.ts) find the merged dense forward.
export { forwardMerged, forwardMergedPlanned } from './canvas.js';

const NO_ACCEL: AccelOptions = Object.freeze({ method: 'none' });

export interface SequenceStep {
  /** The generated region [G]; the mask id where still masked. */
  readonly canvas: Int32Array;
  /** Offsets in [0, G) committed this step. */
  readonly committed: Int32Array;
  readonly done: boolean;
  /** With GenerateRequest.logprobs: one entry per `committed` offset, in the same order (see committedLogprob). */
  readonly logprobs?: readonly CommittedLogprob[];
}

/** A token id and its log-probability. */
export interface TokenLogprob {
  readonly token: number;
  readonly logprob: number;
}

/** The committed token's log-probability at its commit step, and the `top` most likely tokens of that row. */
export interface CommittedLogprob extends TokenLogprob {
  readonly top: readonly TokenLogprob[];
}

/** Most alternatives GenerateRequest.logprobs may ask for (OpenAI's top_logprobs bound). */
export const MAX_TOP_LOGPROBS = 20;

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
  /**
   * Generated tokens: the positions the model denoised, G per sequence, or up to and including the end token when
   * stopped early. An infill's fixed text (GenerateRequest.fixed) was not generated: only its holes count.
   */
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
  /**
   * Report each committed token's log-probability (SequenceStep.logprobs) with this many top alternatives
   * (0..MAX_TOP_LOGPROBS); undefined = off (nothing computed).
   */
  readonly logprobs?: number;
  /**
   * Infilling: per prompt, the generated region's starting ids (genLength each; the mask id marks the holes). The
   * other positions are pre-committed and never change; only the holes are denoised, by the same family sampler and
   * acceleration method (engine/infill.ts builds these from a template).
   */
  readonly fixed?: readonly (readonly number[])[];
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
  private readonly family: DiffusionFamily;
  private readonly seqs: Seq[];
  private readonly rngs: Rng[];
  private readonly stepper: StepForward;
  private readonly sampler: FamilySampler;
  /** Whether this run's forward is the plain dense model (so it may share a batch with other dense runs). */
  readonly batchable: boolean;
  private readonly stopIds: Set<number>;
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
    const family = (this.family = familyOf(cfg.arch));
    validatePrompts(req.prompts, cfg, family, o.genLength);
    if (req.logprobs !== undefined && !(Number.isSafeInteger(req.logprobs) && req.logprobs >= 0 && req.logprobs <= MAX_TOP_LOGPROBS)) {
      throw new ConfigError(`logprobs: expected an integer in [0, ${MAX_TOP_LOGPROBS}] (top alternatives per token), found ${String(req.logprobs)}`);
    }
    // One PRNG per sequence (seed + b), so a sequence draws the same numbers in any batch.
    this.rngs = req.prompts.map((_, b) => new Rng(o.seed + b));
    if (req.fixed !== undefined) validateFixed(req.fixed, req.prompts.length, cfg, o.genLength, ids.mask);
    this.seqs = buildCanvas(req.prompts, o, ids, req.fixed);
    const accel = req.accel ?? NO_ACCEL;
    const method = accelMethod(accel.method);
    if (!method.dense && o.cfgScale > 0) {
      throw new ConfigError('accel: classifier-free guidance with cached acceleration is not supported; use --accel none with --cfg-scale');
    }
    this.batchable = method.dense === true;
    this.stepper = method.create({ model, layout: canvasLayout(this.seqs, o.genLength), gen: o, family }, accel);
    this.stopIds = new Set<number>([ids.eos, ...(ids.eot !== null ? [ids.eot] : [])]);
    // What the sampler would refuse at its first step is refused here, before the request starts.
    this.sampler = family.sampler({ options: o, sequences: this.seqs, maskId: ids.mask, eosId: ids.eos, eotId: ids.eot, vocabSize: cfg.vocabSize, rngs: this.rngs });
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
    // Rows that may commit this step: the masks before the family's candidate end.
    const cand: Int32Array[] = [];
    for (const b of active) {
      const s = this.seqs[b];
      const end = this.sampler.candidateEnd(b);
      const c: number[] = [];
      for (let i = 0; i < end; i++) if (s.tokens[i] === this.ids.mask) c.push(i);
      cand.push(Int32Array.from(c));
    }
    this.pending = { active, cand };
    return buildBatch(this.seqs, active, cand, this.family, this.o.cfgScale > 0, this.ids.mask);
  }

  /** This run's own forward (its acceleration method's; the dense model for none). */
  forwardOwn(batch: ForwardBatch): Float32Array {
    return this.stepper.forward(batch, this.pending!.active, this.step);
  }

  /** Whether this run's steps are asynchronous (a device-resident model: StepForward.forwardAsync); `generate()` awaits them. */
  get asyncStep(): boolean {
    return this.stepper.forwardAsync !== undefined;
  }

  /**
   * What an asynchronous step may return instead of logits: the candidate rows' statistics, when the sampler reads
   * only those (greedy, no top-p/top-k: FamilySampler.rowStats) and nothing else needs the logits (no logprobs, no
   * guidance). Null: the step returns logits.
   */
  statsRequest(): StatsRequest | null {
    return this.o.cfgScale === 0 && this.req.logprobs === undefined ? this.sampler.rowStats : null;
  }

  /** This run's asynchronous forward (only when `asyncStep`): logits, or the rows' statistics when `statsRequest()` allows. */
  forwardOwnAsync(batch: ForwardBatch): Promise<Float32Array | LogitRowStats> {
    if (!this.stepper.forwardAsync) throw new RangeError('forwardOwnAsync: this run\'s acceleration method has no asynchronous step');
    return this.stepper.forwardAsync(batch, this.pending!.active, this.step, this.statsRequest());
  }

  /** Whether this run's steps can be planned (`planOwn`) and so share a planned forward with other runs. */
  get plannable(): boolean {
    return !this.batchable && this.stepper.plan !== undefined;
  }

  /**
   * Instead of `forwardOwn`: this step as a plan, for `forwardMergedPlanned` with other runs' parts of the same key
   * (the logits it then returns are the ones `forwardOwn` would have). Only when `plannable`.
   */
  planOwn(batch: ForwardBatch): PlannedPart {
    if (!this.stepper.plan) throw new RangeError('planOwn: this run\'s acceleration method has no planned steps');
    return this.stepper.plan(batch, this.pending!.active, this.step);
  }

  /**
   * Sample from the logits of the prepared batch's logitRows (or, from an asynchronous step asked for them by
   * `statsRequest()`, their row statistics), commit, and report the step.
   */
  finish(out: Float32Array | LogitRowStats, forwardMs: number): StepEvent {
    let rawLogits: Float32Array;
    let given: LogitRowStats | null = null;
    if (out instanceof Float32Array) {
      rawLogits = out;
    } else {
      if (!this.statsRequest()) throw new RangeError('finish: row statistics stand in for logits only when statsRequest() asked for them');
      given = out;
      rawLogits = new Float32Array(0);
    }
    const { active, cand } = this.pending!;
    this.pending = null;
    const o = this.o;
    const step = this.step;
    this.nfe += o.cfgScale > 0 ? 2 : 1;
    const accel = this.batchable ? null : this.stepper.telemetry();
    this.count(accel, active);
    const ts = performance.now();
    const logits = o.cfgScale > 0 ? guide(rawLogits, o.cfgScale) : rawLogits;
    const selections = this.select(logits, given, active, cand, step);
    const V = this.cfg.vocabSize;
    let rowOff = 0; // this sequence's first row in `logits`
    const committed = active.map((b, ai) => {
      const c = this.commit(b, cand[ai], selections[ai], logits.subarray(rowOff * V, (rowOff + cand[ai].length) * V));
      rowOff += cand[ai].length;
      return c;
    });
    const sampleMs = performance.now() - ts;
    this.step++;
    const sequences: SequenceStep[] = this.seqs.map((s, b) => {
      const ai = active.indexOf(b);
      const seqStep: SequenceStep = { canvas: s.tokens.slice(s.genStart), committed: ai >= 0 ? committed[ai].offsets : new Int32Array(0), done: s.done };
      return this.req.logprobs === undefined ? seqStep : { ...seqStep, logprobs: ai >= 0 ? committed[ai].logprobs : [] };
    });
    return { step, maxSteps: o.steps, sequences, forwardMs, sampleMs, nfe: this.nfe, accel };
  }

  /** Adds a step's computed rows to the run's statistics (a dense step computes every row of every layer). */
  private count(accel: AccelTelemetry | null, active: readonly number[]): void {
    const L = this.cfg.numLayers;
    if (accel) {
      this.ffnRows += accel.ffnRows;
      this.kvRows += accel.kvRows;
      this.denseFfnRows += accel.denseFfnRows;
      this.perLayer ??= new Array(L).fill(0);
      accel.salientPerLayer.forEach((n, l) => (this.perLayer![l] += n));
    } else {
      let rows = 0;
      for (const b of active) rows += this.seqs[b].tokens.length;
      this.ffnRows += rows * L;
      this.kvRows += rows * L;
      this.denseFfnRows += rows * L;
    }
  }

  /** The family's choice of commits, from the candidate rows' logits (and their kernel statistics when usable). */
  private select(logits: Float32Array, given: LogitRowStats | null, active: readonly number[], cand: readonly Int32Array[], step: number): Selection[] {
    const V = this.cfg.vocabSize;
    const stats = given ?? this.rowStats(logits, V);
    // Statistics without logits: the sampler's rows are empty and it reads only the statistics (FamilySampler.rowStats).
    const width = given ? 0 : V;
    let off = 0;
    return this.sampler.select(step, active.map((b, ai) => {
      const n = cand[ai].length;
      const rows = { seq: b, logits: logits.subarray(off * width, (off + n) * width), stats: stats && sliceStats(stats, off, off + n), n };
      off += n;
      return rows;
    }));
  }

  /**
   * Row statistics from the kernels when the sampler can use them (greedy, no top-p/top-k, no logit edits), so the
   * vocabulary-wide softmax runs natively instead of in JS; null otherwise.
   */
  private rowStats(logits: Float32Array, V: number): RowStats | null {
    const need = this.sampler.rowStats;
    if (!need) return null;
    const M = logits.length / V;
    const stats = { argmax: new Int32Array(M), p1: new Float64Array(M), p2: new Float64Array(M), negEntropy: need.entropy ? new Float64Array(M) : null };
    this.model.backend.logitStats(logits, M, V, stats.argmax, stats.p1, stats.p2, stats.negEntropy);
    return stats;
  }

  /**
   * Writes sequence b's selected tokens, advances its schedule, ends it when due; returns the committed offsets
   * (and, when asked, their log-probabilities from `logits`, this sequence's candidate rows).
   */
  private commit(b: number, cand: Int32Array, sel: Selection, logits: Float32Array): { offsets: Int32Array; logprobs: CommittedLogprob[] } {
    const s = this.seqs[b];
    const G = this.o.genLength;
    const V = this.cfg.vocabSize;
    const got: number[] = [];
    const lps: CommittedLogprob[] = [];
    for (let j = 0; j < sel.rows.length; j++) {
      const pos = cand[sel.rows[j]];
      s.tokens[pos] = sel.tokens[j];
      if (pos >= s.genStart) {
        got.push(pos - s.genStart);
        if (this.req.logprobs !== undefined) {
          const r = sel.rows[j];
          lps.push(committedLogprob(logits.subarray(r * V, (r + 1) * V), sel.tokens[j], this.req.logprobs, this.o.temperature));
        }
      }
    }
    const spent = this.sampler.advance(b);
    finishIfDone(s, G, this.ids.mask, this.o.stopAtEos, this.stopIds, this.ids.eos);
    // A spent schedule ends the sequence even with masks left, as the official loop does.
    if (!s.done && spent) {
      s.done = true;
      s.generated = G;
    }
    return { offsets: Int32Array.from(got), logprobs: lps };
  }

  result(): GenerateResult {
    const elapsedMs = performance.now() - this.t0;
    const G = this.o.genLength;
    const generatedTokens = this.seqs.reduce((n, s) => n + denoisedPositions(s, s.generated || G), 0);
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

/**
 * The positions among the first `upTo` of a sequence's generated region that started masked (isPrompt 0): all of
 * them without `fixed`; an infill's holes only, its pre-committed text excluded.
 */
function denoisedPositions(s: Seq, upTo: number): number {
  let n = 0;
  for (let i = s.genStart; i < s.genStart + upTo; i++) if (s.isPrompt[i] === 0) n++;
  return n;
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

/** Lets the event loop run (setImmediate in Node; a macrotask in a browser, which has no setImmediate). */
const yieldToLoop = (): Promise<void> =>
  new Promise<void>((res) => (typeof setImmediate === 'function' ? setImmediate(res) : setTimeout(res, 0)));

/**
 * The denoising loop, asynchronous: yields to the event loop between steps (Ctrl-C, timers and I/O stay
 * responsive) and awaits a step that is asynchronous (a device-resident model: StepForward.forwardAsync, which may
 * return row statistics instead of logits). A synchronous step computes what `generateSteps` computes.
 */
export async function* generate(model: DiffusionModel, ids: SpecialIds, req: GenerateRequest): AsyncGenerator<StepEvent, GenerateResult> {
  const run = new DenoiseRun(model, ids, req);
  for (;;) {
    const batch = run.prepare();
    if (!batch) return run.result();
    const tf = performance.now();
    const out = run.asyncStep ? await run.forwardOwnAsync(batch) : run.forwardOwn(batch);
    yield run.finish(out, performance.now() - tf);
    await yieldToLoop();
  }
}

/**
 * The committed token's log-probability under the distribution the sampler read: log-softmax of the logit row
 * (CFG-guided when guidance is on; Dream's rows already shifted), divided by the temperature when it is > 0. Also
 * the `k` most likely tokens of that row, most likely first (ties: lower id first). Float64 arithmetic.
 */
export function committedLogprob(row: Float32Array, token: number, k: number, temperature: number): CommittedLogprob {
  const V = row.length;
  const inv = temperature > 0 ? 1 / temperature : 1;
  let max = -Infinity;
  for (let j = 0; j < V; j++) if (row[j] * inv > max) max = row[j] * inv;
  let sum = 0;
  for (let j = 0; j < V; j++) sum += Math.exp(row[j] * inv - max);
  const lse = max + Math.log(sum);
  // The k largest, kept sorted (k ≤ MAX_TOP_LOGPROBS: insertion is cheaper than sorting V values).
  const ids: number[] = [];
  const vals: number[] = [];
  for (let j = 0; j < V && k > 0; j++) {
    const x = row[j];
    if (ids.length === k && x <= vals[k - 1]) continue;
    let at = ids.length === k ? k - 1 : ids.length;
    while (at > 0 && vals[at - 1] < x) at--;
    ids.splice(at, 0, j);
    vals.splice(at, 0, x);
    if (ids.length > k) {
      ids.pop();
      vals.pop();
    }
  }
  return { token, logprob: row[token] * inv - lse, top: ids.map((id, i) => ({ token: id, logprob: vals[i] * inv - lse })) };
}

/** Runs a request to the end (yielding to the event loop between steps, as `generate` does) and returns its result. */
export async function generateAll(model: DiffusionModel, ids: SpecialIds, req: GenerateRequest): Promise<GenerateResult> {
  const it = generate(model, ids, req);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

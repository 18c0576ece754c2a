/**
 * The worker's continuous-batching loop. Every tick steps all live requests once, at a step boundary: the dense
 * requests' batches go through ONE `forwardMerged` call (each gets exactly the logits it gets alone, packed
 * layout); accelerated requests with planned steps (DyLLM) go through one `forwardMergedPlanned` per group of equal
 * plan keys (same τ, warm-up or sparse, update rule: their salient rows share one GEMM per projection and FFN,
 * attention per sequence against its own caches), other accelerated requests use their own cached forward in the
 * same tick. A request submitted meanwhile joins at the next tick; a finished or cancelled one leaves. Between
 * ticks the loop yields (setImmediate) so submit/cancel messages are handled. It receives token ids and decodes
 * answers; it never speaks HTTP.
 *
 * Fault isolation: an exception while preparing, computing, sampling or reporting one request's step fails that
 * request alone (an 'internal' error message: 500) and the tick goes on with the others. When a merged dense
 * forward throws, its members are retried one by one in the same tick, so only the request whose forward throws
 * alone fails; the others get exactly the logits they would have had (dense forwards are stateless).
 *
 * Runs whose model is asynchronous (WebGPU) are stepped by async-steps.ts, one awaited step at a time.
 */
import { DenoiseRun, forwardMerged, forwardMergedPlanned, type CommittedLogprob, type StepEvent } from '../engine/generate.js';
import type { PlannedPart } from '../engine/accel/types.js';
import { fillTemplate, filledPrefix } from '../engine/infill.js';
import type { Pipeline } from '../engine/pipeline.js';
import { familyOf } from '../families/registry.js';
import { ConfigError, LoadError } from '../load/errors.js';
import type { ForwardBatch, LogitRowStats } from '../models/types.js';
import { AsyncSteps } from './async-steps.js';
import { THROW_STEP_AT } from './faults.js';
import type { CancelMsg, DoneChoiceMsg, FromWorker, LogprobMsg, StepChoiceMsg, SubmitMsg, TokenLogprobMsg } from './protocol.js';
import { firstStop, heldBackStopPrefix, oneLine, tokenBytes, tokensWithin } from './text.js';

/** Per choice: what has been streamed, whether a stop string ended it, the logprob of every committed position. */
interface ChoiceState {
  /** A stop string is in the committed prefix: the choice is over (its text is cut there). */
  stopped: boolean;
  /** Done before this step (sends no more steps). */
  done: boolean;
  /** Answer tokens whose logprobs were sent with steps. */
  lpSent: number;
  /** Per canvas position, the logprob of the token committed there (null until committed; logprobs only). */
  readonly lp: (CommittedLogprob | null)[] | null;
}

/** Answer tokens of a canvas region: the ids before the first end token, masks and special tokens dropped. */
interface AnswerTokens {
  readonly ids: number[];
  /** Canvas position of each id. */
  readonly pos: number[];
}

interface Job {
  readonly id: number;
  readonly run: DenoiseRun;
  readonly msg: SubmitMsg;
  readonly choices: ChoiceState[];
  readonly promptTokens: number;
  readonly submittedAt: number;
  admittedAt: number;
  cancelled: boolean;
  /** Steps finished so far (for error messages and the throw-step test hook). */
  steps: number;
}

export class Scheduler {
  private readonly waiting: Job[] = [];
  private readonly live: Job[] = [];
  private readonly pieceCache = new Map<number, string>();
  private scheduled = false;
  private readonly async = new AsyncSteps<Job>({
    liveAsync: () => this.live.filter((j) => j.run.asyncStep),
    isLive: (job) => this.live.includes(job),
    stepJob: (job, out, ms) => this.stepJob(job, () => out, ms),
    fail: (job, e) => this.fail(job, e),
    finishJob: (job) => this.finishJob(job),
    stepped: (ms, committed) => {
      this.send({ type: 'tick', ms, live: this.live.length, waiting: this.waiting.length, merged: 0, generatedTokens: committed });
      this.wake();
    },
    release: () => (this.p.model as { releaseCaches?: () => void }).releaseCaches?.(),
  });

  constructor(
    private readonly p: Pipeline,
    private readonly opts: { readonly maxBatch: number; readonly maxPromptTokens: number; readonly testFaults?: boolean },
    private readonly send: (m: FromWorker) => void,
  ) {}

  submit(m: SubmitMsg): void {
    let job: Job;
    try {
      const prompt = m.tokens;
      const family = familyOf(this.p.config.arch);
      if (prompt.length === 0 && family.needsPrompt) throw new ConfigError(`prompt: ${family.label} needs at least one prompt token`);
      if (prompt.length > this.opts.maxPromptTokens) {
        throw new ConfigError(`prompt: ${prompt.length} tokens exceed this server's limit of ${this.opts.maxPromptTokens}`);
      }
      const prompts = Array.from({ length: m.n }, () => Array.from(prompt));
      // An infill pre-commits its region's fixed text (engine/infill.ts); every choice starts from the same region.
      const fixed = m.infill ? prompts.map(() => m.infill!.region) : undefined;
      const run = new DenoiseRun(this.p.model, this.p.ids, { prompts, options: m.options, accel: m.accel, logprobs: m.logprobs ?? undefined, fixed });
      const G = m.options.genLength;
      const choices = prompts.map(() => ({ stopped: false, done: false, lpSent: 0, lp: m.logprobs !== null ? new Array<CommittedLogprob | null>(G).fill(null) : null }));
      job = { id: m.id, run, msg: m, choices, promptTokens: prompt.length, submittedAt: performance.now(), admittedAt: 0, cancelled: false, steps: 0 };
    } catch (e) {
      const invalid = e instanceof ConfigError || e instanceof LoadError;
      this.send({ type: 'error', id: m.id, kind: invalid ? 'invalid' : 'internal', message: oneLine(e), param: invalid ? m.promptParam : null });
      return;
    }
    this.waiting.push(job);
    this.send({ type: 'accepted', id: m.id, promptTokens: job.promptTokens });
    this.wake();
  }

  cancel(m: CancelMsg): void {
    const i = this.waiting.findIndex((j) => j.id === m.id);
    if (i >= 0) {
      const [job] = this.waiting.splice(i, 1);
      job.cancelled = true;
      job.run.cancel();
      this.finishJob(job);
      return;
    }
    const job = this.live.find((j) => j.id === m.id);
    if (job) {
      job.cancelled = true;
      job.run.cancel(); // takes effect at the next step boundary (prepare() returns null)
    }
  }

  get depth(): { live: number; waiting: number } {
    return { live: this.live.length, waiting: this.waiting.length };
  }

  private wake(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.tick();
    });
  }

  /** One step of every live request. No exception escapes: a failing request is failed alone (see the top). */
  tick(): void {
    const t0 = performance.now();
    try {
      this.stepAll(t0);
    } catch (e) {
      // Not expected (every per-request part is guarded); if it happens, the live requests cannot be trusted.
      for (const job of [...this.live]) this.fail(job, e);
    } finally {
      // While an asynchronous step is awaited, only host runs need ticks (its end wakes the loop).
      const host = this.live.some((j) => !j.run.asyncStep);
      if (host || (!this.async.busy && this.live.length + this.waiting.length > 0)) this.wake();
    }
  }

  private stepAll(t0: number): void {
    // Up to maxBatch sequences are live (a request with n choices counts n); one request is always admitted.
    let seqs = 0;
    for (const j of this.live) seqs += j.msg.n;
    while (this.waiting.length > 0 && (this.live.length === 0 || seqs + this.waiting[0].msg.n <= this.opts.maxBatch)) {
      seqs += this.waiting[0].msg.n;
      const j = this.waiting.shift()!;
      j.admittedAt = performance.now();
      this.live.push(j);
    }
    const dense: { job: Job; batch: ForwardBatch }[] = [];
    const own: { job: Job; batch: ForwardBatch }[] = [];
    for (const job of [...this.live]) {
      if (job.run.asyncStep) continue; // async-steps.ts
      let batch: ForwardBatch | null;
      try {
        batch = job.run.prepare();
      } catch (e) {
        this.fail(job, e);
        continue;
      }
      if (!batch) {
        this.finishJob(job);
        continue;
      }
      (job.run.batchable ? dense : own).push({ job, batch });
    }
    let committed = 0;
    let merged = 0;
    if (dense.length > 0) {
      const tf = performance.now();
      let logits: (Float32Array | null)[];
      try {
        logits = this.forwardDense(dense);
        merged = dense.length;
      } catch (e) {
        // One member's batch may be what breaks the merged forward: retry each alone, fail only those that throw.
        if (dense.length === 1) {
          this.fail(dense[0].job, e);
          logits = [null];
        } else {
          logits = dense.map((d) => {
            try {
              return this.forwardDense([d])[0];
            } catch (e1) {
              this.fail(d.job, e1);
              return null;
            }
          });
        }
      }
      const ms = performance.now() - tf;
      dense.forEach((d, i) => {
        const l = logits[i];
        if (l) committed += this.stepJob(d.job, () => l, ms);
      });
    }
    // Cached runs with planned steps (DyLLM): one planned forward per group of equal keys (same τ, phase, update).
    const groups = new Map<string, { job: Job; batch: ForwardBatch; part: PlannedPart }[]>();
    const unplanned: { job: Job; batch: ForwardBatch }[] = [];
    for (const o of own) {
      if (!o.job.run.plannable) {
        unplanned.push(o);
        continue;
      }
      let part: PlannedPart;
      try {
        part = o.job.run.planOwn(o.batch);
      } catch (e) {
        this.fail(o.job, e);
        continue;
      }
      const g = groups.get(part.key);
      if (g) g.push({ ...o, part });
      else groups.set(part.key, [{ ...o, part }]);
    }
    for (const g of groups.values()) committed += this.stepPlanned(g);
    for (const o of unplanned) {
      const tf = performance.now();
      committed += this.stepJob(o.job, () => {
        this.testFaultForward([o]);
        return o.job.run.forwardOwn(o.batch);
      }, null, tf);
    }
    if (dense.length + own.length > 0) {
      this.send({ type: 'tick', ms: performance.now() - t0, live: this.live.length, waiting: this.waiting.length, merged, generatedTokens: committed });
    }
    this.async.pump();
  }

  /**
   * One group of planned steps through one forward. When the merged forward throws, each member is retried alone
   * with its plan (a plan is refused before any cache is written, so the retry sees the caches as they were), and
   * only the members that throw alone fail.
   */
  private stepPlanned(g: readonly { job: Job; batch: ForwardBatch; part: PlannedPart }[]): number {
    const tf = performance.now();
    let logits: (Float32Array | null)[];
    try {
      this.testFaultForward(g);
      logits = forwardMergedPlanned(this.p.model, g);
    } catch (e) {
      if (g.length === 1) {
        this.fail(g[0].job, e);
        return 0;
      }
      logits = g.map((m) => {
        try {
          this.testFaultForward([m]);
          return forwardMergedPlanned(this.p.model, [m])[0];
        } catch (e1) {
          this.fail(m.job, e1);
          return null;
        }
      });
    }
    const ms = performance.now() - tf;
    let committed = 0;
    g.forEach((m, i) => {
      const l = logits[i];
      if (l) committed += this.stepJob(m.job, () => l, ms);
    });
    return committed;
  }

  private forwardDense(members: readonly { job: Job; batch: ForwardBatch }[]): Float32Array[] {
    this.testFaultForward(members);
    return forwardMerged(this.p.model, members.map((d) => d.batch));
  }

  /** Test hook (faults.ts): a forward that includes a throw-forward request throws. */
  private testFaultForward(members: readonly { job: Job }[]): void {
    if (this.opts.testFaults && members.some((d) => d.job.msg.testFault === 'throw-forward')) {
      throw new Error('test fault: the forward of a batch holding a throw-forward request failed');
    }
  }

  /** Computes (if needed), samples and reports one step of a job; a throw fails the job alone. Returns commits. */
  private stepJob(job: Job, logits: () => Float32Array | LogitRowStats, forwardMs: number | null, tf = 0): number {
    try {
      const l = logits();
      return this.finishStep(job, l, forwardMs ?? performance.now() - tf);
    } catch (e) {
      this.fail(job, e);
      return 0;
    }
  }

  /** Ends a job with an error message (500): out of the batch, its state dropped, the others untouched. */
  private fail(job: Job, e: unknown): void {
    const i = this.live.indexOf(job);
    if (i >= 0) this.live.splice(i, 1);
    const w = this.waiting.indexOf(job);
    if (w >= 0) this.waiting.splice(w, 1);
    try {
      job.run.cancel();
    } catch {
      // the run is dropped anyway
    }
    this.send({ type: 'error', id: job.id, kind: 'internal', message: `generation failed at step ${job.steps}: ${oneLine(e)}`, param: null });
  }

  /** Reports a finished (or cancelled) job; a failure while decoding its answer fails it instead. */
  private finishJob(job: Job): void {
    try {
      this.done(job);
    } catch (e) {
      this.fail(job, e);
    }
  }

  /** Sample and commit one step of a job; report it; finish the job when its run is over. */
  private finishStep(job: Job, logits: Float32Array | LogitRowStats, forwardMs: number): number {
    if (this.opts.testFaults && job.msg.testFault === 'throw-step' && job.steps === THROW_STEP_AT) {
      throw new Error(`test fault: step ${job.steps} of a throw-step request failed`);
    }
    const ev = job.run.finish(logits, forwardMs);
    job.steps++;
    const m = job.msg;
    let committed = 0;
    ev.sequences.forEach((seq, b) => {
      committed += seq.committed.length;
      const lp = job.choices[b].lp;
      if (lp && seq.logprobs) seq.committed.forEach((pos, i) => (lp[pos] = seq.logprobs![i]));
    });
    if (m.stream || m.stop.length > 0) {
      const choices: StepChoiceMsg[] = [];
      ev.sequences.forEach((seq, b) => {
        const c = job.choices[b];
        if (c.stopped || c.done) return;
        const report = this.stepChoice(job, ev, b);
        c.done = seq.done;
        if (report) choices.push(report);
      });
      if (m.stream && choices.length > 0) {
        this.send({ type: 'step', id: job.id, step: ev.step, maxSteps: ev.maxSteps, forwardMs, ffnFraction: ev.accel ? ev.accel.ffnFraction : 1, choices });
      }
      // Every choice stopped by a stop string or done: the rest of the canvas is not needed.
      if (m.stop.length > 0 && !job.run.finished && job.choices.every((c) => c.stopped || c.done)) job.run.cancel();
    }
    if (job.run.finished) this.finishJob(job);
    return committed;
  }

  /** One choice's step: its streamable prefix (stop strings applied), its canvas and new logprobs. */
  private stepChoice(job: Job, ev: StepEvent, b: number): StepChoiceMsg | null {
    const m = job.msg;
    const seq = ev.sequences[b];
    const c = job.choices[b];
    const canvas = seq.canvas;
    let n = 0;
    while (n < canvas.length && canvas[n] !== this.p.ids.mask) n++;
    const ans = this.answerTokens(canvas, n);
    // An infill's answer is its template filled so far (stop strings and logprobs are refused with it: request.ts).
    const text = m.infill ? filledPrefix(m.infill, canvas, this.p.ids.mask, this.decodeText) : this.p.tokenizer.decode(ans.ids, { skipSpecialTokens: true });
    const stop = firstStop(text, m.stop);
    if (stop >= 0) c.stopped = true;
    // Hold back what a later step could still change: an incomplete UTF-8 sequence, the start of a stop string.
    let safe = stop >= 0 ? text.slice(0, stop) : text.slice(0, text.length - heldBackStopPrefix(text, m.stop));
    safe = safe.replace(/\uFFFD+$/, '');
    if (!m.stream) return null;
    let logprobs: LogprobMsg[] | null = null;
    if (c.lp) {
      const k = safe.length === text.length ? ans.ids.length : tokensWithin(this.decodeText, ans.ids, safe.length);
      logprobs = [];
      for (let i = c.lpSent; i < k; i++) logprobs.push(this.logprobMsg(c.lp[ans.pos[i]]!));
      c.lpSent = Math.max(c.lpSent, k);
    }
    const rec = ev.accel?.recomputed?.[b];
    const steps = m.streamSteps;
    return {
      index: b,
      prefixText: safe,
      committed: Array.from(seq.committed),
      recomputed: rec ? Array.from(rec) : null,
      pieces: steps ? Array.from(canvas, (t) => (t === this.p.ids.mask ? null : this.piece(t))) : null,
      special: steps ? Array.from(canvas, (t) => t !== this.p.ids.mask && this.isSpecial(t)) : null,
      end: steps ? Array.from(canvas, (t) => this.isEnd(t)) : null,
      tokens: steps ? Array.from(canvas) : null,
      logprobs,
    };
  }

  private done(job: Job): void {
    const i = this.live.indexOf(job);
    if (i >= 0) this.live.splice(i, 1);
    const r = job.run.result();
    const m = job.msg;
    const now = performance.now();
    const choices: DoneChoiceMsg[] = r.tokens.map((tokens, b) => {
      const c = job.choices[b];
      if (m.infill) {
        // The filled template; finished ('stop') unless cancelled: its end is the template's.
        const filled = fillTemplate(m.infill, tokens, this.decodeText);
        return { index: b, text: filled.text, fills: filled.fills, tokens: Array.from(tokens), finishReason: job.cancelled ? 'cancelled' : 'stop', logprobs: null };
      }
      const ans = this.answerTokens(tokens, tokens.length);
      let text = this.p.tokenizer.decode(ans.ids, { skipSpecialTokens: true });
      const stop = firstStop(text, m.stop);
      let k = ans.ids.length;
      if (stop >= 0) {
        text = text.slice(0, stop);
        k = tokensWithin(this.decodeText, ans.ids, stop, true);
      }
      let end = false;
      for (let t = 0; t < tokens.length && !end; t++) end = this.isEnd(tokens[t]);
      const lp = c.lp;
      return {
        index: b,
        text,
        fills: null,
        tokens: Array.from(tokens),
        finishReason: job.cancelled ? 'cancelled' : stop >= 0 || end ? 'stop' : 'length',
        logprobs: lp ? ans.pos.slice(0, k).filter((p) => lp[p]).map((p) => this.logprobMsg(lp[p]!)) : null,
      };
    });
    this.send({
      type: 'done',
      id: job.id,
      choices,
      promptTokens: job.promptTokens,
      completionTokens: r.stats.generatedTokens,
      steps: r.stats.steps,
      nfe: r.stats.nfe,
      elapsedMs: job.admittedAt ? now - job.admittedAt : 0,
      queueMs: (job.admittedAt || now) - job.submittedAt,
      salientFraction: r.stats.salientFraction,
    });
  }

  /** Ids as answer text (special tokens dropped). */
  private readonly decodeText = (ids: number[]): string => this.p.tokenizer.decode(ids, { skipSpecialTokens: true });

  /** End of the answer: end of text or end of turn. */
  private isEnd(t: number): boolean {
    return t === this.p.ids.eos || t === this.p.ids.eot;
  }

  /** A token that never appears in an answer: the mask, end, padding and BOS ids, and every special token. */
  private isSpecial(t: number): boolean {
    const ids = this.p.ids;
    return t === ids.mask || t === ids.eos || t === ids.eot || t === ids.pad || t === ids.bos || this.p.tokenizer.isSpecial(t);
  }

  /** The answer tokens of canvas[0, n): cut at the first end token, masks and special tokens dropped. */
  private answerTokens(canvas: Int32Array, n: number): AnswerTokens {
    const ids: number[] = [];
    const pos: number[] = [];
    for (let k = 0; k < n; k++) {
      const t = canvas[k];
      if (this.isEnd(t)) break;
      if (this.isSpecial(t)) continue;
      ids.push(t);
      pos.push(k);
    }
    return { ids, pos };
  }

  private tokenLogprobMsg(token: number, logprob: number): TokenLogprobMsg {
    const text = this.piece(token);
    return { token: text, bytes: tokenBytes(text, this.p.tokenizer.idToToken(token)), logprob };
  }

  private logprobMsg(lp: CommittedLogprob): LogprobMsg {
    return { ...this.tokenLogprobMsg(lp.token, lp.logprob), top: lp.top.map((t) => this.tokenLogprobMsg(t.token, t.logprob)) };
  }

  private piece(id: number): string {
    let s = this.pieceCache.get(id);
    if (s === undefined) {
      s = this.p.tokenizer.decode([id], { skipSpecialTokens: false });
      this.pieceCache.set(id, s);
    }
    return s;
  }
}

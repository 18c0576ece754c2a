/**
 * The worker's continuous-batching loop. Every tick steps all live requests once, at a step boundary: the dense
 * requests' batches go through ONE `forwardMerged` call (each gets exactly the logits it gets alone, packed
 * layout), accelerated requests (`batchable === false`) use their own cached forward in the same tick. A request
 * submitted meanwhile joins at the next tick; a finished or cancelled one leaves. Between ticks the loop yields
 * (setImmediate) so submit/cancel messages are handled. It receives token ids and decodes answers; it never speaks
 * HTTP.
 *
 * Fault isolation: an exception while preparing, computing, sampling or reporting one request's step fails that
 * request alone (an 'internal' error message: 500) and the tick goes on with the others. When a merged dense
 * forward throws, its members are retried one by one in the same tick, so only the request whose forward throws
 * alone fails; the others get exactly the logits they would have had (dense forwards are stateless).
 */
import { DenoiseRun, forwardMerged } from '../engine/generate.js';
import type { Pipeline } from '../engine/pipeline.js';
import { familyOf } from '../families/registry.js';
import { ConfigError, LoadError } from '../load/errors.js';
import type { ForwardBatch } from '../models/types.js';
import { THROW_STEP_AT } from './faults.js';
import type { CancelMsg, FromWorker, SubmitMsg } from './protocol.js';

interface Job {
  readonly id: number;
  readonly run: DenoiseRun;
  readonly msg: SubmitMsg;
  readonly promptTokens: number;
  readonly submittedAt: number;
  admittedAt: number;
  cancelled: boolean;
  /** Steps finished so far (for error messages and the throw-step test hook). */
  steps: number;
}

/** One line of an exception, for an error message. */
function oneLine(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0] || (e instanceof Error ? e.name : 'unknown error');
}

export class Scheduler {
  private readonly waiting: Job[] = [];
  private readonly live: Job[] = [];
  private readonly pieceCache = new Map<number, string>();
  private scheduled = false;

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
      const run = new DenoiseRun(this.p.model, this.p.ids, { prompts: [Array.from(prompt)], options: m.options, accel: m.accel });
      job = { id: m.id, run, msg: m, promptTokens: prompt.length, submittedAt: performance.now(), admittedAt: 0, cancelled: false, steps: 0 };
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
      if (this.live.length > 0 || this.waiting.length > 0) this.wake();
    }
  }

  private stepAll(t0: number): void {
    while (this.live.length < this.opts.maxBatch && this.waiting.length > 0) {
      const j = this.waiting.shift()!;
      j.admittedAt = performance.now();
      this.live.push(j);
    }
    const dense: { job: Job; batch: ForwardBatch }[] = [];
    const own: { job: Job; batch: ForwardBatch }[] = [];
    for (const job of [...this.live]) {
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
    for (const o of own) {
      const tf = performance.now();
      committed += this.stepJob(o.job, () => {
        this.testFaultForward([o]);
        return o.job.run.forwardOwn(o.batch);
      }, null, tf);
    }
    if (dense.length + own.length > 0) {
      this.send({ type: 'tick', ms: performance.now() - t0, live: this.live.length, waiting: this.waiting.length, merged, generatedTokens: committed });
    }
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
  private stepJob(job: Job, logits: () => Float32Array, forwardMs: number | null, tf = 0): number {
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
  private finishStep(job: Job, logits: Float32Array, forwardMs: number): number {
    if (this.opts.testFaults && job.msg.testFault === 'throw-step' && job.steps === THROW_STEP_AT) {
      throw new Error(`test fault: step ${job.steps} of a throw-step request failed`);
    }
    const ev = job.run.finish(logits, forwardMs);
    job.steps++;
    const seq = ev.sequences[0];
    if (job.msg.stream) {
      const rec = ev.accel?.recomputed?.[0];
      this.send({
        type: 'step',
        id: job.id,
        step: ev.step,
        maxSteps: ev.maxSteps,
        prefixText: this.prefixText(seq.canvas),
        committed: Array.from(seq.committed),
        recomputed: rec ? Array.from(rec) : null,
        pieces: job.msg.streamSteps ? Array.from(seq.canvas, (t) => (t === this.p.ids.mask ? null : this.piece(t))) : null,
        tokens: job.msg.streamSteps ? Array.from(seq.canvas) : null,
        forwardMs,
        ffnFraction: ev.accel ? ev.accel.ffnFraction : 1,
      });
    }
    if (job.run.finished) this.finishJob(job);
    return seq.committed.length;
  }

  private done(job: Job): void {
    const i = this.live.indexOf(job);
    if (i >= 0) this.live.splice(i, 1);
    const r = job.run.result();
    const tokens = r.tokens[0];
    const ids = this.p.ids;
    let end = -1;
    for (let k = 0; k < tokens.length && end < 0; k++) if (tokens[k] === ids.eos || tokens[k] === ids.eot) end = k;
    const cancelled = job.cancelled;
    const now = performance.now();
    this.send({
      type: 'done',
      id: job.id,
      text: this.answer(tokens, tokens.length),
      tokens: Array.from(tokens),
      finishReason: cancelled ? 'cancelled' : end >= 0 ? 'stop' : 'length',
      promptTokens: job.promptTokens,
      completionTokens: r.stats.generatedTokens,
      steps: r.stats.steps,
      nfe: r.stats.nfe,
      elapsedMs: job.admittedAt ? now - job.admittedAt : 0,
      queueMs: (job.admittedAt || now) - job.submittedAt,
      salientFraction: r.stats.salientFraction,
    });
  }

  /** The answer text of canvas[0, n): cut at the first end token, masks dropped. */
  private answer(canvas: Int32Array, n: number): string {
    const ids = this.p.ids;
    const out: number[] = [];
    for (let k = 0; k < n; k++) {
      const t = canvas[k];
      if (t === ids.eos || t === ids.eot) break;
      if (t === ids.mask) continue;
      out.push(t);
    }
    return this.p.tokenizer.decode(out, { skipSpecialTokens: true });
  }

  /** The answer decoded from the longest committed prefix (what ordinary stream deltas are made of). */
  private prefixText(canvas: Int32Array): string {
    let n = 0;
    while (n < canvas.length && canvas[n] !== this.p.ids.mask) n++;
    return this.answer(canvas, n);
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

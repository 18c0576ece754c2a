/**
 * The worker's continuous-batching loop. Every tick steps all live requests once, at a step boundary: the dense
 * requests' batches go through ONE `forwardMerged` call (each gets exactly the logits it gets alone, packed
 * layout), accelerated requests (`batchable === false`) use their own cached forward in the same tick. A request
 * submitted meanwhile joins at the next tick; a finished or cancelled one leaves. Between ticks the loop yields
 * (setImmediate) so submit/cancel messages are handled. It owns tokenising and decoding; it never speaks HTTP.
 */
import { DenoiseRun, forwardMerged } from '../engine/generate.js';
import type { Pipeline } from '../engine/pipeline.js';
import { encodePrompt } from '../engine/pipeline.js';
import { ConfigError, LoadError } from '../load/errors.js';
import type { ForwardBatch } from '../models/types.js';
import type { CancelMsg, FromWorker, SubmitMsg } from './protocol.js';

interface Job {
  readonly id: number;
  readonly run: DenoiseRun;
  readonly msg: SubmitMsg;
  readonly promptTokens: number;
  readonly submittedAt: number;
  admittedAt: number;
  cancelled: boolean;
}

export class Scheduler {
  private readonly waiting: Job[] = [];
  private readonly live: Job[] = [];
  private readonly pieceCache = new Map<number, string>();
  private scheduled = false;

  constructor(
    private readonly p: Pipeline,
    private readonly opts: { readonly maxBatch: number; readonly maxPromptTokens: number },
    private readonly send: (m: FromWorker) => void,
  ) {}

  submit(m: SubmitMsg): void {
    let job: Job;
    try {
      const prompt = m.prompt.kind === 'chat' ? encodePrompt(this.p, m.prompt.messages.map((x) => ({ role: x.role, content: x.content })), true) : encodePrompt(this.p, m.prompt.text, false);
      if (prompt.length === 0 && this.p.config.arch === 'dream') throw new ConfigError('prompt: Dream needs at least one prompt token');
      if (prompt.length > this.opts.maxPromptTokens) {
        throw new ConfigError(`prompt: ${prompt.length} tokens exceed this server's limit of ${this.opts.maxPromptTokens}`);
      }
      const run = new DenoiseRun(this.p.model, this.p.ids, { prompts: [prompt], options: m.options, accel: m.accel });
      job = { id: m.id, run, msg: m, promptTokens: prompt.length, submittedAt: performance.now(), admittedAt: 0, cancelled: false };
    } catch (e) {
      const invalid = e instanceof ConfigError || e instanceof LoadError;
      this.send({ type: 'error', id: m.id, kind: invalid ? 'invalid' : 'internal', message: (e as Error).message, param: invalid && m.prompt.kind === 'chat' ? 'messages' : invalid ? 'prompt' : null });
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
      this.done(job);
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

  /** One step of every live request. */
  tick(): void {
    const t0 = performance.now();
    while (this.live.length < this.opts.maxBatch && this.waiting.length > 0) {
      const j = this.waiting.shift()!;
      j.admittedAt = performance.now();
      this.live.push(j);
    }
    const dense: { job: Job; batch: ForwardBatch }[] = [];
    const own: { job: Job; batch: ForwardBatch }[] = [];
    for (const job of [...this.live]) {
      const batch = job.run.prepare();
      if (!batch) {
        this.done(job);
        continue;
      }
      (job.run.batchable ? dense : own).push({ job, batch });
    }
    let committed = 0;
    if (dense.length > 0) {
      const tf = performance.now();
      const logits = forwardMerged(this.p.model, dense.map((d) => d.batch));
      const ms = performance.now() - tf;
      dense.forEach((d, i) => (committed += this.finishStep(d.job, logits[i], ms)));
    }
    for (const o of own) {
      const tf = performance.now();
      const logits = o.job.run.forwardOwn(o.batch);
      committed += this.finishStep(o.job, logits, performance.now() - tf);
    }
    if (dense.length + own.length > 0) {
      this.send({ type: 'tick', ms: performance.now() - t0, live: this.live.length, waiting: this.waiting.length, merged: dense.length, generatedTokens: committed });
    }
    if (this.live.length > 0 || this.waiting.length > 0) this.wake();
  }

  /** Sample and commit one step of a job; report it; finish the job when its run is over. */
  private finishStep(job: Job, logits: Float32Array, forwardMs: number): number {
    const ev = job.run.finish(logits, forwardMs);
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
    if (job.run.finished) this.done(job);
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

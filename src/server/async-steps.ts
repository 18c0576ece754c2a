/**
 * The scheduler's stepping of runs whose model is asynchronous (a device-resident model, WebGPU: DenoiseRun.asyncStep,
 * models/gpu-model.ts). One such step is on the device at a time: the next run in turn prepares its batch, the step
 * is awaited (the event loop keeps handling submissions, cancellations and the host runs' ticks meanwhile), and its
 * logits, or its candidate rows' statistics when DenoiseRun.statsRequest() allows them, are sampled and reported by
 * the scheduler as any step's are. Runs take turns one step each (the run that waited longest goes next), so
 * concurrent requests all advance; steps are not merged across requests on the GPU.
 *
 * Faults: a step that throws or rejects fails its request alone (a WebGpuError in one line). A lost device fails
 * every request that has already stepped on it (their caches were on it); the model (server/gpu-device.ts) asks
 * for a new device at the next step, so the requests still waiting run there.
 */
import type { DenoiseRun } from '../engine/generate.js';
import type { LogitRowStats } from '../models/types.js';
import { isDeviceLost } from './gpu-device.js';

/** What this module needs of the scheduler's job. */
export interface AsyncJob {
  readonly run: DenoiseRun;
  /** Steps finished so far. */
  readonly steps: number;
}

export interface AsyncHost<J extends AsyncJob> {
  /** The live jobs whose runs are asynchronous, in admission order. */
  liveAsync(): readonly J[];
  /** Whether the job is still live (not failed or finished meanwhile). */
  isLive(job: J): boolean;
  /** Samples, commits and reports one step from its forward's output; a throw fails the job alone. Returns commits. */
  stepJob(job: J, out: Float32Array | LogitRowStats, forwardMs: number): number;
  fail(job: J, e: unknown): void;
  /** Reports a finished (or cancelled) job. */
  finishJob(job: J): void;
  /** After a step: the scheduler's tick message (one step, never merged) and the next tick. */
  stepped(ms: number, committed: number): void;
  /** The model's device caches are no longer needed by any live run (the last asynchronous run left). */
  release(): void;
}

export class AsyncSteps<J extends AsyncJob> {
  private inFlight: J | null = null;
  /** Jobs by when their last step started (the least recent goes next). */
  private readonly lastStep = new WeakMap<J, number>();
  private turn = 0;
  private hadJobs = false;

  constructor(private readonly host: AsyncHost<J>) {}

  /** Whether a step is on the device now (the scheduler then has nothing to tick for these runs). */
  get busy(): boolean {
    return this.inFlight !== null;
  }

  /**
   * Called every tick: finishes the live asynchronous jobs that are cancelled or finished and not on the device, and
   * when no step is in flight starts the next job's step.
   */
  pump(): void {
    const jobs = this.host.liveAsync();
    for (const job of jobs) if (job !== this.inFlight && job.run.finished) this.host.finishJob(job);
    const waiting = jobs.filter((j) => j !== this.inFlight && this.host.isLive(j));
    if (waiting.length === 0 && this.inFlight === null) {
      if (this.hadJobs) this.host.release();
      this.hadJobs = false;
      return;
    }
    this.hadJobs = true;
    if (this.inFlight !== null) return;
    // The job that stepped least recently (never stepped: in admission order) goes next.
    const next = waiting.reduce((a, b) => ((this.lastStep.get(b) ?? -1) < (this.lastStep.get(a) ?? -1) ? b : a));
    this.start(next);
  }

  private start(job: J): void {
    let batch;
    try {
      batch = job.run.prepare();
    } catch (e) {
      this.host.fail(job, e);
      return;
    }
    if (!batch) {
      this.host.finishJob(job);
      return;
    }
    this.lastStep.set(job, this.turn++);
    this.inFlight = job;
    const tf = performance.now();
    let step: Promise<Float32Array | LogitRowStats>;
    try {
      step = job.run.forwardOwnAsync(batch);
    } catch (e) {
      step = Promise.reject(e);
    }
    step.then(
      (out) => {
        this.inFlight = null;
        const ms = performance.now() - tf;
        this.host.stepped(ms, this.host.isLive(job) ? this.host.stepJob(job, out, ms) : 0);
      },
      (e: unknown) => {
        this.inFlight = null;
        if (this.host.isLive(job)) this.host.fail(job, e);
        // The device is gone: the runs that stepped on it lost their device state (a new device starts empty).
        if (isDeviceLost(e)) for (const j of this.host.liveAsync()) if (j.steps > 0) this.host.fail(j, e);
        this.host.stepped(performance.now() - tf, 0);
      },
    );
  }
}

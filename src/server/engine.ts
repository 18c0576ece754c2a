/**
 * The HTTP thread's handle on the engine worker: starts it (supervisor.ts restarts it, reloading the model, when it
 * dies), routes the worker's messages to per-request listeners and forwards submissions and cancellations. When
 * the worker dies, every request it held gets an error (kind 'worker': 503) at once. Holds no model state.
 */
import type { AcceptedMsg, CancelMsg, DoneMsg, ErrorMsg, FromWorker, ReadyMsg, StepMsg, SubmitMsg, TickMsg, ToWorker, WorkerConfig } from './protocol.js';
import { SupervisedWorker, type RestartLimits, type WorkerState } from './supervisor.js';

export interface JobListener {
  accepted(m: AcceptedMsg): void;
  step(m: StepMsg): void;
  done(m: DoneMsg): void;
  error(m: ErrorMsg): void;
}

export class EngineClient {
  private readonly w: SupervisedWorker<ToWorker, FromWorker, ReadyMsg>;
  private readonly jobs = new Map<number, JobListener>();
  private nextId = 1;
  readonly ready: Promise<ReadyMsg>;
  onTick: (m: TickMsg) => void = () => {};
  onRestart: () => void = () => {};

  constructor(cfg: WorkerConfig, limits: RestartLimits) {
    this.w = new SupervisedWorker<ToWorker, FromWorker, ReadyMsg>('engine', new URL('./worker.js', import.meta.url), cfg, limits, {
      onReady: () => {},
      onMessage: (m) => this.route(m),
      onDeath: (why) => {
        const jobs = [...this.jobs];
        this.jobs.clear();
        for (const [id, l] of jobs) l.error({ type: 'error', id, kind: 'worker', message: `${why} while generating this answer`, param: null });
      },
      onRestart: () => this.onRestart(),
    });
    this.ready = this.w.firstReady;
  }

  get state(): WorkerState {
    return this.w.state;
  }

  /** Why the worker is restarting or down; null while it runs. */
  get reason(): string | null {
    return this.w.reason;
  }

  private route(m: FromWorker): void {
    switch (m.type) {
      case 'tick':
        this.onTick(m);
        break;
      case 'accepted':
        this.jobs.get(m.id)?.accepted(m);
        break;
      case 'step':
        this.jobs.get(m.id)?.step(m);
        break;
      case 'done': {
        const l = this.jobs.get(m.id);
        this.jobs.delete(m.id);
        l?.done(m);
        break;
      }
      case 'error': {
        const l = this.jobs.get(m.id);
        this.jobs.delete(m.id);
        l?.error(m);
        break;
      }
    }
  }

  /** Hands a request to the worker; returns its id, or null when no worker runs (the caller answers 503). */
  submit(m: Omit<SubmitMsg, 'type' | 'id'>, l: JobListener): number | null {
    const id = this.nextId++;
    this.jobs.set(id, l);
    if (!this.w.post({ type: 'submit', id, ...m } satisfies SubmitMsg)) {
      this.jobs.delete(id);
      return null;
    }
    return id;
  }

  cancel(id: number, reason: CancelMsg['reason']): void {
    if (this.jobs.has(id)) this.w.post({ type: 'cancel', id, reason } satisfies CancelMsg);
  }

  terminate(): Promise<void> {
    return this.w.terminate();
  }
}

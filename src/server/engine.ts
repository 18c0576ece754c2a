/**
 * The HTTP thread's handle on the engine worker: starts it, waits for the model to load, routes the worker's
 * messages to per-request listeners and forwards submissions and cancellations. Holds no model state.
 */
import { Worker } from 'node:worker_threads';
import type { AcceptedMsg, DoneMsg, ErrorMsg, FromWorker, ReadyMsg, StepMsg, SubmitMsg, TickMsg, WorkerConfig, CancelMsg } from './protocol.js';

export interface JobListener {
  accepted(m: AcceptedMsg): void;
  step(m: StepMsg): void;
  done(m: DoneMsg): void;
  error(m: ErrorMsg): void;
}

export class EngineClient {
  private readonly worker: Worker;
  private readonly jobs = new Map<number, JobListener>();
  private nextId = 1;
  private dead: string | null = null;
  readonly ready: Promise<ReadyMsg>;
  onTick: (m: TickMsg) => void = () => {};

  constructor(cfg: WorkerConfig) {
    // --input-type / --eval flags of the parent make no sense for a worker file (and Node rejects them there).
    const execArgv = process.execArgv.filter((a) => !/^--(input-type|eval|print)\b|^-[ep]$/.test(a));
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: cfg, execArgv });
    this.ready = new Promise<ReadyMsg>((resolve, reject) => {
      this.worker.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            resolve(m);
            break;
          case 'fatal':
            this.dead = m.message;
            reject(new Error(m.message));
            break;
          case 'tick':
            this.onTick(m);
            break;
          case 'accepted':
            this.jobs.get(m.id)?.accepted(m);
            break;
          case 'step':
            this.jobs.get(m.id)?.step(m);
            break;
          case 'done':
            this.jobs.get(m.id)?.done(m);
            this.jobs.delete(m.id);
            break;
          case 'error':
            this.jobs.get(m.id)?.error(m);
            this.jobs.delete(m.id);
            break;
        }
      });
      const fail = (why: string): void => {
        this.dead ??= why;
        reject(new Error(why));
        for (const [id, l] of this.jobs) l.error({ type: 'error', id, kind: 'internal', message: `engine worker stopped: ${why}`, param: null });
        this.jobs.clear();
      };
      this.worker.on('error', (e) => fail(e.message));
      this.worker.on('exit', (code) => fail(`exit code ${code}`));
    });
  }

  /** Why the worker is gone, or null while it runs. */
  get failure(): string | null {
    return this.dead;
  }

  submit(m: Omit<SubmitMsg, 'type' | 'id'>, l: JobListener): number {
    const id = this.nextId++;
    this.jobs.set(id, l);
    this.worker.postMessage({ type: 'submit', id, ...m } satisfies SubmitMsg);
    return id;
  }

  cancel(id: number, reason: CancelMsg['reason']): void {
    if (this.jobs.has(id)) this.worker.postMessage({ type: 'cancel', id, reason } satisfies CancelMsg);
  }

  async terminate(): Promise<void> {
    this.dead ??= 'terminated';
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
  }
}

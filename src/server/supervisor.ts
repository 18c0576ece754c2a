/**
 * A worker thread that is restarted when it dies. The server runs two (engine.ts: the model and the scheduler;
 * tokenizer.ts: prompts → token ids); neither may take the HTTP thread down with it, and neither may leave the
 * server answering "ok" while nothing runs behind it.
 *
 * Lifecycle: `starting` (the first load; if it fails the server does not start) → `running` (the worker sent its
 * ready message) → on exit, uncaught error, out-of-memory or a `fatal` message: `restarting` (what the dead worker
 * held is failed through onDeath, a fresh worker is spawned after a short backoff and loads everything again) →
 * `running` again. More than `maxRestarts` deaths within `windowMs` (a crash loop, e.g. a model that no longer
 * loads) → `down`, with the reason, and no further attempts.
 */
import { Worker } from 'node:worker_threads';

export type WorkerState = 'starting' | 'running' | 'restarting' | 'down';

export interface RestartLimits {
  /** Deaths tolerated within `windowMs`; one more and the worker stays down. */
  readonly max: number;
  readonly windowMs: number;
}

export const DEFAULT_RESTART_LIMITS: RestartLimits = { max: 5, windowMs: 60_000 };

/** Delay before the k-th quick restart (k = deaths inside the window): 200 ms, 400 ms, … capped at 5 s. */
const backoffMs = (k: number): number => Math.min(200 * 2 ** Math.max(k - 1, 0), 5_000);

export interface SupervisorHooks<Out, Ready> {
  /** A ready message (first start and every restart). */
  onReady(m: Ready): void;
  /** Every other message of the live worker. */
  onMessage(m: Out): void;
  /** The live worker is gone (state already updated: `restarting` or `down`); fail whatever it held. */
  onDeath(why: string): void;
  /** A restart was scheduled. */
  onRestart(): void;
}

export class SupervisedWorker<In, Out extends { readonly type: string }, Ready extends Out> {
  private worker: Worker | null = null;
  private generation = 0;
  private everReady = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly deaths: number[] = [];
  private stateValue: WorkerState = 'starting';
  private reasonValue: string | null = null;
  private resolveFirst!: (m: Ready) => void;
  private rejectFirst!: (e: Error) => void;
  /** Resolves with the first ready message; rejects when the first load fails (the server then does not start). */
  readonly firstReady: Promise<Ready>;

  constructor(
    private readonly name: string,
    private readonly file: URL,
    private readonly data: unknown,
    private readonly limits: RestartLimits,
    private readonly hooks: SupervisorHooks<Out, Ready>,
  ) {
    this.firstReady = new Promise<Ready>((resolve, reject) => {
      this.resolveFirst = resolve;
      this.rejectFirst = reject;
    });
    this.spawn();
  }

  get state(): WorkerState {
    return this.stateValue;
  }

  /** Why the worker is restarting or down; null while it runs. */
  get reason(): string | null {
    return this.reasonValue;
  }

  /** Sends to the live worker; false when none runs (the caller answers 503). */
  post(m: In): boolean {
    if (this.stateValue !== 'running' || !this.worker) return false;
    this.worker.postMessage(m);
    return true;
  }

  async terminate(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.stateValue = 'down';
    this.reasonValue ??= 'terminated';
    const w = this.worker;
    this.worker = null;
    this.generation++;
    if (w) await w.terminate();
  }

  private spawn(): void {
    this.timer = null;
    if (this.stopped) return;
    const gen = ++this.generation;
    // --input-type / --eval flags of the parent make no sense for a worker file (and Node rejects them there).
    const execArgv = process.execArgv.filter((a) => !/^--(input-type|eval|print)\b|^-[ep]$/.test(a));
    const w = new Worker(this.file, { workerData: this.data, execArgv });
    this.worker = w;
    w.on('message', (m: Out) => {
      if (gen !== this.generation) return;
      if (m.type === 'ready') {
        this.stateValue = 'running';
        this.reasonValue = null;
        if (!this.everReady) {
          this.everReady = true;
          this.resolveFirst(m as Ready);
        }
        this.hooks.onReady(m as Ready);
      } else if (m.type === 'fatal') {
        this.died((m as unknown as { message: string }).message);
        void w.terminate();
      } else {
        this.hooks.onMessage(m);
      }
    });
    // An uncaught exception or an out-of-memory error arrives as 'error' (then 'exit'); process.exit() as 'exit'.
    w.on('error', (e: Error) => gen === this.generation && this.died(`${e.name === 'Error' ? '' : e.name + ': '}${e.message}`.split('\n')[0]));
    w.on('exit', (code) => gen === this.generation && this.died(`it exited with code ${code}`));
  }

  private died(why: string): void {
    this.generation++; // later events of the dead worker are ignored
    this.worker = null;
    if (this.stopped) return;
    const text = `the ${this.name} worker stopped: ${why}`;
    if (!this.everReady) {
      this.stateValue = 'down';
      this.reasonValue = text;
      this.rejectFirst(new Error(why));
      return;
    }
    const now = Date.now();
    this.deaths.push(now);
    while (this.deaths.length > 0 && now - this.deaths[0] > this.limits.windowMs) this.deaths.shift();
    if (this.deaths.length > this.limits.max) {
      this.stateValue = 'down';
      this.reasonValue = `${text} (${this.deaths.length} failures within ${Math.round(this.limits.windowMs / 1000)} s; not restarting)`;
      this.hooks.onDeath(text);
      return;
    }
    this.stateValue = 'restarting';
    this.reasonValue = text;
    this.hooks.onDeath(text);
    this.hooks.onRestart();
    this.timer = setTimeout(() => this.spawn(), backoffMs(this.deaths.length));
  }
}

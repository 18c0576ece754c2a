/**
 * The terminal's live denoising view: the generated region redrawn after every step, masks shown as dim blocks,
 * the end of text / end of turn as a dim ∎ and other special tokens dim, tokens committed this step highlighted,
 * recomputed rows (with acceleration) underlined, and a progress bar with the backend and its threads. Also the
 * weight-loading progress bar. Writes only to the stream it is given (stderr), so stdout stays clean for the answer.
 */
import type { StepEvent } from '../engine/generate.js';
import type { Pipeline } from '../engine/pipeline.js';
import { formatBytes } from '../load/files.js';

const DIM = (s: string) => `\x1b[2m${s}\x1b[22m`;
const MASK = DIM('░');
/** An end token (end of text, end of turn): the answer stops there. */
export const END_MARK = '∎';
const NEW = (s: string) => `\x1b[7m${s}\x1b[27m`;
const RECOMPUTED = (s: string) => `\x1b[4m${s}\x1b[24m`;

/** A canvas cell: what is drawn and how many columns it takes. */
interface Cell {
  readonly text: string;
  readonly width: number;
}

export interface LiveViewOptions {
  /** Kernel threads the backend runs, shown next to the backend's name on the progress line. */
  readonly threads?: number;
}

export class LiveView {
  private lines = 0;
  private readonly cache = new Map<number, Cell>();

  constructor(private readonly p: Pipeline, private readonly out: Pick<NodeJS.WriteStream, 'write' | 'columns'>, private readonly opts: LiveViewOptions = {}) {}

  private cell(id: number): Cell {
    let c = this.cache.get(id);
    if (c === undefined) {
      const ids = this.p.ids;
      if (id === ids.eos || id === ids.eot) {
        c = { text: DIM(END_MARK), width: 1 };
      } else {
        const s = this.p.tokenizer.decode([id], { skipSpecialTokens: false }).replace(/\n/g, '↵').replace(/[\x00-\x1f\x7f]/g, ' ');
        const special = id === ids.pad || id === ids.bos || this.p.tokenizer.isSpecial(id);
        c = { text: special ? DIM(s) : s, width: [...s].length };
      }
      this.cache.set(id, c);
    }
    return c;
  }

  step(ev: StepEvent): void {
    const seq = ev.sequences[0];
    const fresh = new Set(seq.committed);
    const recomputed = new Set<number>();
    const rec = ev.accel?.recomputed?.[0];
    if (rec) for (const r of rec) recomputed.add(r);
    let body = '';
    let visible = 0;
    for (let i = 0; i < seq.canvas.length; i++) {
      const id = seq.canvas[i];
      if (id === this.p.ids.mask) {
        body += MASK;
        visible += 1;
        continue;
      }
      const c = this.cell(id);
      visible += c.width;
      body += fresh.has(i) ? NEW(c.text) : recomputed.has(i) ? RECOMPUTED(c.text) : c.text;
    }
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const done = ev.step + 1;
    const barW = Math.max(10, Math.min(40, width - 50));
    const fill = Math.round((done / ev.maxSteps) * barW);
    const threads = this.opts.threads !== undefined ? `, ${this.opts.threads} thread${this.opts.threads === 1 ? '' : 's'}` : '';
    const bar = `[${'█'.repeat(fill)}${' '.repeat(barW - fill)}] step ${done}/${ev.maxSteps} · ${this.p.model.backend.name}${threads}`;
    this.clear();
    this.out.write(body + '\n' + bar + '\n');
    this.lines = Math.ceil(Math.max(1, visible) / width) + Math.ceil(Math.max(1, [...bar].length) / width);
  }

  private clear(): void {
    if (this.lines > 0) this.out.write(`\x1b[${this.lines}F\x1b[J`);
  }

  /** Leave the final canvas on screen. */
  finish(): void {
    this.lines = 0;
  }
}

export interface LoadBarOptions {
  /** Draw a bar (a terminal). */
  readonly tty: boolean;
  /** Print one summary line when done. */
  readonly verbose: boolean;
  /** Draw only once the load has taken this long (default 1 s: quick loads stay silent). */
  readonly afterMs?: number;
}

/**
 * Progress of reading the weights (loadModel's onProgress): on a terminal a bar, drawn once the load takes over a
 * second and erased when it ends; with `verbose`, one line with the bytes and the time when done.
 */
export class LoadBar {
  private readonly t0 = performance.now();
  private last = -Infinity;
  private drawn = false;
  private total = 0;
  private ms = 0;

  constructor(private readonly out: Pick<NodeJS.WriteStream, 'write'>, private readonly opts: LoadBarOptions) {}

  /** The loadModel progress callback. */
  readonly update = (done: number, total: number): void => {
    const now = performance.now();
    this.total = total;
    this.ms = now - this.t0;
    if (!this.opts.tty || this.ms < (this.opts.afterMs ?? 1000)) return;
    if (done < total && now - this.last < 100) return;
    this.last = now;
    const w = 30;
    const f = total > 0 ? Math.round((done / total) * w) : w;
    this.out.write(`\rloading weights [${'#'.repeat(f)}${'.'.repeat(w - f)}] ${formatBytes(done)} / ${formatBytes(total)}\x1b[K`);
    this.drawn = true;
  };

  finish(): void {
    if (this.drawn) this.out.write('\r\x1b[K');
    if (this.opts.verbose) this.out.write(`dyllm: read ${formatBytes(this.total)} of weights in ${(this.ms / 1000).toFixed(2)} s\n`);
  }
}

/**
 * The terminal's live denoising view: the generated region redrawn after every step, masks shown as dim blocks,
 * tokens committed this step highlighted, recomputed rows (with acceleration) underlined, and a progress bar.
 * Writes only to the stream it is given (stderr), so stdout stays clean for the answer.
 */
import type { StepEvent } from '../engine/generate.js';
import type { Pipeline } from '../engine/pipeline.js';

const MASK = '\x1b[2m░\x1b[22m';
const NEW = (s: string) => `\x1b[7m${s}\x1b[27m`;
const RECOMPUTED = (s: string) => `\x1b[4m${s}\x1b[24m`;

export class LiveView {
  private lines = 0;
  private readonly cache = new Map<number, string>();

  constructor(private readonly p: Pipeline, private readonly out: NodeJS.WriteStream) {}

  private piece(id: number): string {
    let s = this.cache.get(id);
    if (s === undefined) {
      s = this.p.tokenizer.decode([id], { skipSpecialTokens: false }).replace(/\n/g, '↵').replace(/[\x00-\x1f]/g, ' ');
      if (id === this.p.ids.eos || id === this.p.ids.eot) s = '·';
      this.cache.set(id, s);
    }
    return s;
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
      let s = this.piece(id);
      visible += s.length;
      if (fresh.has(i)) s = NEW(s);
      else if (recomputed.has(i)) s = RECOMPUTED(s);
      body += s;
    }
    const width = Math.max(20, (this.out.columns ?? 80) - 1);
    const done = ev.step + 1;
    const barW = Math.max(10, Math.min(40, width - 30));
    const fill = Math.round((done / ev.maxSteps) * barW);
    const bar = `[${'█'.repeat(fill)}${' '.repeat(barW - fill)}] step ${done}/${ev.maxSteps}`;
    this.clear();
    this.out.write(body + '\n' + bar + '\n');
    this.lines = Math.ceil(Math.max(1, visible) / width) + 1;
  }

  private clear(): void {
    if (this.lines > 0) this.out.write(`\x1b[${this.lines}F\x1b[J`);
  }

  /** Leave the final canvas on screen. */
  finish(): void {
    this.lines = 0;
  }
}

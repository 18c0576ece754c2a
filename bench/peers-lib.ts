/**
 * Pure pieces of `npm run bench:peers` (bench/peers.ts): how LLaDA generate.py settings map onto
 * llama-diffusion-cli's flags, reading its output, and the markdown / SVG report. No I/O here.
 *
 * llama-diffusion-cli (examples/diffusion in llama.cpp) facts this relies on:
 * - the canvas length is `-ub` (n_ubatch): prompt + generated tokens;
 * - block schedule (`--diffusion-block-length B`): it asserts ub % B == 0 and steps % (ub / B) == 0, then runs
 *   ub / B blocks of steps / (ub / B) steps each, block b covering [P + b·B, P + (b+1)·B) — the blocks are counted
 *   over the whole canvas but start at the prompt's end, so the last P / B blocks lie past the canvas: each costs
 *   one forward pass (it decodes before noticing the block has no masks) and commits nothing;
 * - per block it commits get_num_transfer_tokens(masks in block, steps per block) tokens per step, as generate.py;
 * - its sampler chain always ends in a `dist` sampler, which draws from the softmax even at --temp 0. Greedy needs
 *   --top-k 1, and then every candidate's probability is 1, so all confidences tie and it commits the leftmost
 *   masked positions of the block first. LLaDA's low-confidence order is therefore not reproducible; the token
 *   checks use schedules where the order cannot matter (one token per block, or a whole block per step);
 * - it prints "total time: X ms" for the denoising loop, then the generated text (control tokens dropped).
 */

export interface LlamaSchedule {
  /** -ub / -b / -c: the canvas. */
  readonly ub: number;
  /** --diffusion-steps. */
  readonly steps: number;
  /** Forward passes spent on the empty blocks past the canvas. */
  readonly emptyBlockDecodes: number;
}

/**
 * The llama-diffusion-cli schedule equal to LLaDA generate.py with prompt P, gen G, block B and `steps` total
 * steps (steps per block = steps ÷ (G ÷ B)). Throws with the reason when llama.cpp cannot express it.
 */
export function llamaSchedule(P: number, G: number, B: number, steps: number): LlamaSchedule {
  if (G % B !== 0) throw new Error(`gen ${G} is not a multiple of block ${B} (generate.py requires it)`);
  const blocks = G / B;
  if (steps % blocks !== 0) throw new Error(`steps ${steps} is not a multiple of the ${blocks} blocks (generate.py requires it)`);
  if (P % B !== 0) {
    throw new Error(`prompt length ${P} is not a multiple of block ${B}: llama-diffusion-cli counts blocks over prompt + gen and needs the canvas to be whole blocks`);
  }
  const perBlock = steps / blocks;
  const ub = P + G;
  return { ub, steps: perBlock * (ub / B), emptyBlockDecodes: P / B };
}

export interface LlamaOutput {
  readonly loopMs: number;
  readonly text: string;
  /** false when the answer's message is missing after the loop time (see `theirs` in bench/peers.ts) */
  readonly complete: boolean;
}

const LOG_PREFIX = /^\d+\.\d+\.\d+\.\d+ [IWEDT] /;

/**
 * Reads llama-diffusion-cli's log stream (it logs everything, the answer included, on stderr; each message may
 * carry a "0.13.914.204 I " timestamp prefix): the loop time and the generated text printed after it as "\n%s\n".
 * The text may span lines; trailing log messages after it (prefixed lines) are not part of it. Throws when there is
 * no loop time at all.
 */
export function parseLlamaOutput(out: string): LlamaOutput {
  const m = /total time: ([0-9.]+)ms, time per step: [0-9.]+ms, sampling time per step: [0-9.]+ms\n/.exec(out);
  if (!m) throw new Error('no "total time: ... ms" line in llama-diffusion-cli output (did the generation run?)');
  const lines = out.slice(m.index + m[0].length).split('\n');
  // the answer's message starts with its own (possibly prefixed) empty first line, and ends with "\n"
  const complete = lines.length >= 2 && /^(\d+\.\d+\.\d+\.\d+ [IWEDT] )?$/.test(lines[0]);
  if (!complete) return { loopMs: Number(m[1]), text: '', complete };
  lines.shift();
  // a log message after it starts with a prefix (splitting consumed the newline before it); at the end of the
  // output the answer's final newline leaves a last ''
  let end = lines.findIndex((l) => LOG_PREFIX.test(l));
  if (end < 0) end = lines[lines.length - 1] === '' ? lines.length - 1 : lines.length;
  return { loopMs: Number(m[1]), text: lines.slice(0, end).join('\n'), complete };
}

/** Prompt text for a GGUF written with `tools/hf_to_gguf.py --vocab ids`: token i is "[t<i>]". */
export function idPrompt(ids: readonly number[]): string {
  return ids.map((i) => `[t${i}]`).join('');
}

/** The ids spelled by an `--vocab ids` answer; throws when the text is anything else. */
export function parseIdText(text: string): number[] {
  const ids: number[] = [];
  const re = /\[t(\d+)\]/y;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) throw new Error(`expected only [t<id>] tokens in the answer, found ${JSON.stringify(text.slice(pos, pos + 20))} at offset ${pos}`);
    ids.push(Number(m[1]));
    pos = re.lastIndex;
  }
  return ids;
}

export interface Agreement {
  readonly identical: boolean;
  readonly same: number;
  readonly total: number;
  /** First index where they differ, with both tokens (undefined when one side is shorter). */
  readonly first: { index: number; ours: number | undefined; theirs: number | undefined } | null;
}

export function compareTokens(ours: readonly number[], theirs: readonly number[]): Agreement {
  const n = Math.max(ours.length, theirs.length);
  let same = 0;
  let first: Agreement['first'] = null;
  for (let i = 0; i < n; i++) {
    if (ours[i] === theirs[i]) same++;
    else if (!first) first = { index: i, ours: ours[i], theirs: theirs[i] };
  }
  return { identical: first === null, same, total: n, first };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

// ---------------------------------------------------------------- report

export interface TimedRow {
  readonly engine: string; // "dyllm dense", "dyllm DyLLM", "llama.cpp bf16", ...
  readonly loopMs: number;
  readonly wallMs: number;
  readonly peakRssKb: number;
  readonly tokensPerS: number;
  readonly note?: string;
}

export interface TimedGroup {
  readonly model: string;
  readonly P: number;
  readonly G: number;
  readonly steps: number;
  readonly block: number;
  readonly rows: readonly TimedRow[];
}

const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '–');

/** Per group: every engine's numbers, then dyllm ÷ llama.cpp (bf16) ratios. */
export function markdownReport(groups: readonly TimedGroup[], baseline = 'llama.cpp bf16'): string {
  const out: string[] = [];
  out.push('| model | P | gen | engine | loop s | tokens/s | whole process s | peak RSS MiB |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const g of groups) {
    for (const r of g.rows) {
      out.push(`| ${g.model} | ${g.P} | ${g.G} | ${r.engine}${r.note ? ` (${r.note})` : ''} | ${f(r.loopMs / 1000)} | ${f(r.tokensPerS)} | ${f(r.wallMs / 1000)} | ${f(r.peakRssKb / 1024, 0)} |`);
    }
  }
  out.push('');
  out.push(`Ratios against ${baseline} (same bf16 weights; every llama.cpp bf16 variant measured gets its own line): a tokens/s ratio above 1 and a whole-process time ratio below 1 mean dyllm is faster.`);
  out.push('');
  out.push('| model | gen | against | dense ÷ llama.cpp tokens/s | DyLLM ÷ llama.cpp tokens/s | dense ÷ llama.cpp whole-process time | DyLLM ÷ llama.cpp whole-process time | dense ÷ llama.cpp peak RSS |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const g of groups) {
    const dense = g.rows.find((r) => r.engine === 'dyllm dense');
    const dy = g.rows.find((r) => r.engine === 'dyllm DyLLM');
    for (const base of g.rows.filter((r) => r.engine.startsWith(baseline))) {
      const tr = (r: TimedRow | undefined) => (r ? `${f(r.tokensPerS / base.tokensPerS)}×` : '–');
      const wr = (r: TimedRow | undefined) => (r ? `${f(r.wallMs / base.wallMs)}` : '–');
      out.push(`| ${g.model} | ${g.G} | ${base.engine} | ${tr(dense)} | ${tr(dy)} | ${wr(dense)} | ${wr(dy)} | ${dense ? f(dense.peakRssKb / base.peakRssKb) : '–'} |`);
    }
  }
  // dyllm's own quantised weights against llama.cpp's of the same kind (rows present only with --ours-quant)
  const pairs = [['dyllm int8 dense', 'llama.cpp Q8_0'], ['dyllm q4 dense', 'llama.cpp Q4_0']] as const;
  const quantRows: string[] = [];
  for (const g of groups) {
    for (const [ours, theirs] of pairs) {
      const a = g.rows.find((r) => r.engine === ours);
      const b = g.rows.find((r) => r.engine === theirs);
      if (a && b) quantRows.push(`| ${g.model} | ${g.G} | ${ours} ÷ ${theirs} | ${f(a.tokensPerS / b.tokensPerS)}× | ${f(a.wallMs / b.wallMs)} | ${f(a.peakRssKb / b.peakRssKb)} |`);
    }
  }
  if (quantRows.length) {
    out.push('', 'Quantised weights, each engine its own format (dyllm int8: per-channel scales; q4: group 32, LM head int8 — docs/quantization.md):', '');
    out.push('| model | gen | pair | tokens/s ratio | whole-process time ratio | peak RSS ratio |', '|---|---|---|---|---|---|', ...quantRows);
  }
  return out.join('\n') + '\n';
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Horizontal bars of tokens/s ÷ the baseline's (log scale), one band per (model, gen), absolute tokens/s as labels.
 */
export function svgReport(groups: readonly TimedGroup[], title: string, baseline = 'llama.cpp bf16'): string {
  const colors: Record<string, string> = {
    'dyllm dense': '#4c78a8', 'dyllm DyLLM': '#1f4e8c', 'llama.cpp bf16': '#e45756', 'llama.cpp Q8_0': '#f58518', 'llama.cpp Q4_0': '#eeca3b', 'llama.cpp bf16, default OpenMP wait': '#b279a2', 'dyllm int8 dense': '#72b7b2', 'dyllm q4 dense': '#54a24b',
  };
  const bars: { label: string; engine: string; ratio: number; tps: number; band: number }[] = [];
  groups.forEach((g, band) => {
    const base = g.rows.find((r) => r.engine === baseline);
    for (const r of g.rows) {
      bars.push({ label: `${g.model}, gen ${g.G}`, engine: r.engine, ratio: base ? r.tokensPerS / base.tokensPerS : NaN, tps: r.tokensPerS, band });
    }
  });
  const finite = bars.map((b) => b.ratio).filter((x) => Number.isFinite(x) && x > 0);
  const lo = Math.min(0.25, ...finite.map((x) => x / 1.5));
  const hi = Math.max(4, ...finite.map((x) => x * 1.5));
  const left = 230;
  const width = 520;
  const rowH = 18;
  const bandGap = 14;
  const top = 50;
  const x = (v: number) => left + ((Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * width;
  let y = top;
  const parts: string[] = [];
  let lastBand = -1;
  for (const b of bars) {
    if (b.band !== lastBand) {
      if (lastBand >= 0) y += bandGap;
      parts.push(`<text x="8" y="${y + 13}" font-weight="bold">${esc(b.label)}</text>`);
      y += rowH;
      lastBand = b.band;
    }
    const c = colors[b.engine] ?? '#888';
    parts.push(`<text x="20" y="${y + 13}">${esc(b.engine)}</text>`);
    if (Number.isFinite(b.ratio) && b.ratio > 0) {
      const x0 = x(lo);
      parts.push(`<rect x="${x0}" y="${y + 3}" width="${Math.max(1, x(b.ratio) - x0).toFixed(1)}" height="${rowH - 6}" fill="${c}"/>`);
      parts.push(`<text x="${(x(b.ratio) + 4).toFixed(1)}" y="${y + 13}">${f(b.ratio)}× (${f(b.tps)} tok/s)</text>`);
    } else {
      parts.push(`<text x="${left}" y="${y + 13}">failed / skipped</text>`);
    }
    y += rowH;
  }
  const h = y + 40;
  const ticks = [1 / 32, 1 / 16, 1 / 8, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64].filter((t) => t >= lo && t <= hi);
  const axis = ticks.map((t) => `<line x1="${x(t).toFixed(1)}" y1="${top - 4}" x2="${x(t).toFixed(1)}" y2="${y}" stroke="${t === 1 ? '#000' : '#ddd'}"/>` +
    `<text x="${x(t).toFixed(1)}" y="${y + 16}" text-anchor="middle">${t < 0.25 ? `1/${1 / t}` : t}×</text>`).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 160}" height="${h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="8" y="20" font-size="14" font-weight="bold">${esc(title)}</text>
<text x="8" y="38" fill="#555">tokens/s ÷ ${esc(baseline)} (log scale; right of the black line = faster than llama.cpp on the same bf16 weights)</text>
${axis}
${parts.join('\n')}
</svg>
`;
}

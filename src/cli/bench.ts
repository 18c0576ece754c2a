/**
 * `dyllm bench`: every registered acceleration method (engine/accel/, each method's benchRows), dense first, on the
 * same problems in one run, with and without parallel decoding and at several steps-per-token points: the paper's
 * accuracy/throughput table (§11.1) on any model, as markdown, SVG and JSON.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../load/errors.js';
import { resolveOptions, type GenerateOptions, type GenerateOptionsInput } from '../engine/options.js';
import { ACCEL_OPTIONS, type AccelOptionsInput } from '../engine/accel.js';
import { accelMethods } from '../engine/accel/registry.js';
import { optionHelp } from '../engine/schema.js';
import { familyOf } from '../families/registry.js';
import { requestFor, runEval, type EvalInfo, type EvalInputs, type EvalMethod, type EvalSummary } from '../eval/tasks.js';
import { GENERATION_HELP, UsageError, flagConfig, generationFlagConfig, generationOptions, optionsFromFlags, parse } from './args.js';
import { QUEUE_FLAGS, QUEUE_HELP } from '../queue/flags.js';
import { COMMON_FLAGS, COMMON_HELP, common, evalInputs, info, intFlag, progressBar, queued, r3 } from './eval.js';

const BENCH_ACCEL = ACCEL_OPTIONS.filter((o) => o.key !== 'method' && o.key !== 'threshold');

const BENCH_HELP = `Usage: dyllm bench --tasks FILE [options]

Runs dense, DyLLM (τ 0.99, 0.995), Fast-dLLM prefix and dual cache, and dLLM-Cache on the same problems in one
run, each with and without parallel decoding; prints a markdown table and writes it with an accuracy/throughput
SVG and the JSON to a fresh folder. Accuracy is lm-eval gsm8k's flexible-extract; strict-match is beside it.

${COMMON_HELP}
  --out DIR               write bench.md, bench.svg and bench.json to DIR, which must be new or empty (default: a
                          new bench-results/<timestamp>/ in the current folder)
  --force                 let --out DIR be a folder that holds files (bench.* there are overwritten)
  --parallel-threshold C  confidence threshold of the parallel rows (default 0.9)
  --steps-per-token LIST  e.g. 1,2,4: add n_u points (steps = gen length / n_u) for every method
  --no-parallel           skip the parallel-decoding rows
  --json                  print the results as one JSON object instead of the table
${QUEUE_HELP}
${GENERATION_HELP}
Acceleration knobs applied to every method:
${optionHelp(BENCH_ACCEL)}`;

interface BenchRow extends EvalSummary {
  readonly group: string;
  readonly parallel: boolean;
  readonly nu: number;
  readonly speedup: number;
  readonly identical: number;
}

/** One row of the bench matrix: the method, its group and setting, and which row is its dense reference. */
export interface BenchMethod extends EvalMethod {
  readonly group: string;
  readonly parallel: boolean;
  readonly nu: number;
  /** Index of the dense row of the same n_u and decoding mode (itself for a dense row). */
  readonly dense: number;
}

/** The bench's method matrix, every method's options checked against the model before anything runs. */
export function benchMethods(values: Record<string, unknown>, model: EvalInputs['model']): { methods: BenchMethod[]; base: GenerateOptions } {
  const gen = generationOptions(values);
  const knobs = optionsFromFlags(values, BENCH_ACCEL) as AccelOptionsInput;
  const pt = gen.parallelThreshold ?? 0.9;
  delete gen.parallelThreshold;
  const nus = typeof values['steps-per-token'] === 'string'
    ? values['steps-per-token'].split(',').map((x) => intFlag('steps-per-token', x.trim(), 1)!)
    : [1];
  const base = resolveOptions(model.config, gen, model.generation);
  // The registered methods' comparison rows, dense first (the speed-up reference).
  const kinds: [string, AccelOptionsInput][] = accelMethods().flatMap((m) => (m.benchRows ?? []).map((r): [string, AccelOptionsInput] => [r.name, { ...r.options, method: m.name }]));
  const methods: BenchMethod[] = [];
  for (const nu of nus) {
    if (base.genLength % nu !== 0) throw new UsageError(`--steps-per-token: ${nu} does not divide the gen length ${base.genLength}`);
    const steps = base.genLength / nu;
    for (const parallel of nu === 1 && !values['no-parallel'] ? [false, true] : [false]) {
      const dense = methods.length;
      for (const [name, accel] of kinds) {
        const g: GenerateOptionsInput = { ...gen, genLength: base.genLength, steps, blockLength: base.blockLength, ...(parallel ? { parallelThreshold: pt } : {}) };
        if (!familyOf(model.config.arch).usesBlocks) delete g.blockLength;
        const label = `${name}${nu > 1 ? ` n_u=${nu}` : ''}${parallel ? ` +parallel ${pt}` : ''}`;
        const m: BenchMethod = { name: label, gen: g, accel: { ...knobs, ...accel }, group: name, parallel, nu, dense };
        try {
          requestFor(model, m);
        } catch (e) {
          if (e instanceof ConfigError) throw new ConfigError(`${label}: ${e.message}`);
          throw e;
        }
        methods.push(m);
      }
    }
  }
  return { methods, base };
}

function benchRow(m: BenchMethod, s: EvalSummary, dense: EvalSummary): BenchRow {
  let same = 0;
  s.outputs.forEach((o, i) => (same += o.length > 0 && o.length === dense.outputs[i].length && o.every((t, j) => t === dense.outputs[i][j]) ? 1 : 0));
  return { ...s, group: m.group, parallel: m.parallel, nu: m.nu, speedup: s.tokensPerS / dense.tokensPerS, identical: same / s.n };
}

export async function cmdBench(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    ...COMMON_FLAGS, out: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' }, 'steps-per-token': { type: 'string' }, 'no-parallel': { type: 'boolean' },
    ...generationFlagConfig, ...flagConfig(BENCH_ACCEL),
  }, false);
  if (values.help) {
    process.stdout.write(BENCH_HELP + '\n');
    return;
  }
  const inputs = await evalInputs(values);
  const { methods, base } = benchMethods(values, inputs.model);
  const out = outDir(values.out, values.force === true);
  const rows: BenchRow[] = [];
  let backend: string;
  if (values.queue !== undefined) {
    const q = await (await queued()).queuedEval(values, inputs, methods, 'bench');
    backend = q.backend;
    methods.forEach((m, i) => rows.push(benchRow(m, q.summaries[i], q.summaries[m.dense])));
  } else {
    const c = await common(inputs);
    backend = c.p.model.backend.name;
    const summaries: EvalSummary[] = [];
    for (const m of methods) {
      const s = await runEval(c.p, c.tasks, c.style, m, c.batch, progressBar(m.name));
      summaries.push(s);
      rows.push(benchRow(m, s, summaries[m.dense]));
      if (!process.stderr.isTTY) process.stderr.write(`${m.name}: ${(s.accuracy * 100).toFixed(1)}% ${s.tokensPerS.toFixed(1)} tok/s\n`);
      // Written after every row, so an interrupted run keeps what it measured.
      writeOut(out, rows, info(c, backend), base);
    }
  }
  const inf = info(inputs, backend);
  const md = benchMarkdown(rows, inf, base);
  if (values.json) {
    process.stdout.write(JSON.stringify(benchJson(rows, inf, base)) + '\n');
  } else {
    process.stdout.write(md);
  }
  writeOut(out, rows, inf, base);
  process.stderr.write(`dyllm: wrote ${join(out, 'bench.md')}, bench.svg and bench.json\n`);
}

/** The results folder: --out DIR (new or empty, unless --force), else a new bench-results/<UTC timestamp>[-k]/. */
export function outDir(v: unknown, force: boolean, now = new Date()): string {
  if (typeof v === 'string') {
    if (v === '') throw new UsageError('--out: expected a folder, found ""');
    if (existsSync(v)) {
      if (!statSync(v).isDirectory()) throw new UsageError(`--out: expected a folder, found the file ${v}`);
      const n = readdirSync(v).length;
      if (n > 0 && !force) throw new UsageError(`--out: ${v} is not empty (${n} entr${n === 1 ? 'y' : 'ies'}); give a new or empty folder, or add --force to overwrite bench.md, bench.svg and bench.json there`);
    }
    mkdirSync(v, { recursive: true });
    return v;
  }
  if (force) throw new UsageError('--force: only applies to --out DIR; give --out DIR or drop --force');
  const stamp = now.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
  mkdirSync('bench-results', { recursive: true });
  for (let k = 1; k < 1000; k++) {
    const dir = join('bench-results', k === 1 ? stamp : `${stamp}-${k}`);
    try {
      mkdirSync(dir); // not recursive: fails when it exists, so the folder is this run's own
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  throw new UsageError(`--out: bench-results/${stamp}* all exist; give --out DIR`);
}

function benchJson(rows: readonly BenchRow[], inf: EvalInfo, base: GenerateOptions): unknown {
  return {
    backend: inf.backend, n: inf.n, chat: inf.chat, gen_length: base.genLength, block_length: base.blockLength, accuracy_metric: 'flexible-extract',
    rows: rows.map((r) => ({ method: r.method, accuracy: r.accuracy, strict_accuracy: r.strictAccuracy, tokens_per_s: r3(r.tokensPerS), speedup: r3(r.speedup), salient_fraction: r3(r.salientFraction), nfe: r.nfe, identical_to_dense: r.identical, n_u: r.nu, parallel: r.parallel, ...(r.failed ? { failed: r.failed } : {}) })),
  };
}

function writeOut(dir: string, rows: readonly BenchRow[], inf: EvalInfo, base: GenerateOptions): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bench.md'), benchMarkdown(rows, inf, base));
  writeFileSync(join(dir, 'bench.svg'), benchSvg(rows));
  writeFileSync(join(dir, 'bench.json'), JSON.stringify(benchJson(rows, inf, base), null, 2) + '\n');
}

function benchMarkdown(rows: readonly BenchRow[], c: EvalInfo, o: GenerateOptions): string {
  const head = `${c.n} problems, gen ${o.genLength} / block ${o.blockLength}, ${c.chat ? 'chat template' : 'raw template'}${c.fewshot ? `, ${c.fewshot}-shot` : ''}, batch ${c.batch}, backend ${c.backend}; accuracy is lm-eval gsm8k's flexible-extract, strict its strict-match; speed-up and identical outputs are against the dense row of the same n_u / decoding mode.\n\n`;
  const failed = rows.some((r) => r.failed);
  const lines = [`| method | steps | accuracy | strict | tokens/s | speed-up | salient fraction | NFE | identical to dense |${failed ? ' failed |' : ''}`, `|---|---|---|---|---|---|---|---|---|${failed ? '---|' : ''}`];
  for (const r of rows) {
    lines.push(`| ${r.method} | ${o.genLength / r.nu} | ${(r.accuracy * 100).toFixed(1)} % | ${(r.strictAccuracy * 100).toFixed(1)} % | ${r.tokensPerS.toFixed(1)} | ${r.speedup.toFixed(2)}× | ${r.salientFraction.toFixed(3)} | ${r.nfe.toFixed(1)} | ${(r.identical * 100).toFixed(0)} % |${failed ? ` ${r.failed ?? 0} |` : ''}`);
  }
  return head + lines.join('\n') + '\n';
}

const COLORS: Readonly<Record<string, string>> = Object.fromEntries(accelMethods().flatMap((m) => (m.benchRows ?? []).map((r) => [r.name, r.color])));

/** Accuracy (y) against throughput (x), one point per method and setting; hand-written SVG. */
export function benchSvg(rows: readonly { group: string; method: string; tokensPerS: number; accuracy: number; parallel: boolean; nu: number }[]): string {
  const W = 720, H = 480, L = 70, R = 200, T = 30, B = 60;
  const xs = rows.map((r) => r.tokensPerS);
  const ys = rows.map((r) => r.accuracy * 100);
  const xMax = Math.max(...xs) * 1.1 || 1;
  const yMin = Math.max(0, Math.floor((Math.min(...ys) - 5) / 10) * 10);
  const yMax = Math.min(100, Math.ceil((Math.max(...ys) + 2) / 10) * 10);
  const px = (x: number) => L + (x / xMax) * (W - L - R);
  const py = (y: number) => T + (1 - (y - yMin) / Math.max(1e-9, yMax - yMin)) * (H - T - B);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  for (let i = 0; i <= 5; i++) {
    const x = (xMax / 5) * i;
    out.push(`<line x1="${px(x)}" y1="${T}" x2="${px(x)}" y2="${H - B}" stroke="#eee"/><text x="${px(x)}" y="${H - B + 16}" text-anchor="middle">${x.toFixed(0)}</text>`);
    const y = yMin + ((yMax - yMin) / 5) * i;
    out.push(`<line x1="${L}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#eee"/><text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${y.toFixed(0)}</text>`);
  }
  out.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 20}" text-anchor="middle">throughput (generated tokens/s)</text>`);
  out.push(`<text transform="translate(18 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">accuracy (%)</text>`);
  // Lines through each method's n_u points (no parallel), as in the paper's scalability figure.
  const groups = [...new Set(rows.map((r) => r.group))];
  for (const g of groups) {
    const pts = rows.filter((r) => r.group === g && !r.parallel).sort((a, b) => a.nu - b.nu);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${COLORS[g] ?? '#000'}" stroke-opacity="0.5" points="${pts.map((r) => `${px(r.tokensPerS).toFixed(1)},${py(r.accuracy * 100).toFixed(1)}`).join(' ')}"/>`);
  }
  for (const r of rows) {
    const x = px(r.tokensPerS).toFixed(1);
    const y = py(r.accuracy * 100).toFixed(1);
    const col = COLORS[r.group] ?? '#000';
    out.push(r.parallel
      ? `<rect x="${+x - 5}" y="${+y - 5}" width="10" height="10" fill="none" stroke="${col}" stroke-width="2"><title>${esc(r.method)}</title></rect>`
      : `<circle cx="${x}" cy="${y}" r="5" fill="${col}"><title>${esc(r.method)}</title></circle>`);
    if (r.nu > 1) out.push(`<text x="${+x + 7}" y="${+y - 6}" font-size="10" fill="${col}">n_u=${r.nu}</text>`);
  }
  groups.forEach((g, i) => {
    const y = T + 10 + i * 20;
    out.push(`<circle cx="${W - R + 20}" cy="${y}" r="5" fill="${COLORS[g] ?? '#000'}"/><text x="${W - R + 30}" y="${y + 4}">${esc(g)}</text>`);
  });
  const ly = T + 10 + groups.length * 20;
  out.push(`<rect x="${W - R + 15}" y="${ly - 5}" width="10" height="10" fill="none" stroke="#333" stroke-width="2"/><text x="${W - R + 30}" y="${ly + 4}">+ parallel decoding</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}


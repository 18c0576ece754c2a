/**
 * llama.cpp's `llama-diffusion-cli` as a peer in our own benchmark (not a test):
 *
 *   npm run bench:peers -- [--out DIR] [--threads 2] [--gens 64,256] [--block 32] [--repeat 3]
 *                          [--models fixtures,demo,8b-2l,8b-32l] [--seed 1] [--ours-quant int8,q4] [--pack-cache]
 *
 * 1. Builds llama.cpp (bench/peers-build.sh: node-llama-cpp@3.22.1's git bundle, CPU only, cached under
 *    ~/.cache/dyllm/peers) and converts each model with tools/hf_to_gguf.py (GGUFs cached in bench-out/peers-gguf/,
 *    gitignored), plus Q8_0 / Q4_0 with llama-quantize.
 * 2. Correctness before speed: greedy tokens of both engines on the same prompt ids, with schedules where
 *    llama.cpp's commit order equals generate.py's (bench/peers-lib.ts explains why only those), and that llama.cpp
 *    tokenizes the bundled model's prompts to our ids.
 * 3. Timing, one process per run, side by side: dyllm dense and DyLLM (bench/peers-ours.ts) against llama.cpp on
 *    the same bf16 weights (and Q8_0 / Q4_0 for later), same threads, same prompt tokens, gen 64 and 256 with
 *    block 32 and steps = gen. Loop time (each engine's own clock around its denoising loop), whole process (wall
 *    clock, load included) and peak RSS (/usr/bin/time).
 * 4. Writes results.md, results.json, peers.svg and every run's output under a fresh folder
 *    (default bench-out/peers-<date>/), never over an existing one.
 *
 * `--ours-quant int8,q4` adds dyllm's dense runs on its own int8 / q4 weights (quantised at load from the same bf16
 * folder), compared with llama.cpp's Q8_0 / Q4_0. `--pack-cache` loads every dyllm run through the packed-weight cache
 * (docs/loading.md; one untimed run per model and weight format writes it first, in a cache folder under OUT), so
 * the whole-process times show a warm cached load.
 *
 * Models: `fixtures` = token checks only, on the tiny random LLaDA and Dream test fixtures (the Dream path of the
 * converter); `demo` = models/dyllm-demo; `8b-2l` = the synthetic LLaDA-8B-shaped checkpoint of
 * `npm run bench:step -- --synthetic-8b --layers 2` (under /tmp; run that first); `8b-32l` = the same at full
 * depth (16 GB bf16, written here from the 2-layer config) when memory and disk allow, gen 32 only.
 * The seed of the synthetic prompt ids is printed; DYLLM_PEERS_SEED or --seed replays it.
 */
import { spawnSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadPipeline, encodePrompt, type Pipeline } from '../src/engine/pipeline.js';
import { renderChatTemplate } from '../src/load/chat-template.js';
import { syntheticLladaBytes, syntheticLladaDir, syntheticLladaReady, writeSyntheticLlada } from './synthetic-llada.js';
import {
  compareTokens, idPrompt, llamaSchedule, markdownReport, median, parseIdText, parseLlamaOutput, svgReport,
  type Agreement, type TimedGroup, type TimedRow,
} from './peers-lib.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PY = '/usr/bin/python3';

class BenchError extends Error {}
function die(msg: string): never {
  process.stderr.write(`bench:peers: ${msg}\n`);
  process.exit(1);
}
const log = (msg: string) => process.stderr.write(`bench:peers: ${msg}\n`);
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');

// ---------------------------------------------------------------- flags

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        out: { type: 'string' },
        threads: { type: 'string', default: '2' },
        gens: { type: 'string', default: '64,256' },
        block: { type: 'string', default: '32' },
        repeat: { type: 'string', default: '3' },
        models: { type: 'string', default: 'fixtures,demo,8b-2l,8b-32l' },
        seed: { type: 'string', default: process.env.DYLLM_PEERS_SEED ?? '1' },
        'ours-quant': { type: 'string', default: '' },
        'pack-cache': { type: 'boolean', default: false },
      },
    });
  } catch (e) {
    die(`${(e as Error).message} (see the comment at the top of bench/peers.ts)`);
  }
})();
const intFlag = (name: string, v: string, lo: number, hi: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) die(`--${name}: expected an integer in ${lo}..${hi}, found "${v}"`);
  return n;
};
const THREADS = intFlag('threads', values.threads!, 1, 256);
const BLOCK = intFlag('block', values.block!, 1, 1024);
const REPEAT = intFlag('repeat', values.repeat!, 1, 20);
const SEED = intFlag('seed', values.seed!, 0, 2 ** 31 - 1);
const GENS = values.gens!.split(',').map((g) => intFlag('gens', g, 1, 1024));
const OURS_QUANT = values['ours-quant']!.split(',').filter(Boolean) as ('int8' | 'q4')[];
for (const q of OURS_QUANT) if (q !== 'int8' && q !== 'q4') die(`--ours-quant: expected int8 and/or q4, found "${q}"`);
const PACK_CACHE = values['pack-cache']!;
for (const g of GENS) if (g % BLOCK) die(`--gens: ${g} is not a multiple of --block ${BLOCK}`);
const MODELS = values.models!.split(',');
for (const m of MODELS) if (!['fixtures', 'demo', '8b-2l', '8b-32l'].includes(m)) die(`--models: expected fixtures, demo, 8b-2l or 8b-32l, found "${m}"`);

const stamp = new Date().toISOString().slice(0, 16).replace(':', '');
const OUT = resolve(values.out ?? join(ROOT, 'bench-out', `peers-${stamp}`));
if (existsSync(OUT)) die(`${OUT} already exists; results go to a fresh folder (pass --out NEW_DIR or wait a minute)`);
const GGUF_DIR = join(ROOT, 'bench-out', 'peers-gguf');

// ---------------------------------------------------------------- processes

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly wallMs: number;
  readonly peakRssKb: number;
}

/** Runs cmd under /usr/bin/time (peak RSS); stdout/stderr also saved as logs/<name>.{out,err}. */
function timed(name: string, cmd: string, args: readonly string[], env: Record<string, string> = {}, preload?: string): Promise<Run> {
  const rssFile = join(OUT, 'logs', `${name}.rss`);
  return new Promise((done) => {
    const t0 = performance.now();
    // a preloaded library goes to the command only (through env(1)), not to /usr/bin/time
    const argv = preload ? ['env', `LD_PRELOAD=${preload}`, cmd, ...args] : [cmd, ...args];
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, ...argv], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('close', (code) => {
      const wallMs = performance.now() - t0;
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      writeFileSync(join(OUT, 'logs', `${name}.out`), stdout);
      writeFileSync(join(OUT, 'logs', `${name}.err`), stderr);
      let peak = NaN;
      try {
        peak = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
      } catch { /* time did not write it */ }
      done({ code, stdout, stderr, wallMs, peakRssKb: peak });
    });
  });
}

function lastLine(s: string): string {
  const lines = s.trim().split('\n').filter((l) => l.trim());
  return (lines.pop() ?? '').slice(0, 300);
}

// ---------------------------------------------------------------- setup: llama.cpp, python, GGUFs

function buildLlama(): Record<string, string> {
  log('building llama.cpp (cached after the first time; the first build takes minutes on 2 cores)');
  const r = spawnSync('bash', [join(ROOT, 'bench', 'peers-build.sh')], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (r.status !== 0) die('building llama.cpp failed (the line above says why)');
  const kv: Record<string, string> = {};
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv[line.slice(0, i)] = line.slice(i + 1);
  }
  for (const k of ['LLAMA_BIN', 'GGUF_PY', 'LLAMA_COMMIT', 'LOGFLUSH']) if (!kv[k]) die(`bench/peers-build.sh printed no ${k}`);
  return kv;
}

function checkPython(): void {
  const r = spawnSync(PY, ['-c', 'import numpy'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) die(`${PY} with numpy is needed to convert models to GGUF (Debian: apt-get install python3-numpy)`);
}

function fileHash(paths: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of paths) h.update(readFileSync(p));
  return h.digest('hex').slice(0, 16);
}

/** Converts (or reuses) dir -> GGUF; the stamp file records what it was made from. */
function convert(key: string, dir: string, vocab: 'hf' | 'ids', env: Record<string, string>): { path: string; seconds: number | null } {
  const path = join(GGUF_DIR, `${key}-${vocab}-bf16.gguf`);
  const weights = existsSync(join(dir, 'model.safetensors')) ? join(dir, 'model.safetensors') : join(dir, 'model.safetensors.index.json');
  const st = statSync(weights);
  const want = JSON.stringify({
    src: resolve(dir), size: st.size, mtime: st.mtimeMs, llama: env.LLAMA_COMMIT,
    tool: fileHash([join(ROOT, 'tools', 'hf_to_gguf.py'), join(ROOT, 'tools', 'safetensors_io.py')]),
  });
  if (existsSync(path) && existsSync(path + '.stamp') && readFileSync(path + '.stamp', 'utf8') === want) return { path, seconds: null };
  mkdirSync(GGUF_DIR, { recursive: true });
  log(`converting ${dir} -> ${path}`);
  const t0 = performance.now();
  const r = spawnSync(PY, [join(ROOT, 'tools', 'hf_to_gguf.py'), dir, path, '--gguf-py', env.GGUF_PY, '--vocab', vocab, '--prompt-passthrough'], { encoding: 'utf8' });
  if (r.status !== 0) throw new BenchError(`converting ${dir}: ${lastLine(r.stderr) || `exit ${r.status}`}`);
  writeFileSync(path + '.stamp', want);
  return { path, seconds: (performance.now() - t0) / 1000 };
}

function quantize(src: string, type: 'Q8_0' | 'Q4_0', env: Record<string, string>): { path: string; seconds: number | null } {
  const path = src.replace(/-bf16\.gguf$/, `-${type.toLowerCase()}.gguf`);
  const want = readFileSync(src + '.stamp', 'utf8');
  if (existsSync(path) && existsSync(path + '.stamp') && readFileSync(path + '.stamp', 'utf8') === want) return { path, seconds: null };
  log(`quantizing ${src} -> ${type}`);
  const t0 = performance.now();
  const r = spawnSync(join(env.LLAMA_BIN, 'llama-quantize'), [src, path + '.tmp', type, String(THREADS)], { encoding: 'utf8' });
  if (r.status !== 0) throw new BenchError(`llama-quantize ${type}: ${lastLine(r.stderr) || `exit ${r.status}`}`);
  renameSync(path + '.tmp', path);
  writeFileSync(path + '.stamp', want);
  return { path, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------- the two engines

interface Generation {
  readonly tokens: number[] | null; // null when the output cannot be read as ids (hf vocabulary)
  readonly text: string | null;
  readonly loopMs: number;
  readonly run: Run;
}

async function ours(name: string, dir: string, prompt: readonly number[], G: number, steps: number, block: number, accel: 'none' | 'dyllm', quant: 'none' | 'int8' | 'q4' = 'none'): Promise<Generation> {
  const args = [join(ROOT, 'dist', 'bench', 'peers-ours.js'), '--model', dir, '--prompt-ids', prompt.join(','),
    '--gen', String(G), '--steps', String(steps), '--block', String(block), '--accel', accel, '--quant', quant];
  if (PACK_CACHE) args.push('--pack-cache');
  const run = await timed(name, process.execPath, args, { DYLLM_THREADS: String(THREADS), ...(PACK_CACHE ? { DYLLM_CACHE_DIR: join(OUT, 'pack-cache') } : {}) });
  if (run.code !== 0) throw new BenchError(`dyllm ${name}: ${lastLine(run.stderr) || `exit ${run.code}`}`);
  const json = run.stdout.trim().split('\n').pop() ?? '';
  const j = JSON.parse(json) as { tokens: number[]; loop_ms: number };
  return { tokens: j.tokens, text: null, loopMs: j.loop_ms, run };
}

/**
 * llama.cpp's OpenMP build waits at every op's barrier by spinning; on this shared, busy 2-core machine a spinning
 * thread whose partner was preempted burns its time slice, which made the bundled model's steps 10-30× slower
 * than with one thread. OMP_WAIT_POLICY=passive (threads sleep at barriers) is therefore the setting every llama.cpp
 * run uses here; the timing tables add one bf16 run with the default spinning wait to show the difference.
 */
const LLAMA_ENV: Record<string, string> = { OMP_WAIT_POLICY: 'passive' };
let LOGFLUSH = '';
/** How long bench/peers-logflush.c waited at each llama.cpp exit (part of its whole-process time). */
const flushWaitMs: number[] = [];

/**
 * block > 0: LLaDA's block schedule (generate.py settings, mapped by llamaSchedule); block 0: Dream's timestep
 * schedule (eps 1e-3, as Dream's diffusion_generate default) with `steps` steps.
 */
async function theirs(name: string, gguf: string, promptText: string, P: number, G: number, steps: number, block: number, bin: string, idVocab: boolean, env: Record<string, string> = LLAMA_ENV): Promise<Generation & { emptyBlockDecodes: number; retries: number }> {
  const s = block > 0 ? llamaSchedule(P, G, block, steps) : { ub: P + G, steps, emptyBlockDecodes: 0 };
  const args = ['-m', gguf, '-p', promptText, '-t', String(THREADS), '-tb', String(THREADS),
    '-ub', String(s.ub), '-b', String(s.ub), '-c', String(s.ub), '--diffusion-steps', String(s.steps),
    ...(block > 0 ? ['--diffusion-block-length', String(block)] : ['--diffusion-eps', '0.001']),
    '--diffusion-algorithm', '4', '--temp', '0', '--top-k', '1', '--top-p', '1', '--seed', '0'];
  // Its logger is an intentionally leaked singleton with a writer thread (common/log.cpp, common_log_main): when
  // the process exits before that thread has written the last messages, the answer (and sometimes the loop time)
  // is lost although the exit status is 0 — most of the time on this busy machine. bench/peers-logflush.c, preloaded,
  // waits inside exit() until that thread is idle (a few ms, reported); a run that still lost them is repeated.
  for (let attempt = 0; ; attempt++) {
    const run = await timed(attempt ? `${name}-again${attempt}` : name, join(bin, 'llama-diffusion-cli'), args, env, LOGFLUSH);
    if (run.code !== 0) throw new BenchError(`llama.cpp ${name}: ${lastLine(run.stderr) || lastLine(run.stdout) || `exit ${run.code}`}`);
    // it logs everything, the answer included, on stderr; the shim's line comes last
    const flush = /\npeers-logflush: waited (\d+) ms\n/.exec(run.stderr);
    const stderr = flush ? run.stderr.slice(0, flush.index) + run.stderr.slice(flush.index + flush[0].length) : run.stderr;
    const log = stderr.includes('total time:') ? stderr : run.stdout;
    if ((!log.includes('total time:') || !parseLlamaOutput(log).complete) && attempt < 3) {
      process.stderr.write(`bench:peers: ${name}: llama-diffusion-cli exited 0 without its last log lines (lost at exit); running it again\n`);
      continue;
    }
    flushWaitMs.push(flush ? Number(flush[1]) : NaN);
    const o = parseLlamaOutput(log);
    if (!o.complete) throw new BenchError(`llama.cpp ${name}: its answer was lost at exit ${attempt + 1} times in a row`);
    let tokens: number[] | null = null;
    if (idVocab) {
      tokens = parseIdText(o.text);
      if (tokens.length !== G) throw new BenchError(`llama.cpp ${name}: ${tokens.length} tokens came back, expected ${G} (did it see a ${P}-token prompt?)`);
    }
    return { tokens, text: o.text, loopMs: o.loopMs, run, emptyBlockDecodes: s.emptyBlockDecodes, retries: attempt };
  }
}

// ---------------------------------------------------------------- models and prompts

interface ModelCase {
  readonly key: string;
  readonly label: string;
  readonly dir: string;
  readonly gens: readonly number[];
  readonly repeat: number;
  /** the timing prompt: ids and, for the hf GGUF, its text */
  readonly prompt: readonly number[];
  readonly promptText: string | null;
  readonly pipeline: Pipeline | null;
  readonly checkPrompts: readonly { ids: readonly number[]; text: string | null; what: string }[];
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}

function syntheticPrompt(cfg: { mask_token_id: number; embedding_size: number }, P: number): number[] {
  const next = lcg(SEED);
  const limit = Math.min(cfg.mask_token_id, cfg.embedding_size);
  return Array.from({ length: P }, () => next() % limit);
}

async function demoCase(): Promise<ModelCase> {
  const dir = join(ROOT, 'models', 'dyllm-demo');
  const p = await loadPipeline(dir, { backend: 'reference' });
  const qs = readFileSync(join(ROOT, 'data', 'arith-test.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { question: string }).question);
  // Timing prompt: llama-diffusion-cli needs prompt + gen to be whole blocks, so the prompt is a multiple of the
  // block length; no chat-templated question of the test set is (33..55 tokens), the eval's raw format has 32s.
  let timing: { ids: number[]; text: string } | null = null;
  for (const q of qs) {
    const text = `Q: ${q}\nA:`;
    const ids = encodePrompt(p, text, false);
    if (ids.length % BLOCK === 0) {
      timing = { ids, text };
      break;
    }
  }
  if (!timing) throw new BenchError(`no question in data/arith-test.jsonl gives a raw prompt of a multiple of ${BLOCK} tokens`);
  // Token checks: chat-templated questions whose length is a multiple of 8 (the block-8 check needs it).
  const checks: { ids: number[]; text: string; what: string }[] = [];
  for (const q of qs) {
    const text = renderChatTemplate(p.chatTemplate!.template, [{ role: 'user', content: q }], {
      bos_token: p.chatTemplate!.bos_token, eos_token: p.chatTemplate!.eos_token, add_generation_prompt: true,
    });
    const ids = p.tokenizer.encode(text);
    if (ids.length % 8 === 0) checks.push({ ids, text, what: `chat, "${q.slice(0, 40)}…"` });
    if (checks.length === 5) break;
  }
  return { key: 'dyllm-demo', label: 'bundled demo (6 layers, d 320)', dir, gens: GENS, repeat: REPEAT, prompt: timing.ids, promptText: timing.text, pipeline: p, checkPrompts: checks };
}

function syntheticCase(layers: number, gens: readonly number[]): ModelCase {
  const dir = syntheticLladaDir(layers);
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { mask_token_id: number; embedding_size: number };
  const prompt = syntheticPrompt(cfg, BLOCK);
  return {
    key: `synthetic-llada8b-${layers}l`, label: `LLaDA-8B-shaped, ${layers} layers (random weights)`, dir, gens, repeat: 1,
    prompt, promptText: null, pipeline: null, checkPrompts: [{ ids: prompt, text: null, what: `${BLOCK} ids from seed ${SEED}` }],
  };
}

function memAvailableBytes(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** The full-depth synthetic checkpoint, when memory and disk allow; else null and the reason. */
function fullDepth(): { dir: string } | { skip: string } {
  const two = syntheticLladaDir(2);
  const dir = syntheticLladaDir(32);
  const cfg = JSON.parse(readFileSync(join(two, 'config.json'), 'utf8')) as { d_model: number; mlp_hidden_size: number; embedding_size: number };
  const bytes = syntheticLladaBytes(cfg, 32);
  const gib = (b: number) => (b / 2 ** 30).toFixed(1);
  // dyllm keeps the bf16 weights resident (≈ weights + activations); llama.cpp maps the file (page cache).
  const needRam = bytes * 1.1 + 2 * 2 ** 30;
  if (memAvailableBytes() < needRam) return { skip: `needs ≈ ${gib(needRam)} GiB of available memory for ${gib(bytes)} GiB of weights, ${gib(memAvailableBytes())} GiB available` };
  // disk: checkpoint (/tmp) + bf16 GGUF + Q8_0 (≈ 0.53×) + Q4_0 (≈ 0.28×), what is not there yet
  const needTmp = syntheticLladaReady(dir) ? 0 : bytes * 1.01;
  const needGguf = bytes * 1.85;
  const free = (p: string) => { const s = statfsSync(p); return s.bavail * s.bsize; };
  mkdirSync(GGUF_DIR, { recursive: true });
  if (free('/tmp') < needTmp + (free('/tmp') === free(GGUF_DIR) ? needGguf : 0) + 4 * 2 ** 30 || free(GGUF_DIR) < needGguf) {
    return { skip: `needs ≈ ${gib(needTmp + needGguf)} GiB of free disk (/tmp and ${GGUF_DIR}), ${gib(free('/tmp'))} GiB free` };
  }
  if (!syntheticLladaReady(dir)) {
    log(`writing the full-depth synthetic checkpoint (${gib(bytes)} GiB) to ${dir}`);
    writeSyntheticLlada(dir, JSON.parse(readFileSync(join(two, 'config.json'), 'utf8')), readFileSync(join(two, 'generation_config.json')), 32);
  }
  return { dir };
}

/**
 * Converter coverage on the tiny random test fixtures (test/fixtures/llada-tiny, dream-tiny): seeded 12-id
 * prompts, gen 20; LLaDA left to right (block 1), Dream in one step (every position at once: the order cannot
 * matter, and it exercises Dream's shifted logits, NEOX RoPE, q/k/v biases and GQA). Random weights have near-ties,
 * so an isolated flip (or, left to right, a flip and what follows from it) is expected now and then.
 */
async function fixtureChecks(env: Record<string, string>): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const m of ['llada-tiny', 'dream-tiny']) {
    const dir = join(ROOT, 'test', 'fixtures', m);
    let gguf: string;
    try {
      gguf = convert(m, dir, 'ids', env).path;
    } catch (e) {
      out.push({ model: m, check: 'convert', prompt: '', P: 0, G: 0, block: 0, steps: 0, error: (e as Error).message });
      continue;
    }
    const dream = m.startsWith('dream');
    for (let k = 0; k < 8; k++) {
      const next = lcg(SEED * 1000 + k);
      const ids = Array.from({ length: 12 }, () => next() % 290); // below both fixtures' special ids
      const G = 20;
      const [steps, block] = dream ? [1, 0] : [G, 1];
      const r: CheckResult = { model: `${m} (fixture)`, check: dream ? 'one step, all positions at once' : 'block 1 (left to right)', prompt: `12 ids, seed ${SEED * 1000 + k}`, P: 12, G, block, steps };
      try {
        const o = await ours(`${m}-check-${k}-dyllm`, dir, ids, G, steps, block || G, 'none');
        const t = await theirs(`${m}-check-${k}-llama`, gguf, idPrompt(ids), 12, G, steps, block, env.LLAMA_BIN, true);
        r.agreement = compareTokens(o.tokens!, t.tokens!);
      } catch (e) {
        r.error = (e as Error).message;
      }
      out.push(r);
    }
    const rs = out.filter((r) => r.model.startsWith(m));
    log(`fixture ${m}: ${rs.filter((r) => r.agreement?.identical).length}/${rs.length} prompts identical, ${rs.reduce((n, r) => n + (r.agreement?.same ?? 0), 0)}/${rs.reduce((n, r) => n + (r.agreement?.total ?? 0), 0)} tokens`);
  }
  return out;
}

// ---------------------------------------------------------------- main

interface CheckResult {
  model: string;
  check: string;
  prompt: string;
  P: number;
  G: number;
  block: number;
  steps: number;
  agreement?: Agreement;
  textEqual?: boolean;
  ours_text?: string;
  llama_text?: string;
  error?: string;
}

async function main(): Promise<void> {
  mkdirSync(join(OUT, 'logs'), { recursive: true });
  const env = buildLlama();
  LOGFLUSH = env.LOGFLUSH;
  checkPython();
  log(`llama.cpp ${env.LLAMA_COMMIT.slice(0, 12)} (node-llama-cpp ${env.NODE_LLAMA_CPP}), results in ${OUT}`);
  log(`synthetic prompt seed ${SEED} (replay: DYLLM_PEERS_SEED=${SEED})`);

  const cases: ModelCase[] = [];
  const skipped: string[] = [];
  if (MODELS.includes('demo')) cases.push(await demoCase());
  if (MODELS.includes('8b-2l') || MODELS.includes('8b-32l')) {
    if (!syntheticLladaReady(syntheticLladaDir(2))) {
      skipped.push(`LLaDA-8B-shaped models: no ${syntheticLladaDir(2)}; run \`npm run bench:step -- --synthetic-8b --layers 2\` first`);
    } else {
      if (MODELS.includes('8b-2l')) cases.push(syntheticCase(2, GENS));
      if (MODELS.includes('8b-32l')) {
        const fd = fullDepth();
        if ('skip' in fd) skipped.push(`LLaDA-8B-shaped, 32 layers: skipped, ${fd.skip}`);
        else cases.push(syntheticCase(32, [BLOCK]));
      }
    }
  }
  for (const s of skipped) log(s);

  const conversions: Record<string, unknown>[] = [];
  const checks: CheckResult[] = MODELS.includes('fixtures') ? await fixtureChecks(env) : [];
  const groups: TimedGroup[] = [];
  const failures: string[] = [];

  for (const c of cases) {
    let ids: string;
    let timingGguf: string;
    const quants: Record<string, string> = {};
    try {
      const ci = convert(c.key, c.dir, 'ids', env);
      ids = ci.path;
      conversions.push({ model: c.key, vocab: 'ids', file: ci.path, convert_s: ci.seconds });
      if (c.pipeline) {
        const ch = convert(c.key, c.dir, 'hf', env);
        conversions.push({ model: c.key, vocab: 'hf', file: ch.path, convert_s: ch.seconds });
        timingGguf = ch.path;
      } else {
        timingGguf = ids;
      }
      for (const q of ['Q8_0', 'Q4_0'] as const) {
        const r = quantize(timingGguf, q, env);
        quants[q] = r.path;
        conversions.push({ model: c.key, quant: q, file: r.path, quantize_s: r.seconds });
      }
    } catch (e) {
      failures.push((e as Error).message);
      log((e as Error).message);
      continue;
    }

    // ---- correctness: schedules where both engines commit the same positions in the same order
    const modes: { check: string; block: number; steps: (G: number) => number; G: number }[] = c.key.includes('32l')
      ? [{ check: 'block 8, one step per block', block: 8, steps: (G) => G / 8, G: BLOCK }]
      : [
        { check: 'block 1 (left to right, one token per step)', block: 1, steps: (G) => G, G: 64 },
        { check: 'block 8, one step per block (8 tokens per step)', block: 8, steps: (G) => G / 8, G: 64 },
      ];
    for (const m of modes) {
      for (const [pi, cp] of c.checkPrompts.entries()) {
        const P = cp.ids.length;
        const steps = m.steps(m.G);
        const r: CheckResult = { model: c.key, check: m.check, prompt: cp.what, P, G: m.G, block: m.block, steps };
        try {
          const tag = `${c.key}-check-b${m.block}-p${pi}`;
          const o = await ours(`${tag}-dyllm`, c.dir, cp.ids, m.G, steps, m.block, 'none');
          const t = await theirs(`${tag}-llama-ids`, ids, idPrompt(cp.ids), P, m.G, steps, m.block, env.LLAMA_BIN, true);
          r.agreement = compareTokens(o.tokens!, t.tokens!);
          if (c.pipeline && cp.text !== null) {
            // the same run through the model's real tokenizer: llama.cpp tokenizes the rendered prompt itself
            const th = await theirs(`${tag}-llama-hf`, timingGguf, cp.text, P, m.G, steps, m.block, env.LLAMA_BIN, false);
            r.ours_text = c.pipeline.tokenizer.decode(o.tokens!, { skipSpecialTokens: true });
            r.llama_text = th.text ?? '';
            r.textEqual = r.ours_text === r.llama_text;
          }
        } catch (e) {
          r.error = (e as Error).message;
          log(r.error);
        }
        checks.push(r);
        const a = r.agreement;
        log(`check ${c.key} ${m.check}, ${cp.what}: ${r.error ? 'error' : a!.identical ? `identical (${a!.total} tokens)` : `${a!.same}/${a!.total} same, first difference at ${a!.first!.index}: ours ${a!.first!.ours}, llama.cpp ${a!.first!.theirs}`}${r.textEqual === undefined ? '' : r.textEqual ? ', text identical (hf vocab)' : ', TEXT DIFFERS (hf vocab)'}`);
      }
    }

    // ---- tokenization: llama.cpp's tokenizer on the rendered prompts gives our ids (bundled model)
    if (c.pipeline) {
      for (const [pi, cp] of [{ ids: c.prompt, text: c.promptText!, what: 'timing prompt (raw)' }, ...c.checkPrompts].entries()) {
        const r = spawnSync(join(env.LLAMA_BIN, 'llama-tokenize'), ['-m', timingGguf, '-p', cp.text!, '--ids', '--log-disable'], { encoding: 'utf8' });
        let got: number[] = [];
        try {
          got = JSON.parse(lastLine(r.stdout)) as number[];
        } catch { /* reported below */ }
        const a = compareTokens([...cp.ids], got);
        checks.push({ model: c.key, check: 'llama-tokenize == our tokenizer', prompt: cp.what, P: cp.ids.length, G: 0, block: 0, steps: 0, agreement: a, ...(r.status !== 0 ? { error: lastLine(r.stderr) } : {}) });
        log(`tokenize ${c.key} prompt ${pi}: ${a.identical ? 'identical ids' : `differs at ${a.first?.index}`}`);
      }
    }

    // ---- timing
    for (const G of c.gens) {
      const P = c.prompt.length;
      const rows: TimedRow[] = [];
      const prompt = c.promptText ?? idPrompt(c.prompt);
      const engines: { engine: string; run: (name: string) => Promise<Generation & { emptyBlockDecodes?: number }> }[] = [
        { engine: 'dyllm dense', run: (n) => ours(n, c.dir, c.prompt, G, G, BLOCK, 'none') },
        { engine: 'dyllm DyLLM', run: (n) => ours(n, c.dir, c.prompt, G, G, BLOCK, 'dyllm') },
        { engine: 'llama.cpp bf16', run: (n) => theirs(n, timingGguf, prompt, P, G, G, BLOCK, env.LLAMA_BIN, c.promptText === null) },
        { engine: 'llama.cpp Q8_0', run: (n) => theirs(n, quants.Q8_0, prompt, P, G, G, BLOCK, env.LLAMA_BIN, c.promptText === null) },
        { engine: 'llama.cpp Q4_0', run: (n) => theirs(n, quants.Q4_0, prompt, P, G, G, BLOCK, env.LLAMA_BIN, c.promptText === null) },
        ...OURS_QUANT.map((q) => ({ engine: `dyllm ${q} dense`, run: (n: string) => ours(n, c.dir, c.prompt, G, G, BLOCK, 'none', q) })),
      ];
      if (PACK_CACHE) {
        // untimed: write the packed-weight cache of each weight format once, so the timed runs load warm from it
        for (const q of ['none' as const, ...OURS_QUANT]) {
          log(`writing the packed-weight cache of ${c.key} (${q === 'none' ? 'bf16' : q})`);
          await ours(`${c.key}-g${G}-pack-cache-${q}`, c.dir, c.prompt, 1, 1, 1, 'none', q);
        }
      }
      // (skipped where one llama.cpp run takes many minutes: the 8B-shaped model beyond gen 64)
      if (c.pipeline || G <= 64) engines.push({ engine: 'llama.cpp bf16, default OpenMP wait', run: (n) => theirs(n, timingGguf, prompt, P, G, G, BLOCK, env.LLAMA_BIN, c.promptText === null, {}) });
      // interleave the repeats (engine A, B, C, A, B, C, ...) so a busy spell of the shared machine hits all alike
      const got = new Map<string, Generation[]>();
      for (let rep = 0; rep < c.repeat; rep++) {
        for (const e of engines) {
          const name = `${c.key}-g${G}-${e.engine.replace(/[^A-Za-z0-9]+/g, '_')}-r${rep}`;
          log(`timing ${name}`);
          try {
            const g = await e.run(name);
            got.set(e.engine, [...(got.get(e.engine) ?? []), g]);
          } catch (err) {
            failures.push((err as Error).message);
            log((err as Error).message);
          }
        }
      }
      const denseTokens = got.get('dyllm dense')?.[0]?.tokens ?? null;
      for (const e of engines) {
        const gs = got.get(e.engine);
        if (!gs?.length) continue;
        const loopMs = median(gs.map((g) => g.loopMs));
        const first = gs[0] as Generation & { emptyBlockDecodes?: number };
        let note: string | undefined;
        if (first.emptyBlockDecodes) note = `+${first.emptyBlockDecodes} empty-block forward${first.emptyBlockDecodes > 1 ? 's' : ''}`;
        if (first.tokens && denseTokens && e.engine !== 'dyllm dense') {
          const a = compareTokens(denseTokens, first.tokens);
          note = [note, `${a.same}/${a.total} tokens = dense`].filter(Boolean).join('; ');
        } else if (first.text !== null && denseTokens && c.pipeline) {
          const same = first.text === c.pipeline.tokenizer.decode(denseTokens, { skipSpecialTokens: true });
          note = [note, same ? 'same text as dense' : 'other text than dense'].filter(Boolean).join('; ');
        }
        const retried = gs.reduce((n, g) => n + ((g as { retries?: number }).retries ?? 0), 0);
        if (retried) note = [note, `${retried} run${retried > 1 ? 's' : ''} repeated: log lost at exit`].join('; ');
        rows.push({
          engine: e.engine, loopMs, wallMs: median(gs.map((g) => g.run.wallMs)), peakRssKb: median(gs.map((g) => g.run.peakRssKb)),
          tokensPerS: G / (loopMs / 1000), ...(note ? { note } : {}),
        });
      }
      groups.push({ model: c.label, P, G, steps: G, block: BLOCK, rows });
      writeFileSync(join(OUT, 'results.partial.json'), JSON.stringify({ groups, checks }, null, 2));
    }
  }

  // ---------------------------------------------------------------- report
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} logical CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`;
  const checkLines = checks.map((r) => {
    const a = r.agreement;
    const res = r.error ? `error: ${r.error}` : !a ? '–' : a.identical ? `identical (${a.total})` : `${a.same}/${a.total} same; first difference at ${a.first!.index}: ours ${a.first!.ours}, llama.cpp ${a.first!.theirs}`;
    const txt = r.textEqual === undefined ? '' : r.textEqual ? 'identical' : `differs: ours ${JSON.stringify(r.ours_text)}, llama.cpp ${JSON.stringify(r.llama_text)}`;
    return `| ${r.model} | ${r.check} | ${r.prompt} | ${r.P} | ${r.G || ''} | ${res} | ${txt} |`;
  });
  const md = [
    `# bench:peers — dyllm vs llama.cpp llama-diffusion-cli`,
    '',
    `${new Date().toISOString()}, ${machine}, ${THREADS} threads each. llama.cpp ${env.LLAMA_COMMIT.slice(0, 12)} from node-llama-cpp ${env.NODE_LLAMA_CPP}'s bundle, CPU build (GGML_NATIVE). Synthetic prompt seed ${SEED}.${PACK_CACHE ? ' dyllm loads through its packed-weight cache (--pack-cache), written by an untimed run first.' : ''}`,
    '',
    '## Token agreement (greedy, dense; llama.cpp with --top-k 1 on the `--vocab ids` GGUF, so its answer reads back as ids)',
    '',
    '| model | schedule | prompt | P | gen | tokens | text through the real tokenizer |',
    '|---|---|---|---|---|---|---|',
    ...checkLines,
    '',
    `## Timing (greedy, block ${BLOCK}, steps = gen; median of ${REPEAT} runs for the bundled model, 1 for the 8B-shaped ones)`,
    '',
    'llama.cpp runs with --top-k 1 (its only greedy setting), which commits the leftmost masked position of the block each step instead of the most confident one: the same work per step (one forward over the whole canvas), different commit order, so its answers can differ from ours. Its block schedule also spends one forward on each empty block past the canvas (P ÷ block of them), included in its loop time. "loop" is each engine\'s own clock around its denoising loop; "whole process" is the wall clock of the process, loading included. llama.cpp runs with OMP_WAIT_POLICY=passive (its default spinning OpenMP barriers collapse on this busy shared machine); one bf16 run with the default wait (not for the 8B-shaped model beyond gen 64) shows by how much.',
    '',
    markdownReport(groups),
    ...(skipped.length ? ['', ...skipped.map((s) => `- ${s}`)] : []),
    ...(failures.length ? ['', '## Failures', '', ...failures.map((s) => `- ${s}`)] : []),
    '',
    `llama.cpp exits: bench/peers-logflush.c waited ${f1(median(flushWaitMs.filter(Number.isFinite)))} ms (median; max ${f1(Math.max(0, ...flushWaitMs.filter(Number.isFinite)))} ms over ${flushWaitMs.length} runs) for llama.cpp's log writer thread; included in its whole-process times.`,
    '',
    '## Conversions',
    '',
    ...conversions.map((c) => `- ${JSON.stringify(c)}`),
    '',
  ].join('\n');
  writeFileSync(join(OUT, 'results.md'), md);
  writeFileSync(join(OUT, 'results.json'), JSON.stringify({ date: new Date().toISOString(), machine, threads: THREADS, llama_commit: env.LLAMA_COMMIT, seed: SEED, conversions, checks, groups, skipped, failures, logflush_wait_ms: flushWaitMs }, null, 2));
  writeFileSync(join(OUT, 'peers.svg'), svgReport(groups, `dyllm vs llama.cpp (${THREADS} threads, ${cpus()[0]?.model ?? ''})`));
  rmSync(join(OUT, 'results.partial.json'), { force: true });
  process.stdout.write(md);
  log(`wrote ${join(OUT, 'results.md')}, results.json, peers.svg`);
}

main().catch((e) => die(e instanceof BenchError ? e.message : `${(e as Error).message}`));

/**
 * The /local page's engine: a Web Worker that loads a model from the bytes the page fetched (engine/pipeline.ts
 * loadPipelineFromBytes: the folder loader's parsers over memory) and denoises on the TypeScript reference backend,
 * posting one message per step so the page draws the canvas live. Bundled for the browser by scripts/build-web.mjs
 * (dist/web/local-worker.js); it runs in no Node process.
 *
 * One generation at a time; 'stop' ends it between steps. Errors come back as one line (LoadError / ConfigError
 * messages as the CLI prints them), and the worker stays usable.
 */
import { resolveAccel } from '../engine/accel.js';
import { generateSteps, type GenerateResult } from '../engine/generate.js';
import { resolveOptions } from '../engine/options.js';
import { decodeAnswer, encodePrompt, loadPipelineFromBytes, type Pipeline } from '../engine/pipeline.js';
import { ReferenceBackend } from '../kernels/reference.js';
import type { FromWorker, LocalGenerate, ToWorker } from './protocol.js';

interface WorkerScope {
  postMessage(m: FromWorker): void;
  addEventListener(type: 'message', f: (e: { data: ToWorker }) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

let pipeline: Pipeline | null = null;
let running = false;
let stopRequested = false;

const post = (m: FromWorker): void => scope.postMessage(m);
const oneLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0];
/** Between steps: let 'stop' and other messages in (a macrotask; the browser has no setImmediate). */
const tick = (): Promise<void> => new Promise((res) => setTimeout(res, 0));

async function load(name: string, files: Readonly<Record<string, ArrayBuffer>>): Promise<void> {
  const t0 = performance.now();
  const bytes = new Map(Object.entries(files).map(([k, v]) => [k, new Uint8Array(v)] as const));
  pipeline = await loadPipelineFromBytes(name, bytes, { backend: new ReferenceBackend() });
  post({ type: 'ready', arch: pipeline.config.arch, chatTemplate: pipeline.chatTemplate !== null, backend: 'reference', loadMs: performance.now() - t0 });
}

async function run(p: Pipeline, g: LocalGenerate): Promise<void> {
  const options = resolveOptions(p.config, { genLength: g.genLength, steps: g.steps, blockLength: g.blockLength, temperature: g.temperature }, p.generation);
  const accel = g.accel === 'dyllm' ? resolveAccel(p.config, { method: 'dyllm', threshold: g.threshold }, options) : undefined;
  const prompt = encodePrompt(p, g.prompt, g.chat);
  const it = generateSteps(p.model, p.ids, { prompts: [prompt], options, accel, cancelled: () => stopRequested });
  // Per-token text is cached: the canvas is redrawn every step.
  const text = new Map<number, string>();
  const tokText = (t: number): string => {
    let s = text.get(t);
    if (s === undefined) {
      s = p.tokenizer.decode([t]);
      text.set(t, s);
    }
    return s;
  };
  let result: GenerateResult;
  for (;;) {
    const r = it.next();
    if (r.done) {
      result = r.value;
      break;
    }
    const ev = r.value;
    const seq = ev.sequences[0];
    const canvas = Array.from(seq.canvas);
    const rec = ev.accel?.recomputed?.[0];
    post({
      type: 'step',
      step: ev.step,
      maxSteps: ev.maxSteps,
      tokens: canvas.map((t) => (t === p.ids.mask ? null : p.tokenizer.isSpecial(t) ? (p.tokenizer.idToToken(t) ?? String(t)) : tokText(t))),
      end: canvas.map((t) => t === p.ids.eos || t === p.ids.eot),
      special: canvas.map((t) => t !== p.ids.mask && p.tokenizer.isSpecial(t)),
      committed: Array.from(seq.committed),
      recomputed: rec ? Array.from(rec) : null,
      ffnFraction: ev.accel?.ffnFraction ?? 1,
    });
    await tick();
  }
  const tokens = result.tokens[0];
  post({
    type: 'done',
    answer: decodeAnswer(p, tokens),
    tokenIds: Array.from(tokens),
    steps: result.stats.steps,
    elapsedMs: result.stats.elapsedMs,
    tokensPerS: result.stats.tokensPerS,
    salientFraction: result.stats.salientFraction,
    stopped: stopRequested,
  });
}

scope.addEventListener('message', (e) => {
  const m = e.data;
  if (m.type === 'stop') {
    stopRequested = true;
    return;
  }
  if (running) {
    post({ type: 'error', message: 'the engine is busy: wait for the current generation to end, or stop it' });
    return;
  }
  running = true;
  stopRequested = false;
  const job = m.type === 'load' ? load(m.name, m.files) : pipeline ? run(pipeline, m) : Promise.reject(new Error('no model loaded yet: wait for the download to finish'));
  job.catch((err: unknown) => post({ type: 'error', message: oneLine(err) })).finally(() => {
    running = false;
  });
});

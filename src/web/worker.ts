/**
 * The /local page's engine: a Web Worker that loads a model from the bytes the page fetched (engine/pipeline.ts
 * loadPipelineFromBytes: the folder loader's parsers over memory) and denoises, posting one message per step so the
 * page draws the canvas live. Bundled for the browser by scripts/build-web.mjs (dist/web/local-worker.js); it runs
 * in no Node process.
 *
 * Backends: where the worker has `navigator.gpu` and an adapter, the dense steps run on WebGPU (models/gpu-model.ts,
 * weights uploaded from the same bytes), after its logits agreed with the TypeScript reference backend's on one step
 * of a short canvas (GPU_CHECK_TOL); otherwise, or when that check fails or anything on the GPU throws, the reference
 * backend runs, with a one-line notice saying why. DyLLM's cached steps run on the GPU too (models/forward/
 * gpu-planned.ts), their caches freed when the generation ends.
 *
 * One generation at a time; 'stop' ends it between steps. Errors come back as one line (LoadError / ConfigError
 * messages as the CLI prints them), and the worker stays usable.
 */
import { resolveAccel } from '../engine/accel.js';
import { generate, type GenerateResult, type StepEvent } from '../engine/generate.js';
import { resolveOptions } from '../engine/options.js';
import { decodeAnswer, encodePrompt, loadPipelineFromBytes, type Pipeline } from '../engine/pipeline.js';
import type { GpuLike } from '../kernels/webgpu/gpu-types.js';
import { HostWeightsBackend } from '../kernels/webgpu/host-weights.js';
import { WebGpuError, WebGpuKernels } from '../kernels/webgpu/kernels.js';
import { GpuModel } from '../models/gpu-model.js';
import type { DiffusionModel } from '../models/types.js';
import type { FromWorker, LocalGenerate, ToWorker } from './protocol.js';

/**
 * The largest max|Δ| / max|ref| of the GPU's logits against the reference backend's on the check step. The kernels
 * hold 1e-5 each (docs/webgpu.md); a whole step on the test checkpoints measures 1.4e-6 to 3.6e-6; a deeper model
 * adds error layer by layer, so the check allows 1e-4 — far below what a wrong kernel or a misread weight gives.
 */
export const GPU_CHECK_TOL = 1e-4;

interface WorkerScope {
  postMessage(m: FromWorker): void;
  addEventListener(type: 'message', f: (e: { data: ToWorker }) => void): void;
}
const scope = globalThis as unknown as WorkerScope;

let pipeline: Pipeline | null = null;
/** The WebGPU model when the check passed; null: the reference backend runs. */
let gpuModel: GpuModel | null = null;
let kernels: WebGpuKernels | null = null;
let running = false;
let stopRequested = false;

const post = (m: FromWorker): void => scope.postMessage(m);
const oneLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0];

function dropGpu(): void {
  gpuModel?.destroy();
  kernels?.destroy();
  gpuModel = null;
  kernels = null;
}

/** max|a − b| / max|b|. */
function relMaxError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return a.length === b.length ? num / (den || 1) : Infinity;
}

/**
 * The WebGPU model of `p`, checked against the reference forward on one step of a short canvas (a few prompt tokens,
 * then masks); or why not (one line).
 */
async function tryGpu(p: Pipeline, be: HostWeightsBackend): Promise<{ model: GpuModel; adapter: string; checkError: number } | { notice: string }> {
  const gpu = (globalThis as unknown as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
  if (!gpu) return { notice: 'this browser offers no WebGPU here (navigator.gpu is missing): running on the reference backend' };
  try {
    kernels = await WebGpuKernels.create(gpu);
    const model = new GpuModel(kernels, p.model, (w) => be.hostOf(w));
    gpuModel = model;
    const tokens = Int32Array.from([...p.tokenizer.encode('1 + 1 ='), ...new Array<number>(8).fill(p.ids.mask)]);
    const batch = { tokens, seqStart: Int32Array.of(0, tokens.length), attentionMask: null, logitRows: null };
    const want = p.model.forward(batch);
    const got = (await model.forwardAsync(batch, null)) as Float32Array;
    const err = relMaxError(got, want);
    if (!(err <= GPU_CHECK_TOL)) {
      dropGpu();
      return { notice: `WebGPU's logits disagree with the reference backend's (max|Δ|/max|ref| = ${err.toExponential(2)} > ${GPU_CHECK_TOL}): running on the reference backend` };
    }
    const i = kernels.adapterInfo;
    return { model, adapter: [i.vendor, i.architecture, i.device, i.description].filter((x) => x).join(' ') || 'unnamed adapter', checkError: err };
  } catch (e) {
    dropGpu();
    return { notice: `WebGPU failed (${oneLine(e)}): running on the reference backend` };
  }
}

async function load(name: string, files: Readonly<Record<string, ArrayBuffer>>): Promise<void> {
  const t0 = performance.now();
  dropGpu();
  pipeline = null;
  const bytes = new Map(Object.entries(files).map(([k, v]) => [k, new Uint8Array(v)] as const));
  // The reference backend, remembering each weight's host arrays so that WebGPU gets them as stored (bf16 as bf16).
  const be = new HostWeightsBackend();
  const p = await loadPipelineFromBytes(name, bytes, { backend: be });
  const g = await tryGpu(p, be);
  pipeline = p;
  const gpu = 'model' in g ? { backend: 'webgpu' as const, adapter: g.adapter, checkError: g.checkError } : { backend: 'reference' as const, notice: g.notice };
  post({ type: 'ready', arch: p.config.arch, chatTemplate: p.chatTemplate !== null, ...gpu, loadMs: performance.now() - t0 });
}

async function run(p: Pipeline, g: LocalGenerate): Promise<void> {
  const options = resolveOptions(p.config, { genLength: g.genLength, steps: g.steps, blockLength: g.blockLength, temperature: g.temperature }, p.generation);
  const accel = g.accel === 'dyllm' ? resolveAccel(p.config, { method: 'dyllm', threshold: g.threshold }, options) : undefined;
  const prompt = encodePrompt(p, g.prompt, g.chat);
  // Dense and DyLLM steps on WebGPU when it passed its check.
  const onGpu = gpuModel !== null;
  const model: DiffusionModel = onGpu ? gpuModel! : p.model;
  const it = generate(model, p.ids, { prompts: [prompt], options, accel, cancelled: () => stopRequested });
  let result: GenerateResult;
  try {
    result = await steps(p, it, onGpu);
  } finally {
    gpuModel?.releaseCaches();
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
    backend: onGpu ? 'webgpu' : 'reference',
    stopped: stopRequested,
  });
}

/** Posts one message per step of `it` (the page draws the canvas); returns the result. */
async function steps(p: Pipeline, it: AsyncGenerator<StepEvent, GenerateResult>, onGpu: boolean): Promise<GenerateResult> {
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
  for (;;) {
    let r: IteratorResult<StepEvent, GenerateResult>;
    try {
      r = await it.next();
    } catch (e) {
      // A GPU failure mid-generation: this one ends with the error, the next ones run on the reference backend.
      if (onGpu && e instanceof WebGpuError) {
        dropGpu();
        throw new Error(`WebGPU failed (${oneLine(e)}); the next generation runs on the reference backend`);
      }
      throw e;
    }
    if (r.done) return r.value;
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
  }
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

/**
 * The browser side of the GPU forward tests (test/webgpu.forward.test.ts): loaded as plain ESM from dist/ on
 * http://127.0.0.1, it builds a test checkpoint's Transformer on the reference backend from the model JSON the test
 * sends (test/helpers/model-transfer.ts), uploads the same host weights to WebGPU (models/gpu-model.ts) and compares
 * one step's logits and row statistics with the reference backend's dense forward, and DyLLM's steps (salient sets
 * and logits) with the reference backend's planned forward over a whole generation.
 */
import type { GpuLike } from '../../src/kernels/webgpu/gpu-types.js';
import { WebGpuKernels } from '../../src/kernels/webgpu/kernels.js';
import { HostWeightsBackend } from '../../src/kernels/webgpu/host-weights.js';
import type { GpuForward } from '../../src/models/forward/gpu.js';
import { GpuModel } from '../../src/models/gpu-model.js';
import type { Transformer } from '../../src/models/transformer.js';
import { DenoiseRun } from '../../src/engine/generate.js';
import type { GenerateOptions } from '../../src/engine/options.js';
import type { AccelOptions } from '../../src/engine/accel/types.js';
import type { SpecialIds } from '../../src/engine/pipeline.js';
import type { ForwardBatch, LogitRowStats } from '../../src/models/types.js';
import { modelFromJson, type ModelJson } from '../helpers/model-transfer.js';

export interface BatchJson { tokens: number[]; seqStart: number[]; mask: number[] | null; logitRows: number[] | null }

export interface Comparison {
  /** max|Δ| / max|ref| of the logits. */
  readonly relErr: number;
  readonly rows: number;
  /** Statistics step: rows whose GPU argmax differs from the reference's; largest |Δp1|, |Δp2|, |ΔnegEntropy|. */
  readonly argmaxDiffer?: number;
  readonly p1Err?: number;
  readonly p2Err?: number;
  readonly entErr?: number;
}

let kernels: WebGpuKernels | null = null;
const models = new Map<string, { ref: Transformer; gm: GpuModel; gpu: GpuForward }>();

async function open(): Promise<string> {
  const gpu = (globalThis as unknown as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
  if (!gpu) throw new Error('navigator.gpu is undefined (WebGPU needs a secure origin and a browser with WebGPU enabled)');
  kernels ??= await WebGpuKernels.create(gpu);
  const i = kernels.adapterInfo;
  return [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' ');
}

function load(name: string, json: ModelJson): void {
  if (!kernels) throw new Error('open() first');
  const be = new HostWeightsBackend();
  const ref = modelFromJson(json, be);
  models.get(name)?.gm.destroy();
  const gm = new GpuModel(kernels, ref, (p) => be.hostOf(p));
  models.set(name, { ref, gm, gpu: gm.gpu });
}

function toBatch(b: BatchJson): ForwardBatch {
  return { tokens: Int32Array.from(b.tokens), seqStart: Int32Array.from(b.seqStart), attentionMask: b.mask ? Uint8Array.from(b.mask) : null, logitRows: b.logitRows ? Int32Array.from(b.logitRows) : null };
}

function relMax(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / (den || 1);
}

/** One step on both backends: logits, then (with `entropy` not null) the statistics path. */
async function compare(name: string, bj: BatchJson, entropy: boolean | null): Promise<Comparison> {
  const m = models.get(name);
  if (!m) throw new Error(`no model "${name}" loaded`);
  const batch = toBatch(bj);
  const want = m.ref.forward(batch);
  const got = (await m.gpu.forward(batch, null)) as Float32Array;
  const V = m.ref.config.vocabSize;
  const rows = want.length / V;
  const out: Comparison = { relErr: relMax(got, want), rows };
  if (entropy === null) return out;
  const s = (await m.gpu.forward(batch, { entropy })) as LogitRowStats;
  const r = { argmax: new Int32Array(rows), p1: new Float64Array(rows), p2: new Float64Array(rows), negEntropy: entropy ? new Float64Array(rows) : null };
  m.ref.backend.logitStats(want, rows, V, r.argmax, r.p1, r.p2, r.negEntropy);
  let differ = 0;
  let p1Err = 0;
  let p2Err = 0;
  let entErr = 0;
  for (let i = 0; i < rows; i++) {
    if (s.argmax[i] !== r.argmax[i]) differ++;
    p1Err = Math.max(p1Err, Math.abs(s.p1[i] - r.p1[i]));
    p2Err = Math.max(p2Err, Math.abs(s.p2[i] - r.p2[i]));
    if (entropy) entErr = Math.max(entErr, Math.abs(s.negEntropy![i] - r.negEntropy![i]));
  }
  if (s.argmax.length !== rows || (entropy ? s.negEntropy?.length !== rows : s.negEntropy !== null)) throw new Error('statistics of the wrong shape');
  return { ...out, argmaxDiffer: differ, p1Err, p2Err, entErr };
}

/** What a bad batch gives: the error's message (or null when it did not throw). */
async function refusal(name: string, bj: BatchJson): Promise<string | null> {
  const m = models.get(name);
  if (!m) throw new Error(`no model "${name}" loaded`);
  try {
    await m.gpu.forward(toBatch(bj), null);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** One DyLLM step on both backends: the GPU logits' error, and each backend's salient rows per layer and last layer. */
export interface PlannedStepComparison {
  readonly method: string;
  readonly relErr: number;
  readonly host: readonly number[];
  readonly gpu: readonly number[];
  readonly hostRecomputed: number[][];
  readonly gpuRecomputed: number[][];
}

/**
 * A whole generation under `accel` (DyLLM) on the reference backend, and the same steps on the GPU: both runs get
 * the same batches and commit the host's logits, so every step compares like with like.
 */
async function dyllmSteps(name: string, ids: SpecialIds, options: GenerateOptions, accel: AccelOptions, prompts: number[][]): Promise<PlannedStepComparison[]> {
  const m = models.get(name);
  if (!m) throw new Error(`no model "${name}" loaded`);
  // logprobs: the asynchronous step returns logits (not statistics), to compare them.
  const req = { prompts, options, accel, logprobs: 0 };
  const host = new DenoiseRun(m.ref, ids, req);
  const gpu = new DenoiseRun(m.gm, ids, req);
  const out: PlannedStepComparison[] = [];
  try {
    for (;;) {
      const b1 = host.prepare();
      const b2 = gpu.prepare();
      if (!b1 || !b2) {
        if (b1 || b2) throw new Error('the two runs ended at different steps');
        return out;
      }
      if (b1.tokens.join() !== b2.tokens.join()) throw new Error('the two runs prepared different batches');
      const l1 = host.forwardOwn(b1);
      const l2 = (await gpu.forwardOwnAsync(b2)) as Float32Array;
      const e1 = host.finish(l1, 0);
      const e2 = gpu.finish(l1, 0);
      out.push({
        method: e2.accel?.method ?? 'none', relErr: relMax(l2, l1),
        host: [...(e1.accel?.salientPerLayer ?? [])], gpu: [...(e2.accel?.salientPerLayer ?? [])],
        hostRecomputed: (e1.accel?.recomputed ?? []).map((r) => [...r]), gpuRecomputed: (e2.accel?.recomputed ?? []).map((r) => [...r]),
      });
    }
  } finally {
    m.gm.releaseCaches();
  }
}

/** All-salient DyLLM on the GPU against the GPU's dense forward, step by step: the largest max|Δ|/max|ref|. */
async function allSalientVsDense(name: string, ids: SpecialIds, options: GenerateOptions, accel: AccelOptions, prompts: number[][]): Promise<{ steps: number; relErr: number }> {
  const m = models.get(name);
  if (!m) throw new Error(`no model "${name}" loaded`);
  const run = new DenoiseRun(m.gm, ids, { prompts, options, accel, logprobs: 0 });
  let steps = 0;
  let worst = 0;
  try {
    for (let b = run.prepare(); b; b = run.prepare()) {
      const planned = (await run.forwardOwnAsync(b)) as Float32Array;
      const dense = (await m.gm.forwardAsync(b, null)) as Float32Array;
      worst = Math.max(worst, relMax(planned, dense));
      run.finish(dense, 0);
      steps++;
    }
  } finally {
    m.gm.releaseCaches();
  }
  return { steps, relErr: worst };
}

export const api = { open, load, compare, refusal, dyllmSteps, allSalientVsDense };
export type ForwardPageApi = typeof api;
(globalThis as unknown as { dyllmGpuForward: unknown }).dyllmGpuForward = api;

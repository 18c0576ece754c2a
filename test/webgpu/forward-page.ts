/**
 * The browser side of the GPU forward tests (test/webgpu.forward.test.ts): loaded as plain ESM from dist/ on
 * http://127.0.0.1, it builds a test checkpoint's Transformer on the reference backend from the model JSON the test
 * sends (test/helpers/model-transfer.ts), uploads the same host weights to WebGPU (models/forward/gpu.ts) and
 * compares one step's logits and row statistics with the reference backend's dense forward.
 */
import type { GpuLike } from '../../src/kernels/webgpu/gpu-types.js';
import { WebGpuKernels } from '../../src/kernels/webgpu/kernels.js';
import { HostWeightsBackend } from '../../src/kernels/webgpu/host-weights.js';
import { GpuForward } from '../../src/models/forward/gpu.js';
import type { Transformer } from '../../src/models/transformer.js';
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
const models = new Map<string, { ref: Transformer; gpu: GpuForward }>();

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
  models.get(name)?.gpu.destroy();
  models.set(name, { ref, gpu: new GpuForward(kernels, ref, (p) => be.hostOf(p)) });
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

export const api = { open, load, compare, refusal };
export type ForwardPageApi = typeof api;
(globalThis as unknown as { dyllmGpuForward: unknown }).dyllmGpuForward = api;

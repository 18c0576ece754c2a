/**
 * The browser side of the WebGPU conformance run (test/webgpu.conformance.test.ts): loaded as plain ESM from dist/
 * by a page on http://127.0.0.1 (WebGPU needs a secure origin), it opens the WebGPU kernels of one configuration on
 * navigator.gpu and runs the shared cases (test/helpers/webgpu-suite.ts) one at a time on the test's request; bench/webgpu.ts
 * uses the same page to time each kernel (test/helpers/webgpu-timing.ts).
 */
import type { GpuLike } from '../../src/kernels/webgpu/gpu-types.js';
import type { WebGpuKernels } from '../../src/kernels/webgpu/kernels.js';
import { WEBGPU_CONFIGS, casesOf, makeKernels } from '../helpers/webgpu-suite.js';
import { timeKernels, type KernelTiming } from '../helpers/webgpu-timing.js';

export interface CaseResult {
  readonly ok: boolean;
  readonly error?: string;
  readonly ms: number;
}

let kernels: WebGpuKernels | null = null;
let open: string | null = null;

function gpu(): GpuLike {
  const g = (globalThis as unknown as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
  if (!g) throw new Error('navigator.gpu is undefined (WebGPU needs a secure origin and a browser with WebGPU enabled)');
  return g;
}

function config(name: string) {
  const c = WEBGPU_CONFIGS.find((x) => x.name === name);
  if (!c) throw new Error(`no configuration named "${name}"`);
  return c;
}

/** Opens the kernels of a configuration (closing the previous one); returns the adapter's description. */
async function openConfig(name: string): Promise<{ adapter: string; subgroups: boolean }> {
  if (kernels) kernels.destroy();
  kernels = null;
  open = null;
  kernels = await makeKernels(gpu(), config(name));
  open = name;
  const i = kernels.adapterInfo;
  return { adapter: [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(' '), subgroups: kernels.subgroups };
}

async function runCase(configName: string, caseName: string): Promise<CaseResult> {
  const t0 = performance.now();
  try {
    if (open !== configName || !kernels) throw new Error(`configuration "${configName}" is not open`);
    const c = casesOf(config(configName)).find((x) => x.name === caseName);
    if (!c) throw new Error(`configuration "${configName}" has no case "${caseName}"`);
    await c.run(kernels);
    return { ok: true, ms: performance.now() - t0 };
  } catch (e) {
    return { ok: false, error: `${(e as Error).name}: ${(e as Error).message}`, ms: performance.now() - t0 };
  }
}

/** Per-kernel times on the open configuration (bench/webgpu.ts; docs/webgpu.md). */
async function time(configName: string, reps: number): Promise<KernelTiming[]> {
  if (open !== configName || !kernels) throw new Error(`configuration "${configName}" is not open`);
  return timeKernels(kernels, reps);
}

(globalThis as unknown as { dyllmWebGpu: unknown }).dyllmWebGpu = { openConfig, runCase, time };

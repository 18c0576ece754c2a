/**
 * Chooses the kernel backend (and quantises host weights with the fastest implementation there is). 'auto' prefers the native addon and falls back to the reference backend with one
 * warning line when the addon cannot be loaded (not built, wrong CPU, wrong Node ABI).
 *
 * `--backend webgpu` names the WebGPU kernels (src/kernels/webgpu, docs/webgpu.md). They are asynchronous and keep
 * tensors on the device: `dyllm generate` and `dyllm serve` run their dense and DyLLM steps there (models/gpu-model.ts,
 * server/gpu-device.ts); the other commands find out whether this machine has an adapter and refuse in one line
 * either way (`webGpuBackendMessage`).
 */
import type { HostWeight, KernelBackend } from './backend.js';
import { checkPrepareWeight } from './args.js';
import { ReferenceBackend } from './reference.js';
import { loadNativeAddon, loadNativeBackend, nativeQuantize } from './native.js';
import { quantizeInt8, quantizeQ4, type QuantFormat } from './quant.js';
import { probeNodeWebGpu, type ProbeResult } from './webgpu/node.js';

export type BackendName = 'auto' | 'native' | 'reference';

/** Every value `--backend` accepts: the model backends and 'webgpu'. */
export const BACKEND_FLAG_VALUES = ['auto', 'native', 'reference', 'webgpu'] as const;
export type BackendFlag = (typeof BACKEND_FLAG_VALUES)[number];

let warned = false;

export function selectBackend(name: BackendName = 'auto', warn: (line: string) => void = (l) => process.stderr.write(l + '\n')): KernelBackend {
  if (name === 'reference') return new ReferenceBackend();
  try {
    return loadNativeBackend();
  } catch (e) {
    if (name === 'native') throw new Error(`native kernels unavailable (${(e as Error).message}); use --backend auto or reference`);
    if (!warned) {
      warned = true;
      warn(`dyllm: warning: native kernels unavailable (${(e as Error).message}); using the slow TypeScript reference backend`);
    }
    return new ReferenceBackend();
  }
}

/**
 * A dense weight's quantised host arrays (src/kernels/quant.ts): by the native addon when it loads (every thread;
 * bit for bit the TypeScript definition, test/kernels.quant.test.ts), else by the TypeScript definition itself.
 */
export function quantizeHostWeight(w: HostWeight, format: QuantFormat): HostWeight {
  checkPrepareWeight(w);
  if (w.dtype !== 'bf16' && w.dtype !== 'f32') throw new TypeError(`quantizeHostWeight: expected a dense bf16 or f32 weight, found dtype ${w.dtype}`);
  const dense = w.data as Uint16Array | Float32Array;
  const N = w.outFeatures;
  const K = w.inFeatures;
  let h: { q: Int8Array | Uint8Array; scales: Float32Array | Uint16Array };
  try {
    h = nativeQuantize(loadNativeAddon(), format, w.dtype, dense, N, K);
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw e;
    h = format === 'int8' ? quantizeInt8(w.dtype, dense, N, K) : quantizeQ4(w.dtype, dense, N, K);
  }
  return { dtype: format, data: h.q, scales: h.scales, outFeatures: N, inFeatures: K };
}

/**
 * The one-line refusal of `--backend webgpu` by a command that does not run on WebGPU (without the "dyllm: "
 * prefix): no adapter (and why), or an adapter this command cannot use yet (`dyllm generate` and `dyllm serve` can). `probe` is the
 * adapter search (default: the `webgpu` package, in a child process).
 */
export function webGpuBackendMessage(probe: () => ProbeResult = () => probeNodeWebGpu()): string {
  const r = probe();
  if (!r.ok) return `--backend webgpu: no WebGPU adapter (${r.reason})`;
  return `--backend webgpu: found a WebGPU adapter (${r.adapter}), but only dyllm generate and dyllm serve run on WebGPU yet (docs/webgpu.md); ` +
    'use --backend auto, native or reference';
}

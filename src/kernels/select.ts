/**
 * Chooses the kernel backend. 'auto' prefers the native addon and falls back to the reference backend with one
 * warning line when the addon cannot be loaded (not built, wrong CPU, wrong Node ABI).
 *
 * `--backend webgpu` names the WebGPU kernels (src/kernels/webgpu, docs/webgpu.md). They are asynchronous and keep
 * tensors on the device, so the synchronous forward passes cannot use them yet: `checkWebGpuBackend` finds out
 * whether this machine has an adapter and says so in one line either way.
 */
import type { KernelBackend } from './backend.js';
import { ReferenceBackend } from './reference.js';
import { loadNativeBackend } from './native.js';
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
 * The one-line answer to `--backend webgpu` (without the "dyllm: " prefix): no adapter (and why), or an adapter
 * the model cannot use yet. `probe` is the adapter search (default: the `webgpu` package, in a child process).
 */
export function webGpuBackendMessage(probe: () => ProbeResult = () => probeNodeWebGpu()): string {
  const r = probe();
  if (!r.ok) return `--backend webgpu: no WebGPU adapter (${r.reason})`;
  return `--backend webgpu: found a WebGPU adapter (${r.adapter}), but the forward pass does not run on WebGPU yet (docs/webgpu.md); ` +
    'use --backend auto, native or reference';
}

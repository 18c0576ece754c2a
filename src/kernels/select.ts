/**
 * Chooses the kernel backend. 'auto' prefers the native addon and falls back to the reference backend with one
 * warning line when the addon cannot be loaded (not built, wrong CPU, wrong Node ABI).
 */
import type { KernelBackend } from './backend.js';
import { ReferenceBackend } from './reference.js';
import { loadNativeBackend } from './native.js';

export type BackendName = 'auto' | 'native' | 'reference';

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

/** Loader for the native N-API kernel addon (placeholder until the addon lands). */
import type { KernelBackend } from './backend.js';

export function loadNativeBackend(): KernelBackend {
  throw new Error('native addon not built');
}

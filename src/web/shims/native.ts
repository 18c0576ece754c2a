/**
 * kernels/native.ts for the browser bundle (scripts/build-web.mjs): there is no native addon in a page (the /local
 * engine runs on the reference backend), and native.ts locates the addon on disk when it is imported.
 */
import type { KernelBackend } from '../../kernels/backend.js';
import type { NativeAddon } from '../../kernels/native.js';

const NO_ADDON = 'the native kernels are not available in the browser; the /local page runs on the reference backend';

export function loadNativeAddon(): NativeAddon {
  throw new Error(NO_ADDON);
}

export function loadNativeBackend(): KernelBackend {
  throw new Error(NO_ADDON);
}

export function nativeQuantize(): never {
  throw new Error(NO_ADDON);
}

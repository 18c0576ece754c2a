/**
 * WebGPU in Node through the `webgpu` npm package (Dawn; a devDependency here, a user installs it): finding an adapter, and creating
 * the kernels on it.
 *
 * The probe runs in a child process: Dawn writes its own warnings to the process's stderr (on Linux without a
 * Vulkan loader: "Warning: Couldn't load Vulkan: libvulkan.so.1: ...") where the CLI promises one-line errors, and
 * a probe must not leave a Dawn instance behind in the CLI process.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { GpuLike } from './gpu-types.js';
import { WebGpuKernels, WebGpuUnavailableError, type WebGpuOptions } from './kernels.js';

/** Where `import('webgpu')` resolves from this package, or null when it is not installed. */
export function webgpuPackageEntry(): string | null {
  try {
    return createRequire(import.meta.url).resolve('webgpu');
  } catch {
    return null;
  }
}

export type ProbeResult =
  | { readonly ok: true; readonly adapter: string; readonly subgroups: boolean }
  | { readonly ok: false; readonly reason: string };

/** Why no adapter: what the message says the package needs. */
export const NO_ADAPTER_REASON = 'the webgpu package found none: needs a GPU driver with Vulkan';

const PROBE = `
const { create } = await import(process.argv[1]);
let out;
try {
  const gpu = create([]);
  const a = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!a) out = { ok: false };
  else {
    const i = a.info ?? {};
    out = { ok: true, adapter: [i.vendor, i.description || i.architecture || i.device].filter((s) => s).join(' ') || 'unnamed adapter', subgroups: a.features.has('subgroups') };
  }
} catch (e) {
  out = { ok: false, error: String(e && e.message || e).split('\\n')[0] };
}
process.stdout.write(JSON.stringify(out));
process.exit(0);
`;

/** Looks for an adapter through the `webgpu` package, in a child process (at most 30 s; about 0.5 s). */
export function probeNodeWebGpu(entry: string | null = webgpuPackageEntry()): ProbeResult {
  if (entry === null) return { ok: false, reason: 'the optional webgpu package is not installed: npm install webgpu' };
  const p = spawnSync(process.execPath, ['--input-type=module', '-e', PROBE, pathToFileURL(entry).href], { timeout: 30_000, encoding: 'utf8', maxBuffer: 1 << 20 });
  type Answer = { ok?: boolean; adapter?: string; subgroups?: boolean; error?: string };
  let r: Answer | null;
  try {
    r = JSON.parse(p.stdout) as Answer;
  } catch {
    r = null;
  }
  if (r?.ok && typeof r.adapter === 'string') return { ok: true, adapter: r.adapter, subgroups: r.subgroups === true };
  if (r && !r.ok && !r.error) return { ok: false, reason: NO_ADAPTER_REASON };
  const why = r?.error ?? (p.error ? p.error.message : `the probe exited with ${p.status ?? p.signal}`);
  return { ok: false, reason: `the webgpu package failed: ${String(why).split('\n')[0]}` };
}

/** The WebGPU kernels on the `webgpu` package's first adapter (in this process). */
export async function createNodeWebGpuKernels(opts: WebGpuOptions = {}): Promise<WebGpuKernels> {
  const entry = webgpuPackageEntry();
  if (entry === null) throw new WebGpuUnavailableError('the optional webgpu package is not installed: npm install webgpu');
  const { create } = (await import(pathToFileURL(entry).href)) as { create(flags: string[]): GpuLike };
  return WebGpuKernels.create(create([]), opts);
}

/**
 * Times each WebGPU kernel in headless Chromium (test/helpers/webgpu-page.ts; on a machine without a GPU that is
 * SwiftShader, a CPU emulation of Vulkan) at small forward-like shapes (test/helpers/webgpu-timing.ts) and prints a
 * Markdown table. On SwiftShader the figures describe the correctness path, not a speed figure: they say how long
 * the conformance run takes, nothing about a GPU. Usage: npm run bench:webgpu [-- REPS] (default 10).
 */
import { openWebGpuPage } from '../test/helpers/webgpu-page.js';

const reps = Number(process.argv[2] ?? 10);
if (!Number.isInteger(reps) || reps < 1 || reps > 1000) {
  process.stderr.write(`bench:webgpu: REPS must be an integer in [1, 1000], found "${process.argv[2]}"\n`);
  process.exit(2);
}
const p = await openWebGpuPage();
try {
  const info = await p.call('openConfig', 'webgpu');
  const rows = await p.call('time', 'webgpu', reps);
  process.stdout.write(`adapter: ${info.adapter}${info.subgroups ? ' (subgroups)' : ''}; ${reps} ops per batch\n\n`);
  process.stdout.write('| op | shape | first call, ms (compile included) | per op, ms |\n|---|---|---:|---:|\n');
  for (const r of rows) process.stdout.write(`| ${r.op} | ${r.shape} | ${r.firstMs.toFixed(1)} | ${r.meanMs.toFixed(2)} |\n`);
} finally {
  await p.close();
}

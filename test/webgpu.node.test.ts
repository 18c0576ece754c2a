/**
 * The WebGPU kernels in Node through the `webgpu` package (Dawn): the same cases as the browser run
 * (test/helpers/webgpu-suite.ts), on whatever adapter the package finds. On a machine without a GPU driver it finds
 * none, and the cases are reported as skipped with that reason (the browser run, test/webgpu.conformance.test.ts,
 * covers the kernels there on SwiftShader). DYLLM_REQUIRE_WEBGPU=1 makes a missing adapter a failure instead.
 *
 * Also the one-line answers of `--backend webgpu` (src/kernels/select.ts), for both outcomes of the adapter probe.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { webGpuBackendMessage } from '../src/kernels/select.js';
import { generateBackend } from '../src/cli/args.js';
import { gpuAccelRefusal } from '../src/models/gpu-model.js';
import { NO_ADAPTER_REASON, createNodeWebGpuKernels, probeNodeWebGpu } from '../src/kernels/webgpu/node.js';
import type { WebGpuKernels } from '../src/kernels/webgpu/kernels.js';
import { WEBGPU_CONFIGS, casesOf } from './helpers/webgpu-suite.js';
import { repoRoot } from './helpers/paths.js';

const probe = probeNodeWebGpu();
const required = process.env.DYLLM_REQUIRE_WEBGPU === '1';
const skip = probe.ok || required ? false : `no WebGPU adapter in Node (${probe.reason}); set DYLLM_REQUIRE_WEBGPU=1 to make this a failure`;

test('--backend webgpu: one line for each outcome of the adapter probe', () => {
  assert.equal(webGpuBackendMessage(() => ({ ok: false, reason: NO_ADAPTER_REASON })),
    '--backend webgpu: no WebGPU adapter (the webgpu package found none: needs a GPU driver with Vulkan)');
  assert.equal(webGpuBackendMessage(() => ({ ok: false, reason: 'the optional webgpu package is not installed: npm install webgpu' })),
    '--backend webgpu: no WebGPU adapter (the optional webgpu package is not installed: npm install webgpu)');
  assert.equal(webGpuBackendMessage(() => ({ ok: true, adapter: 'nvidia hopper', subgroups: true })),
    '--backend webgpu: found a WebGPU adapter (nvidia hopper), but only dyllm generate and dyllm serve run on WebGPU yet (docs/webgpu.md); use --backend auto, native or reference');
  // dyllm generate takes the adapter (and runs its dense steps there), or refuses with the same line.
  assert.deepEqual(generateBackend('webgpu', () => ({ ok: true, adapter: 'nvidia hopper', subgroups: true })), { webgpu: 'nvidia hopper' });
  assert.throws(() => generateBackend('webgpu', () => ({ ok: false, reason: NO_ADAPTER_REASON })),
    { name: 'UsageError', message: '--backend webgpu: no WebGPU adapter (the webgpu package found none: needs a GPU driver with Vulkan)' });
  assert.equal(generateBackend('native', () => { throw new Error('no probe for a host backend'); }), 'native');
  assert.equal(generateBackend(undefined), 'auto');
  // The probe of a package that is not there, and of one whose create() fails, are one line too.
  assert.deepEqual(probeNodeWebGpu(null), { ok: false, reason: 'the optional webgpu package is not installed: npm install webgpu' });
  const broken = probeNodeWebGpu(join(repoRoot, 'package.json'));
  assert.equal(broken.ok, false);
  assert.match(broken.ok ? '' : broken.reason, /^the webgpu package failed: [^\n]+$/);
});

test('generate --backend webgpu: which acceleration runs on the GPU model, and one line naming the option for what does not', () => {
  assert.equal(gpuAccelRefusal({ method: 'none' }, true), null);
  assert.equal(gpuAccelRefusal({ method: 'dyllm', threshold: 0.99, attnUpdate: 'delta', oProj: 'reuse', qkvTol: null, headTol: null }, false), null);
  assert.equal(gpuAccelRefusal({ method: 'dyllm', attnUpdate: 'delta', oProj: 'recompute', qkvTol: null, headTol: null }, false), null);
  assert.equal(gpuAccelRefusal({ method: 'fast-dllm' }, false), '--accel fast-dllm: only dense steps and DyLLM run on WebGPU yet; use --accel none or dyllm, or another backend');
  assert.equal(gpuAccelRefusal({ method: 'dyllm', attnUpdate: 'rescale' }, false), '--attn-update rescale: DyLLM on WebGPU runs the delta update only; drop --attn-update');
  assert.equal(gpuAccelRefusal({ method: 'dyllm', attnUpdate: 'delta', qkvTol: 0 }, false), '--qkv-tol: the Q/K/V tolerance does not run on WebGPU yet; drop it');
  assert.equal(gpuAccelRefusal({ method: 'dyllm', attnUpdate: 'delta', headTol: 0.1 }, false), '--head-tol: the head tolerance does not run on WebGPU yet; drop it');
});

test('dyllm generate|serve|eval|bench|worker --backend webgpu: exit code 2 and exactly the probe\'s line on stderr, nothing on stdout (generate and serve: only without an adapter)', { timeout: 120_000 }, () => {
  const want = `dyllm: ${webGpuBackendMessage(() => probe)}\n`;
  // With an adapter, generate and serve run on it (test/invariants/scheduler-async.test.ts steps the server with an asynchronous model); the message path is theirs without one.
  const gpuCommands = probe.ok ? [] : [['generate', '--prompt-ids', '1,2'], ['serve', '--port', '0']];
  for (const args of [...gpuCommands, ['eval', '--tasks', join(repoRoot, 'data', 'arith-test.jsonl')], ['bench', '--tasks', join(repoRoot, 'data', 'arith-test.jsonl')], ['worker', '--queue', 'redis://127.0.0.1:1/0']]) {
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'dyllm.js'), ...args, '--backend', 'webgpu'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, `${args[0]}: ${r.stderr}`);
    assert.equal(r.stderr, want, args[0]);
    assert.equal(r.stdout, '', args[0]);
  }
  if (!probe.ok) assert.equal(want, 'dyllm: --backend webgpu: no WebGPU adapter (the webgpu package found none: needs a GPU driver with Vulkan)\n');
});

for (const config of WEBGPU_CONFIGS) {
  describe(`${config.name} (Node, webgpu package)`, { skip }, () => {
    let k: WebGpuKernels;
    before(async () => {
      k = await createNodeWebGpuKernels(config.options);
    });
    after(() => k?.destroy());
    for (const c of casesOf(config)) test(c.name, { timeout: 300_000 }, () => c.run(k));
  });
}

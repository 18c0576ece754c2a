/**
 * Kernel conformance of the native addon: the shared suite (test/helpers/kernel-suite.ts: every op against the
 * ReferenceBackend on random, odd shapes, with the tolerances and the "suite can fail" cases documented there) at
 * every ISA tier this CPU supports (when the addon is unavailable: reported as skipped with the reason, or failing
 * under DYLLM_REQUIRE_NATIVE=1; see test/helpers/native.ts), plus the synchronous backends' argument validation.
 * The WebGPU kernels run the same suite in headless Chromium (test/webgpu.conformance.test.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KernelBackend } from '../src/kernels/backend.js';
import { loadNativeAddon, loadNativeBackend, nativeAddonPath, nativeIsaTiers } from '../src/kernels/native.js';
import { needsNative, nativeStatus } from './helpers/native.js';
import { HOST_TOLERANCES, KERNEL_SUITE, SABOTAGE_SUITE } from './helpers/kernel-suite.js';

export { TOL_BF16, TOL_BF16_EXACT_INPUT, TOL_F32, relErr } from './helpers/kernel-suite.js';

// ---- the shared suite --------------------------------------------------------------------------------------------

export function runKernelSuite(label: string, makeBackend: () => KernelBackend): void {
  describe(label, () => {
    const be = makeBackend();
    for (const c of KERNEL_SUITE) test(c.name, () => c.run(be, HOST_TOLERANCES));

    test('argument validation throws instead of reading out of bounds', () => {
      const w = be.prepareWeight({ dtype: 'bf16', data: new Uint16Array(4 * 6), outFeatures: 4, inFeatures: 6 });
      assert.throws(() => be.prepareWeight({ dtype: 'bf16', data: new Uint16Array(5), outFeatures: 2, inFeatures: 3 }), /expected 2x3/);
      assert.throws(() => be.matmul(new Float32Array(12), 2, w, new Float32Array(7)), /out/);
      assert.throws(() => be.matmul(new Float32Array(11), 2, w, new Float32Array(8)), /x/);
      assert.throws(() => be.matmul(new Float32Array(12), 2, w, new Float32Array(8), new Float32Array(3)), /bias/);
      assert.throws(() => be.matmul(new Float32Array(12), 2, w, new Float32Array(8), null, new Int32Array([0, 2])), /xRows/);
      assert.throws(() => be.matmul(new Float32Array(12), 2, w, new Float32Array(8), null, new Int32Array([0])), /xRows/);
      assert.throws(() => be.attention(new Float32Array(16), 1, new Float32Array(16), new Float32Array(16), 1, 4, 3, 4, null, new Float32Array(16)), /Hkv/);
      assert.throws(() => be.attention(new Float32Array(16), 1, new Float32Array(15), new Float32Array(16), 1, 4, 4, 4, null, new Float32Array(16)),
        { name: 'RangeError', message: 'attention: k has 15 elements, needs Mk*Hkv*Dh = 1*4*4 = 16' });
      assert.throws(() => be.attention(new Float32Array(16), 1, new Float32Array(16), new Float32Array(16), 1, 4, 4, 4, new Uint8Array(0), new Float32Array(16)), /keyMask/);
      assert.throws(() => be.rope(new Float32Array(8), 1, 1, 8, new Int32Array([3]), new Float32Array(12), new Float32Array(12)), /positions/);
      assert.throws(() => be.rmsnorm(new Float32Array(8), 2, 4, new Float32Array(3), 1e-6, new Float32Array(8)), /rmsnorm/);
      assert.throws(() => be.siluMul(new Float32Array(8), new Float32Array(7), 8, new Float32Array(8)), /siluMul/);
      assert.throws(() => be.add(new Float32Array(8), new Float32Array(7), 8), /add/);
      assert.throws(() => be.attentionDelta(new Float32Array(16), 1, new Float32Array(16), 1, 4, 4, 4, null, new Int32Array([1]), new Float32Array(16), new Float32Array(16)), /cols/);
      assert.throws(() => be.cosineRows(new Float32Array(8), new Float32Array(8), 2, 4, new Float32Array(1)), /cosineRows/);
      assert.throws(() => be.matmulCols(new Float32Array(8), 2, w, 1, 2, new Float32Array(8)), /must be even/);
      assert.throws(() => be.matmulCols(new Float32Array(8), 2, w, 4, 4, new Float32Array(8)), /outside the weight's 6 input features/);
      assert.throws(() => be.gemm(new Float32Array(6), 2, 3, new Float32Array(5), 2, new Float32Array(4)), /gemm/);
      assert.throws(() => be.attentionDelta(new Float32Array(16), 1, new Float32Array(16), 1, 4, 4, 4, null, new Int32Array([0]), new Float32Array(16), new Float32Array(16), new Float32Array(3)), /probs/);
    });
  });
}

function runSabotageTests(label: string, makeBackend: () => KernelBackend): void {
  describe(`${label}: the suite detects broken kernels`, () => {
    const be = makeBackend();
    for (const c of SABOTAGE_SUITE) test(c.name, () => c.run(be, HOST_TOLERANCES));
  });
}

// ---- run for the native addon at every tier --------------------------------------------------------------------

const native = nativeStatus();

test('native addon loads and lists its ISA tiers', needsNative(), () => {
  const tiers = loadNativeAddon().tiers(); // throws the loader's reason when the addon is unavailable
  assert.ok(tiers.length >= 1, 'the addon lists at least one tier');
  assert.ok(tiers.includes('portable'), 'portable tier always present');
  assert.deepEqual(nativeIsaTiers(), tiers);
  const be = loadNativeBackend();
  assert.equal(be.name, process.env.DYLLM_ISA ? `native-${process.env.DYLLM_ISA}` : `native-${tiers[0]}`);
  assert.throws(() => loadNativeBackend({ isa: 'nonexistent-isa' }), /not available/);
});

if (native.reason !== null) {
  // One entry standing for every tier's suite: skipped with the reason, or (DYLLM_REQUIRE_NATIVE=1) failing with it.
  test(`native kernel conformance (every ISA tier) at ${nativeAddonPath}`, needsNative(), () => {
    loadNativeAddon();
  });
} else {
  for (const isa of native.tiers) runKernelSuite(`native-${isa}`, () => loadNativeBackend({ isa }));
  runSabotageTests('native', () => loadNativeBackend());
}

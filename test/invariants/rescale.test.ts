/**
 * The corrected attention update (cache/plan.ts AttnUpdate, KernelBackend.attentionRescale): when the queries do not change and only a few key/value columns do,
 * 'rescale' (exact normaliser) and 'rescale-incremental' (normaliser updated from the changed columns) give the
 * exact new attention output to fp32 rounding, on every backend; the official 'delta' update does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backendCases } from '../helpers/native.js';
import { relMaxError } from '../helpers/fixtures.js';

function rand(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return a;
}

for (const { name, make, options } of backendCases()) {
  for (const [H, Hkv, Dh] of [[4, 4, 16], [6, 2, 32]]) {
    test(`${name}: rescale is exact for unchanged queries when a few columns change (H=${H}, Hkv=${Hkv})`, options, () => {
      const be = make();
      const Mq = 7;
      const Mk = 23;
      const kv = Hkv * Dh;
      const q = rand(Mq * H * Dh, 1, 2);
      const k = rand(Mk * kv, 2, 2);
      const v = rand(Mk * kv, 3);
      const mask = new Uint8Array(Mk).fill(1);
      mask[5] = 0;
      const cOld = new Float32Array(Mq * H * Dh);
      const lseOld = new Float32Array(Mq * H);
      be.attention(q, Mq, k, v, Mk, H, Hkv, Dh, mask, cOld, lseOld);
      // Change three columns (one of them masked) of K and V, as a committed token would.
      const cols = Int32Array.from([2, 5, 17]);
      const kOld = new Float32Array(cols.length * kv);
      const vOld = new Float32Array(cols.length * kv);
      const vNew = rand(cols.length * kv, 4);
      const kNewRows = rand(cols.length * kv, 5, 3);
      const k2 = k.slice();
      const v2 = v.slice();
      cols.forEach((c, j) => {
        kOld.set(k.subarray(c * kv, (c + 1) * kv), j * kv);
        vOld.set(v.subarray(c * kv, (c + 1) * kv), j * kv);
        k2.set(kNewRows.subarray(j * kv, (j + 1) * kv), c * kv);
        v2.set(vNew.subarray(j * kv, (j + 1) * kv), c * kv);
      });
      const exact = new Float32Array(Mq * H * Dh);
      const lseExact = new Float32Array(Mq * H);
      be.attention(q, Mq, k2, v2, Mk, H, Hkv, Dh, mask, exact, lseExact);
      for (const incremental of [false, true]) {
        const c = cOld.slice();
        const l = lseOld.slice();
        be.attentionRescale(q, Mq, k2, Mk, H, Hkv, Dh, mask, cols, kOld, vOld, vNew, l, c, incremental);
        assert.ok(relMaxError(c, exact) < 2e-5, `incremental=${incremental}: ${relMaxError(c, exact)}`);
        assert.ok(relMaxError(l, lseExact) < 2e-5, `lse incremental=${incremental}`);
      }
      // The published update misses the change of the weights: clearly not exact here.
      const d = cOld.slice();
      const dv = new Float32Array(cols.length * kv);
      for (let i = 0; i < dv.length; i++) dv[i] = vNew[i] - vOld[i];
      be.attentionDelta(q, Mq, k2, Mk, H, Hkv, Dh, mask, cols, dv, d);
      assert.ok(relMaxError(d, exact) > 1e-2, `delta unexpectedly exact: ${relMaxError(d, exact)}`);
    });
  }
}

/**
 * Argument checks of the kernel entry points: the calls that used to crash the process (size products that wrapped in
 * 64-bit arithmetic, a zero head dimension that unbounded an allocation, unbounded benchmark thread counts) and the
 * message format, checked exactly. The same bad calls go through the raw addon (C++ checks, napi_args.h) and through
 * both backends (TypeScript checks, src/kernels/args.ts): the class and the message must be identical.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import type { KernelBackend } from '../src/kernels/backend.js';
import { ReferenceBackend } from '../src/kernels/reference.js';
import { loadNativeAddon, loadNativeBackend, nativeAddonPath, type NativeTier } from '../src/kernels/native.js';

const f32 = (n: number): Float32Array => new Float32Array(n);
const W = 2 ** 32;

/** [what, the op, its arguments, the error class, the message]; the op is a method of both KernelBackend and the tier. */
const SHARED: Array<[string, keyof KernelBackend & keyof NativeTier, unknown[], 'TypeError' | 'RangeError', string]> = [
  ['gemm: M*K that wraps to 0 in 64 bits', 'gemm', [f32(4), W, W, f32(4), W, f32(4)], 'RangeError', 'gemm: M*K = 4294967296*4294967296 exceeds 2^53 - 1 elements'],
  ['attentionDelta: Dh = 0 with a huge Mk', 'attentionDelta', [f32(16), 1, f32(16), 2 ** 40, 1, 1, 0, null, new Int32Array(0), f32(16), f32(16), null], 'RangeError',
    'attentionDelta: Dh must be an integer in [1, 65536], found 0'],
  ['attentionRescale: Dh = 0 with a huge Mk', 'attentionRescale', [f32(16), 1, f32(16), 2 ** 40, 1, 1, 0, null, new Int32Array(0), f32(0), f32(0), f32(0), f32(1), f32(16), false],
    'RangeError', 'attentionRescale: Dh must be an integer in [1, 65536], found 0'],
  ['attention: Mq*H*Dh that exceeds 2^53', 'attention', [f32(16), 2 ** 40, f32(16), f32(16), 1, 2 ** 20, 1, 16, null, f32(16), null], 'RangeError',
    'attention: Mq*H*Dh = 1099511627776*1048576*16 exceeds 2^53 - 1 elements'],
  ['attention: a short k', 'attention', [f32(16), 1, f32(15), f32(16), 1, 4, 4, 4, null, f32(16)], 'RangeError',
    'attention: k has 15 elements, needs Mk*Hkv*Dh = 1*4*4 = 16'],
  ['attention: Hkv does not divide H', 'attention', [f32(16), 1, f32(16), f32(16), 1, 4, 3, 4, null, f32(16)], 'RangeError', 'attention: H (4) must be a multiple of Hkv (3)'],
  ['rope: M*nHeads*Dh that exceeds 2^53', 'rope', [f32(8), W, 2 ** 31 - 1, 2, new Int32Array(1), f32(8), f32(8)], 'RangeError',
    'rope: M*nHeads*Dh = 4294967296*2147483647*2 exceeds 2^53 - 1 elements'],
  ['rope: an odd Dh', 'rope', [f32(8), 1, 1, 7, new Int32Array(1), f32(8), f32(8)], 'RangeError', 'rope: Dh (7) must be even'],
  ['rope: a position past the tables', 'rope', [f32(8), 1, 1, 8, new Int32Array([3]), f32(12), f32(12)], 'RangeError',
    'rope: positions[0] = 3 is outside the cos/sin tables (12/12 entries, 4 per position)'],
  ['logitStats: V = 0', 'logitStats', [f32(4), 1, 0, new Int32Array(1), new Float64Array(1), new Float64Array(1), null], 'RangeError',
    'logitStats: V must be an integer in [1, 2147483647], found 0'],
  ['logitStats: V past the Int32 argmax', 'logitStats', [f32(4), 0, 2 ** 31, new Int32Array(1), new Float64Array(1), new Float64Array(1), null], 'RangeError',
    'logitStats: V must be an integer in [1, 2147483647], found 2147483648'],
  ['cosineRows: a fractional size', 'cosineRows', [f32(8), f32(8), 1.5, 4, f32(2)], 'RangeError', 'cosineRows: M must be an integer in [0, 9007199254740991], found 1.5'],
  ['rmsnorm: NaN rows', 'rmsnorm', [f32(8), NaN, 4, f32(4), 1e-6, f32(8)], 'RangeError', 'rmsnorm: M must be an integer in [0, 9007199254740991], found NaN'],
  ['rmsnorm: a negative eps', 'rmsnorm', [f32(8), 2, 4, f32(4), -1, f32(8)], 'RangeError', 'rmsnorm: eps must be a finite number >= 0, found -1'],
  ['siluMul: a Float64Array', 'siluMul', [new Float64Array(8), f32(8), 8, f32(8)], 'TypeError', 'siluMul: gate must be a Float32Array, found a Float64Array'],
  ['add: a plain array', 'add', [[1, 2], f32(2), 2], 'TypeError', 'add: dst must be a Float32Array, found an Array'],
  ['add: a string size', 'add', [f32(2), f32(2), '2'], 'TypeError', 'add: n must be a number, found a string'],
  ['attentionDelta: cols as a Uint16Array', 'attentionDelta', [f32(16), 1, f32(16), 1, 4, 4, 4, null, new Uint16Array(1), f32(16), f32(16)], 'TypeError',
    'attentionDelta: cols must be an Int32Array, found a Uint16Array'],
  ['attentionDelta: a column past Mk', 'attentionDelta', [f32(16), 1, f32(16), 1, 4, 4, 4, null, new Int32Array([1]), f32(16), f32(16)], 'RangeError',
    'attentionDelta: cols[0] = 1 is outside [0, Mk) = [0, 1)'],
  ['attentionDelta: a null keyMask is allowed, an Array is not', 'attentionDelta', [f32(16), 1, f32(16), 1, 4, 4, 4, [1], new Int32Array([0]), f32(16), f32(16)], 'TypeError',
    'attentionDelta: keyMask must be a Uint8Array or null, found an Array'],
  ['attentionRescale: incremental must be a boolean', 'attentionRescale', [f32(16), 1, f32(16), 1, 4, 4, 4, null, new Int32Array(0), f32(0), f32(0), f32(0), f32(4), f32(16), 1],
    'TypeError', 'attentionRescale: incremental must be a boolean, found a number'],
];

function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'returned';
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
}

const backends: Array<[string, () => KernelBackend]> = [['reference', () => new ReferenceBackend()]];
const built = existsSync(nativeAddonPath);
if (built) backends.push(['native', () => loadNativeBackend()]);

describe('kernel argument checks: exact errors from every layer', () => {
  for (const [name, make] of backends) {
    test(`${name} backend`, () => {
      const be = make() as unknown as Record<string, (...a: unknown[]) => unknown>;
      for (const [what, op, args, cls, msg] of SHARED) assert.equal(outcome(() => be[op](...args)), `${cls}: ${msg}`, what);
      assert.equal(outcome(() => be.prepareWeight({ dtype: 'f32', data: f32(0), outFeatures: W, inFeatures: W })),
        'RangeError: prepareWeight: outFeatures*inFeatures = 4294967296*4294967296 exceeds 2^53 - 1 elements');
      assert.equal(outcome(() => be.prepareWeight({ dtype: 'bf16', data: f32(6), outFeatures: 2, inFeatures: 3 })),
        'TypeError: prepareWeight: data must be a Uint16Array, found a Float32Array');
      // q4: N·K fits, but the packed bytes N·ceil(K/32)·16 do not.
      assert.equal(outcome(() => be.prepareWeight({ dtype: 'q4', data: new Uint8Array(0), scales: new Uint16Array(0), outFeatures: 2 ** 49, inFeatures: 1 })),
        'RangeError: prepareWeight: outFeatures*ceil(inFeatures/32)*16 = 562949953421312*1*16 exceeds 2^53 - 1 elements');
      const w = (be as unknown as KernelBackend).prepareWeight({ dtype: 'bf16', data: new Uint16Array(24), outFeatures: 4, inFeatures: 6 });
      assert.equal(outcome(() => be.matmul(f32(12), 2, w, f32(8), null, new Int32Array([0, 2]))), 'RangeError: matmul: xRows[1] = 2 is outside [0, x.length/K) = [0, 2)');
      assert.equal(outcome(() => be.matmul(f32(12), 2, {}, f32(8))), 'TypeError: matmul: weight must be a prepared weight (from prepareWeight), found an object');
      assert.equal(outcome(() => be.matmulCols(f32(8), 2, w, 4, 4, f32(8))), "RangeError: matmulCols: columns [4, 4 + 4) are outside the weight's 6 input features");
    });
  }

  test('a weight prepared by the other backend is refused by name', { skip: built ? false : 'native addon not built' }, () => {
    const ref = new ReferenceBackend();
    const nat = loadNativeBackend();
    const host = { dtype: 'f32' as const, data: f32(6), outFeatures: 2, inFeatures: 3 };
    assert.equal(outcome(() => nat.matmul(f32(3), 1, ref.prepareWeight(host), f32(2))),
      'TypeError: matmul: weight must be a weight prepared by the native backend, found an object');
    assert.equal(outcome(() => ref.matmul(f32(3), 1, nat.prepareWeight(host), f32(2))),
      'TypeError: matmul: weight must be a weight prepared by the reference backend, found an object');
  });

  test('the raw addon (C++ checks) gives the same errors on every tier', { skip: built ? false : 'native addon not built' }, () => {
    const addon = loadNativeAddon();
    for (const isa of addon.tiers()) {
      const t = addon.bind(isa) as unknown as Record<string, (...a: unknown[]) => unknown>;
      for (const [what, op, args, cls, msg] of SHARED) assert.equal(outcome(() => t[op](...args)), `${cls}: ${msg}`, `${isa}: ${what}`);
      assert.equal(outcome(() => addon.prepare('f32', f32(0), W, W)),
        'RangeError: prepareWeight: outFeatures*inFeatures = 4294967296*4294967296 exceeds 2^53 - 1 elements');
      assert.equal(outcome(() => addon.prepare('q4', new Uint8Array(0), 2 ** 49, 1, new Uint16Array(0))),
        'RangeError: prepareWeight: outFeatures*ceil(inFeatures/32)*16 = 562949953421312*1*16 exceeds 2^53 - 1 elements');
      const packed = addon.prepare('bf16', new Uint16Array(24), 4, 6);
      assert.equal(outcome(() => t.matmul(f32(12), 2, packed, 4, 6, 'bf16', f32(8), null, new Int32Array([0, 2]))),
        'RangeError: matmul: xRows[1] = 2 is outside [0, x.length/K) = [0, 2)');
      assert.equal(outcome(() => t.matmul(f32(12), 2, packed, 40, 6, 'bf16', f32(80))),
        'RangeError: matmul: weight holds 448 bytes, 832 needed for a prepared 40x6 bf16 weight');
      assert.equal(outcome(() => t.matmul(f32(12), 2, packed.slice(0, 100), 4, 6, 'bf16', f32(8))),
        'RangeError: matmul: weight holds 100 bytes, 448 needed for a prepared 4x6 bf16 weight');
      assert.equal(outcome(() => t.matmul(f32(12), 2, new Float32Array(4), 4, 6, 'bf16', f32(8))),
        'TypeError: matmul: weight must be an ArrayBuffer from prepare(), found a Float32Array');
      assert.equal(outcome(() => t.matmul(f32(12), 2, packed, 4, 6, 'f16', f32(8))), "RangeError: matmul: dtype must be 'bf16' or 'f32' or 'int8' or 'q4', found 'f16'");
      // Quantised weights: the packed size follows the dtype; the activation quantiser's sizes are checked too.
      const q8 = addon.prepare('int8', new Int8Array(24), 4, 6, f32(4));
      assert.equal(outcome(() => t.matmul(f32(12), 2, q8, 40, 6, 'int8', f32(80))),
        'RangeError: matmul: weight holds 1280 bytes, 2496 needed for a prepared 40x6 int8 weight');
      assert.equal(outcome(() => t.matmulCols(f32(8), 2, q8, 4, 6, 'int8', 1, 3, f32(8))), 'returned'); // any slice of a quantised weight
      assert.equal(outcome(() => t.quantizeRows(f32(4), W, W, new Int8Array(4), f32(4))), 'RangeError: quantizeRows: M*K = 4294967296*4294967296 exceeds 2^53 - 1 elements');
      assert.equal(outcome(() => t.quantizeRows(f32(40), 1, 40, new Int8Array(40), f32(2))), 'RangeError: quantizeRows: q has 40 elements, needs M*ceil(K/32)*32 = 1*2*32 = 64');
      // The microbenchmarks start their own threads and buffers: both are bounded.
      assert.equal(outcome(() => t.peak('fma', 2 ** 31 - 1, 10)), 'RangeError: peak: threads must be an integer in [1, 256], found 2147483647');
      assert.equal(outcome(() => t.peak('fma', 1, 2 ** 40)), 'RangeError: peak: iters must be an integer in [0, 1073741824], found 1099511627776');
      assert.equal(outcome(() => t.streamRead(2 ** 40, 1, 1)), 'RangeError: streamRead: bytes must be an integer in [4096, 1073741824], found 1099511627776');
      assert.equal(outcome(() => t.streamRead(1 << 20, 1, 2 ** 31)), 'RangeError: streamRead: reps must be an integer in [0, 1000], found 2147483648');
    }
    assert.equal(outcome(() => addon.quantize('q4', 'bf16', new Uint16Array(6), 2, 3, new Uint8Array(3), new Uint16Array(2))),
      'RangeError: quantizeWeight: q has 3 elements, expected 32');
    assert.equal(outcome(() => addon.quantize('int8', 'f32', f32(0), W, W, new Int8Array(0), f32(0))),
      'RangeError: quantizeWeight: outFeatures*inFeatures = 4294967296*4294967296 exceeds 2^53 - 1 elements');
    assert.equal(outcome(() => addon.quantize('q8' as 'q4', 'f32', f32(0), 0, 0, new Int8Array(0), f32(0))),
      "RangeError: quantizeWeight: format must be 'int8' or 'q4', found 'q8'");
    assert.equal(outcome(() => addon.bind(3 as unknown as string)), 'TypeError: bind: tier name must be a string, found a number');
    assert.match(outcome(() => addon.bind('avx9')), /^RangeError: bind: ISA tier 'avx9' is unknown or not supported by this CPU \(supported: .*portable\)$/);
  });
});

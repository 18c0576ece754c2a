/**
 * Kernel argument fuzzing. Every function the native addon exports (prepare — dense and quantised —, quantize, bind,
 * tiers, threads and every bound tier function, quantizeRows included) and every KernelBackend method of the native and reference backends is called with seeded, mutated
 * arguments: extreme and inconsistent sizes (0, -1, NaN, 1.5, 2^31-1, 2^31, 2^32, 2^40, 2^53, ...), wrong array kinds
 * (Float64Array for Float32Array, Uint16Array for Int32Array, plain arrays, null, ...), wrong lengths and out-of-range
 * indices. Properties checked per call:
 *   - it returns or throws a one-line TypeError/RangeError that starts with the function's name — never a signal;
 *   - it writes nothing outside the arrays it was given, and nothing at all when it throws;
 *   - a call with a certainly invalid argument throws; the unmutated call returns;
 *   - the C++ checks (raw addon) and the TypeScript checks (backends) agree: same outcome, same message.
 *
 * A segfault must fail a test, not kill the runner, so `runFuzzChild` runs the cases in a child process (this file
 * with `--child`), one ISA tier per child. Cases are generated from (seed, index) alone, so a failure replays with
 * the printed seed. Run directly (`npm run fuzz:kernels` → `node dist/test/helpers/kernel-fuzz.js [--cases N]
 * [--seed S] [--isa T]`) it fuzzes every tier with a long budget.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HostWeight, KernelBackend } from '../../src/kernels/backend.js';
import { ReferenceBackend } from '../../src/kernels/reference.js';
import { loadNativeAddon, loadNativeBackend, nativeIsaTiers, type NativeAddon, type NativeTier } from '../../src/kernels/native.js';
import { groups, quantizeInt8, quantizeQ4 } from '../../src/kernels/quant.js';

const selfPath = fileURLToPath(import.meta.url);

// ---- seeded randomness -------------------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  constructor(readonly next: () => number) {}
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(a: readonly T[]): T {
    return a[Math.floor(this.next() * a.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// ---- guarded typed arrays ----------------------------------------------------------------------------------------

type Kind = 'Float32Array' | 'Float64Array' | 'Int32Array' | 'Uint8Array' | 'Uint16Array' | 'Int8Array';
type AnyTyped = Float32Array | Float64Array | Int32Array | Uint8Array | Uint16Array | Int16Array | Uint32Array | Int8Array;
const CTORS = { Float32Array, Float64Array, Int32Array, Uint8Array, Uint16Array, Int8Array } as const;
const GUARD = 4;

/** A view of n elements at a nonzero offset inside a buffer whose other elements are a sentinel. */
function guarded(kind: Kind, n: number, fill: (i: number) => number): AnyTyped {
  const C = CTORS[kind];
  const whole = new C(n + 2 * GUARD + 1);
  whole.fill(kind === 'Uint8Array' ? 0xa5 : kind === 'Int8Array' ? -91 : kind === 'Uint16Array' ? 0x5a5a : kind === 'Int32Array' ? -123457 : 4321.5);
  const v = whole.subarray(GUARD, GUARD + n);
  for (let i = 0; i < n; i++) v[i] = fill(i);
  return v;
}

/** A copy of a view with its own buffer (same offset, same guards). */
function cloneView(v: AnyTyped): AnyTyped {
  const C = v.constructor as new (b: ArrayBuffer, o: number, n: number) => AnyTyped;
  const buf = (v.buffer as ArrayBuffer).slice(0);
  return new C(buf, v.byteOffset, v.length);
}

// ---- cases -------------------------------------------------------------------------------------------------------

/** How an argument may be mutated. */
type Role =
  | { t: 'size'; hi?: number; lo?: number } // integer argument; lo/hi: the range every layer enforces
  | { t: 'array'; kind: Kind; need: number; optional?: boolean }
  | { t: 'index'; kind: 'Int32Array'; need: number; hi: number; checked?: number; optional?: boolean } // the first `checked` (default need) entries must be in [0, hi)
  | { t: 'bool'; optional?: boolean }
  | { t: 'dtype' }
  | { t: 'eps' }
  | { t: 'weight' } // a backend's prepared weight (resolved per backend)
  | { t: 'packed'; bytes: number } // a raw prepared weight
  | { t: 'choice'; values: string[] }
  | { t: 'fixed' };

/** A weight placeholder: each backend receives its own prepared copy (or, mutated, the other backend's). */
interface WeightToken { readonly token: 'weight'; host: HostWeight; foreign: boolean }

interface Case {
  index: number;
  op: string;
  /** Message prefix every error must start with. */
  fn: string;
  layer: 'shared' | 'backend' | 'raw';
  args: unknown[];
  roles: Role[];
  mutations: string[];
  certainlyInvalid: boolean;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const EXTREMES = [0, -1, NaN, 1.5, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 40, 2 ** 53, Infinity, -(2 ** 31), 1e-300];
const NON_NUMBERS: unknown[] = ['3', null, undefined, true, 3n, {}, [4]];
const isWeightToken = (v: unknown): v is WeightToken => typeof v === 'object' && v !== null && (v as WeightToken).token === 'weight';

function rnd(r: Rng, scale = 2): (i: number) => number {
  return () => (r.next() - 0.5) * scale;
}

interface Base { op: string; fn: string; layer: Case['layer']; args: unknown[]; roles: Role[] }

/** The valid calls, one generator per op (small random consistent shapes). */
function baseCall(r: Rng, op: string, tiers: string[]): Base {
  const f32 = (n: number, scale = 2): AnyTyped => guarded('Float32Array', n, rnd(r, scale));
  const A = (kind: Kind, need: number, optional = false): Role => ({ t: 'array', kind, need, optional });
  const S = (lo = 0, hi = MAX_SAFE): Role => ({ t: 'size', lo, hi });
  const heads = (): [number, number, number] => {
    const H = r.pick([1, 2, 4]);
    const Hkv = r.pick([1, 2, 4].filter((x) => H % x === 0));
    return [H, Hkv, r.pick([4, 8, 16, 32])];
  };
  switch (op) {
    case 'gemm': {
      const M = r.int(0, 5), K = r.int(0, 40), N = r.int(0, 40);
      return { op, fn: op, layer: 'shared', args: [f32(M * K), M, K, f32(K * N), N, f32(M * N)],
        roles: [A('Float32Array', M * K), S(), S(), A('Float32Array', K * N), S(), A('Float32Array', M * N)] };
    }
    case 'rmsnorm': {
      const M = r.int(0, 5), D = r.int(0, 40);
      return { op, fn: op, layer: 'shared', args: [f32(M * D), M, D, f32(D), 1e-5, f32(M * D)],
        roles: [A('Float32Array', M * D), S(), S(), A('Float32Array', D), { t: 'eps' }, A('Float32Array', M * D)] };
    }
    case 'rope': {
      const M = r.int(0, 5), nH = r.int(0, 4), Dh = r.pick([0, 2, 4, 8, 16]), P = 8;
      const pos = guarded('Int32Array', M, () => r.int(0, P - 1));
      const table = M ? ((Math.max(...pos) + 1) * Dh) / 2 : 0; // entries the positions use
      return { op, fn: op, layer: 'shared', args: [f32(M * nH * Dh), M, nH, Dh, pos, f32((P * Dh) / 2), f32((P * Dh) / 2)],
        roles: [A('Float32Array', M * nH * Dh), S(), S(0, 2 ** 31 - 1), S(0, 65536),
          { t: 'index', kind: 'Int32Array', need: M, hi: Dh > 0 ? P : 2 ** 31 }, A('Float32Array', table), A('Float32Array', table)] };
    }
    case 'attention': {
      const [H, Hkv, Dh] = heads();
      const Mq = r.int(0, 6), Mk = r.int(0, 20);
      const mask = r.chance(0.5) ? guarded('Uint8Array', Mk, () => (r.chance(0.8) ? 1 : 0)) : null;
      const lse = r.chance(0.5) ? f32(Mq * H) : null;
      return { op, fn: op, layer: 'shared',
        args: [f32(Mq * H * Dh), Mq, f32(Mk * Hkv * Dh), f32(Mk * Hkv * Dh), Mk, H, Hkv, Dh, mask, f32(Mq * H * Dh), lse],
        roles: [A('Float32Array', Mq * H * Dh), S(), A('Float32Array', Mk * Hkv * Dh), A('Float32Array', Mk * Hkv * Dh), S(),
          S(1, 2 ** 31 - 1), S(1, 2 ** 31 - 1), S(1, 65536), A('Uint8Array', Mk, true), A('Float32Array', Mq * H * Dh), A('Float32Array', Mq * H, true)] };
    }
    case 'attentionDelta':
    case 'attentionRescale': {
      const [H, Hkv, Dh] = heads();
      const Mq = r.int(0, 6), Mk = r.int(0, 20), nc = Mk === 0 ? 0 : r.int(0, 4);
      const mask = r.chance(0.5) ? guarded('Uint8Array', Mk, () => (r.chance(0.8) ? 1 : 0)) : null;
      const cols = guarded('Int32Array', nc, () => r.int(0, Mk - 1));
      const common: unknown[] = [f32(Mq * H * Dh), Mq, f32(Mk * Hkv * Dh), Mk, H, Hkv, Dh, mask, cols];
      const croles: Role[] = [A('Float32Array', Mq * H * Dh), S(), A('Float32Array', Mk * Hkv * Dh), S(), S(1, 2 ** 31 - 1), S(1, 2 ** 31 - 1),
        S(1, 65536), A('Uint8Array', Mk, true), { t: 'index', kind: 'Int32Array', need: 0, hi: Mk, checked: Infinity }]; // fewer columns stay valid
      const kv = nc * Hkv * Dh;
      if (op === 'attentionDelta') {
        const probs = r.chance(0.5) ? f32(Mq * H * nc) : null;
        return { op, fn: op, layer: 'shared', args: [...common, f32(kv, 0.2), f32(Mq * H * Dh), probs],
          roles: [...croles, A('Float32Array', kv), A('Float32Array', Mq * H * Dh), A('Float32Array', Mq * H * nc, true)] };
      }
      return { op, fn: op, layer: 'shared', args: [...common, f32(kv), f32(kv), f32(kv), f32(Mq * H), f32(Mq * H * Dh), r.chance(0.5)],
        roles: [...croles, A('Float32Array', kv), A('Float32Array', kv), A('Float32Array', kv), A('Float32Array', Mq * H), A('Float32Array', Mq * H * Dh), { t: 'bool' }] };
    }
    case 'cosineRows': {
      const M = r.int(0, 5), D = r.int(0, 40);
      return { op, fn: op, layer: 'shared', args: [f32(M * D), f32(M * D), M, D, f32(M)],
        roles: [A('Float32Array', M * D), A('Float32Array', M * D), S(), S(), A('Float32Array', M)] };
    }
    case 'logitStats': {
      const M = r.int(0, 5), V = r.int(1, 70);
      const ne = r.chance(0.5) ? guarded('Float64Array', M, () => 0) : null;
      return { op, fn: op, layer: 'shared',
        args: [f32(M * V, 10), M, V, guarded('Int32Array', M, () => 0), guarded('Float64Array', M, () => 0), guarded('Float64Array', M, () => 0), ne],
        roles: [A('Float32Array', M * V), S(), S(1, 2 ** 31 - 1), A('Int32Array', M), A('Float64Array', M), A('Float64Array', M), A('Float64Array', M, true)] };
    }
    case 'siluMul': {
      const n = r.int(0, 60);
      return { op, fn: op, layer: 'shared', args: [f32(n), f32(n), n, f32(n)],
        roles: [A('Float32Array', n), A('Float32Array', n), S(), A('Float32Array', n)] };
    }
    case 'add': {
      const n = r.int(0, 60);
      return { op, fn: op, layer: 'shared', args: [f32(n), f32(n), n], roles: [A('Float32Array', n), A('Float32Array', n), S()] };
    }
    case 'prepareWeight': {
      const dtype = r.pick(['bf16', 'f32'] as const), N = r.int(0, 40), K = r.int(0, 40);
      const data = dtype === 'bf16' ? guarded('Uint16Array', N * K, () => r.int(0, 65535) & 0xbfff) : f32(N * K);
      return { op, fn: 'prepareWeight', layer: 'shared', args: [dtype, data, N, K],
        roles: [{ t: 'dtype' }, A(dtype === 'bf16' ? 'Uint16Array' : 'Float32Array', N * K), S(), S()] };
    }
    case 'prepareQuant': {
      const format = r.pick(['int8', 'q4'] as const), N = r.int(0, 40), K = r.int(0, 70);
      const h = quantHost(r, format, N, K);
      const G = groups(K);
      return { op, fn: 'prepareWeight', layer: 'shared', args: [format, h.data, N, K, h.scales],
        roles: [{ t: 'choice', values: ['int8', 'q4'] }, A(format === 'int8' ? 'Int8Array' : 'Uint8Array', format === 'int8' ? N * K : N * G * 16), S(), S(),
          A(format === 'int8' ? 'Float32Array' : 'Uint16Array', format === 'int8' ? N : N * G)] };
    }
    case 'raw.quantize': {
      const format = r.pick(['int8', 'q4'] as const), dtype = r.pick(['bf16', 'f32'] as const), N = r.int(0, 40), K = r.int(0, 70);
      const G = groups(K);
      const data = dtype === 'bf16' ? guarded('Uint16Array', N * K, () => r.int(0, 65535)) : f32(N * K, 1e3);
      const q = format === 'int8' ? guarded('Int8Array', N * K, () => 0) : guarded('Uint8Array', N * G * 16, () => 0);
      const sc = format === 'int8' ? guarded('Float32Array', N, () => 0) : guarded('Uint16Array', N * G, () => 0);
      return { op, fn: 'quantizeWeight', layer: 'raw', args: [format, dtype, data, N, K, q, sc],
        roles: [{ t: 'choice', values: ['int8', 'q4'] }, { t: 'choice', values: ['bf16', 'f32'] }, A(dtype === 'bf16' ? 'Uint16Array' : 'Float32Array', N * K), S(), S(),
          A(format === 'int8' ? 'Int8Array' : 'Uint8Array', format === 'int8' ? N * K : N * G * 16), A(format === 'int8' ? 'Float32Array' : 'Uint16Array', format === 'int8' ? N : N * G)] };
    }
    case 'raw.quantizeRows': {
      const M = r.int(0, 5), K = r.int(0, 70), G = groups(K);
      return { op, fn: 'quantizeRows', layer: 'raw', args: [f32(M * K, 50), M, K, guarded('Int8Array', M * G * 32, () => 0), f32(M * G)],
        roles: [A('Float32Array', M * K), S(), S(), A('Int8Array', M * G * 32), A('Float32Array', M * G)] };
    }
    case 'matmul':
    case 'matmulCols':
    case 'raw.matmul':
    case 'raw.matmulCols': {
      const dtype = r.pick(['bf16', 'f32', 'int8', 'q4'] as const), N = r.int(0, 40), K = r.int(0, 70), M = r.int(0, 5);
      let host: HostWeight;
      if (dtype === 'int8' || dtype === 'q4') {
        const h = quantHost(r, dtype, N, K);
        host = { dtype, data: h.data as Int8Array | Uint8Array, scales: h.scales as Float32Array | Uint16Array, outFeatures: N, inFeatures: K };
      } else {
        const data = dtype === 'bf16' ? guarded('Uint16Array', N * K, () => r.int(0, 65535) & 0xbfff) : f32(N * K);
        host = { dtype, data: data as Uint16Array | Float32Array, outFeatures: N, inFeatures: K };
      }
      const w: WeightToken = { token: 'weight', host, foreign: false };
      const raw = op.startsWith('raw.');
      const fn = raw ? op.slice(4) : op;
      const wArgs: unknown[] = raw ? [w, N, K, dtype] : [w];
      const wRoles: Role[] = raw ? [{ t: 'packed', bytes: 0 }, S(), S(), { t: 'dtype' }] : [{ t: 'weight' }];
      const tail: unknown[] = raw ? [r.chance(0.5) ? r.chance(0.5) : undefined] : [];
      const tailRoles: Role[] = raw ? [{ t: 'bool', optional: true }] : [];
      if (fn === 'matmul') {
        const gather = r.chance(0.4);
        const xRowsN = r.int(1, 4);
        const x = f32((gather ? xRowsN : M) * K);
        const bias = r.chance(0.5) ? f32(N) : null;
        const xRows = gather ? guarded('Int32Array', M, () => r.int(0, xRowsN - 1)) : null;
        return { op, fn, layer: raw ? 'raw' : 'backend', args: [x, M, ...wArgs, f32(M * N), bias, xRows, ...tail],
          roles: [A('Float32Array', gather ? 0 : M * K), S(), ...wRoles, A('Float32Array', M * N), A('Float32Array', N, true),
            { t: 'index', kind: 'Int32Array', need: M, hi: K > 0 ? xRowsN : 2 ** 31, optional: true }, ...tailRoles] };
      }
      let k0 = r.int(0, K), kLen = r.int(0, K - k0);
      if (dtype === 'bf16') {
        k0 -= k0 % 2;
        if (kLen % 2 && k0 + kLen !== K) kLen -= 1;
      }
      return { op, fn, layer: raw ? 'raw' : 'backend', args: [f32(M * kLen), M, ...wArgs, k0, kLen, f32(M * N), ...tail],
        roles: [A('Float32Array', M * kLen), S(), ...wRoles, S(), S(), A('Float32Array', M * N), ...tailRoles] };
    }
    case 'raw.peak':
      return { op, fn: 'peak', layer: 'raw', args: ['fma', r.int(1, 2), r.int(0, 2000)],
        roles: [{ t: 'choice', values: ['bf16', 'fma'] }, S(1, 256), S(0, 2 ** 30)] };
    case 'raw.streamRead':
      return { op, fn: 'streamRead', layer: 'raw', args: [r.pick([4096, 65536]), r.int(1, 2), r.int(0, 2)],
        roles: [S(4096, 2 ** 30), S(1, 256), S(0, 1000)] };
    case 'raw.bind':
      return { op, fn: 'bind', layer: 'raw', args: [r.pick(tiers)], roles: [{ t: 'choice', values: tiers }] };
    case 'raw.tiers':
    case 'raw.threads':
      return { op, fn: op.slice(4), layer: 'raw', args: [], roles: [] };
    default:
      throw new Error(`kernel-fuzz: unknown op ${op}`);
  }
}

const OPS = ['gemm', 'rmsnorm', 'rope', 'attention', 'attentionDelta', 'attentionRescale', 'cosineRows', 'logitStats',
  'siluMul', 'add', 'prepareWeight', 'prepareQuant', 'matmul', 'matmulCols', 'raw.matmul', 'raw.matmulCols', 'raw.peak',
  'raw.streamRead', 'raw.bind', 'raw.tiers', 'raw.threads', 'raw.quantize', 'raw.quantizeRows'] as const;

/** A small random quantised weight's host arrays (guarded views), quantised from random f32 values. */
function quantHost(r: Rng, format: 'int8' | 'q4', N: number, K: number): { data: AnyTyped; scales: AnyTyped } {
  const dense = new Float32Array(N * K).map(() => r.next() - 0.5);
  const h = format === 'int8' ? quantizeInt8('f32', dense, N, K) : quantizeQ4('f32', dense, N, K);
  const data = guarded(format === 'int8' ? 'Int8Array' : 'Uint8Array', h.q.length, (i) => h.q[i]);
  const scales = guarded(format === 'int8' ? 'Float32Array' : 'Uint16Array', h.scales.length, (i) => h.scales[i]);
  return { data, scales };
}

const WRONG_KINDS: Record<Kind, Kind[]> = {
  Float32Array: ['Float64Array', 'Int32Array', 'Uint16Array', 'Uint8Array'],
  Float64Array: ['Float32Array', 'Int32Array'],
  Int32Array: ['Uint16Array', 'Float32Array', 'Uint8Array', 'Float64Array'],
  Uint8Array: ['Int32Array', 'Float32Array', 'Uint16Array'],
  Uint16Array: ['Int32Array', 'Float32Array', 'Uint8Array'],
  Int8Array: ['Uint8Array', 'Uint16Array', 'Float32Array'],
};

/** Mutates argument k in place; returns the description and whether the call is now certainly invalid. */
function mutate(r: Rng, c: Base, k: number): [string, boolean] {
  const role = c.roles[k];
  const old = c.args[k];
  const set = (v: unknown, invalid: boolean, what: string): [string, boolean] => {
    c.args[k] = v;
    return [`arg${k} ${what}`, invalid];
  };
  switch (role.t) {
    case 'size': {
      if (r.chance(0.15)) {
        const v = r.pick(NON_NUMBERS);
        return set(v, true, `= ${typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v)}`);
      }
      const others = c.args.filter((a, i) => c.roles[i].t === 'size' && i !== k && typeof a === 'number') as number[];
      const near = (typeof old === 'number' ? old : 1) + r.pick([-1, 1, 2, 7]);
      const v = r.chance(0.6) ? r.pick(EXTREMES) : r.chance(0.5) && others.length ? r.pick(others) : near;
      const invalid = !Number.isInteger(v) || v < (role.lo ?? 0) || v > (role.hi ?? MAX_SAFE);
      return set(v, invalid, `= ${v}`);
    }
    case 'array':
    case 'index': {
      const a = ArrayBuffer.isView(old) && !(old instanceof DataView) ? (old as AnyTyped) : null; // an earlier mutation may have replaced it
      const roll = r.next();
      if (roll < 0.3) {
        const kind = r.pick(WRONG_KINDS[role.kind]);
        const n = a ? a.length : role.need;
        return set(guarded(kind, n, () => 0), true, `-> ${kind}(${n})`);
      }
      if (roll < 0.4) return set(a ? Array.from(a) : [], true, '-> plain Array');
      if (roll < 0.5) {
        const v = r.pick([null, undefined, 0, 'x', new ArrayBuffer(8), new DataView(new ArrayBuffer(8))]);
        const optionalNull = role.optional && (v === null || v === undefined);
        return set(v, !optionalNull, `-> ${v === null ? 'null' : v instanceof DataView ? 'DataView' : v instanceof ArrayBuffer ? 'ArrayBuffer' : typeof v}`);
      }
      if (role.t === 'index' && a && a.length > 0 && roll < 0.75) {
        const j = r.int(0, a.length - 1);
        const v = r.pick([-1, role.hi, 2 ** 31 - 1, -(2 ** 31)]);
        const b = cloneView(a);
        b[j] = v;
        const invalid = j < (role.checked ?? role.need) && (v < 0 || (v >= role.hi && v <= 2 ** 31 - 1 && role.hi <= 2 ** 31 - 1));
        return set(b, invalid, `[${j}] = ${v}`);
      }
      const n0 = a ? a.length : role.need;
      const n = r.pick([0, Math.max(0, n0 - 1), n0 >> 1, n0 + 3]);
      const kind = role.kind;
      const filled = guarded(kind, n, (i) => (a && i < a.length ? a[i] : 0));
      return set(filled, n < role.need, `length ${n0} -> ${n}`);
    }
    case 'bool': {
      const v = r.pick([1, 'true', null, undefined, {}, 0]);
      return set(v, !(role.optional && (v === null || v === undefined)), `= ${JSON.stringify(v) ?? String(v)}`);
    }
    case 'dtype': {
      const v = r.pick(['bf16', 'f32', 'int8', 'q4', 'f16', 'BF16', 'q8', 3, null, '']);
      return set(v, v !== 'bf16' && v !== 'f32' && v !== 'int8' && v !== 'q4', `= ${JSON.stringify(v)}`);
    }
    case 'choice': {
      const v = r.pick([...role.values, 'avx9', 'portable ', 7, null]);
      return set(v, !(typeof v === 'string' && (role.values.includes(v) || ['avx512bf16', 'avx2', 'portable'].includes(v))), `= ${JSON.stringify(v)}`);
    }
    case 'eps': {
      const v = r.pick([NaN, -1, Infinity, 0, 1e30, '1e-5', null]);
      return set(v, !(typeof v === 'number' && v >= 0 && v !== Infinity), `= ${v}`);
    }
    case 'weight': {
      const w = old as WeightToken;
      if (r.chance(0.4)) return set({ ...w, foreign: true }, true, '-> the other backend\'s weight');
      const v = r.pick([null, {}, new ArrayBuffer(64), 5]);
      return set(v, true, `-> ${v === null ? 'null' : typeof v}`);
    }
    case 'packed': {
      const roll = r.next();
      if (roll < 0.5) return set({ ...(old as WeightToken), foreign: true }, true, '-> packed buffer cut short');
      const v = r.pick([null, new Float32Array(64), {}, 'w']);
      return set(v, true, `-> ${v === null ? 'null' : v instanceof Float32Array ? 'Float32Array' : typeof v}`);
    }
    case 'fixed':
      return ['', false];
  }
}

function makeCase(seed: number, index: number, tiers: string[]): Case {
  const r = new Rng(mulberry32((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0));
  const op = r.pick(OPS);
  const base = baseCall(r, op, tiers);
  const mutations: string[] = [];
  let invalidCount = 0;
  const nMut = base.roles.length === 0 ? 0 : r.chance(0.1) ? 0 : r.chance(0.7) ? 1 : r.int(2, 3);
  if (base.roles.length === 0 && r.chance(0.5)) base.args.push(r.pick([1, null, 'x']));
  for (let m = 0; m < nMut; m++) {
    const k = r.int(0, base.roles.length - 1);
    const [what, invalid] = mutate(r, base, k);
    mutations.push(what);
    if (invalid) invalidCount++;
  }
  return { index, ...base, mutations, certainlyInvalid: invalidCount > 0 && nMut === 1 };
}

// ---- running a case ----------------------------------------------------------------------------------------------

interface Env { addon: NativeAddon; tier: NativeTier; native: KernelBackend; ref: KernelBackend; isa: string }
type Outcome = { ok: true } | { ok: false; name: string; message: string };

/** The concrete arguments for one target: fresh copies of every typed array, weights prepared for that target. */
function materialise(c: Case, env: Env, target: 'raw' | 'native' | 'ref'): unknown[] {
  return c.args.map((a, i) => {
    if (ArrayBuffer.isView(a) && !(a instanceof DataView)) return cloneView(a as AnyTyped);
    if (isWeightToken(a)) {
      if (c.roles[i].t === 'packed') {
        const p = env.addon.prepare(a.host.dtype, a.host.data, a.host.outFeatures, a.host.inFeatures, a.host.scales);
        return a.foreign ? p.slice(0, Math.max(0, p.byteLength - 1 - (c.index % 70))) : p;
      }
      const own = target === 'ref' ? env.ref : env.native;
      const other = target === 'ref' ? env.native : env.ref;
      return (a.foreign ? other : own).prepareWeight(a.host);
    }
    return a;
  });
}

function call(c: Case, env: Env, target: 'raw' | 'native' | 'ref', args: unknown[]): Outcome {
  try {
    if (target === 'raw') {
      const name = c.op.startsWith('raw.') ? c.op.slice(4) : c.op === 'prepareWeight' || c.op === 'prepareQuant' ? 'prepare' : c.op;
      const holder = (name === 'prepare' || name === 'bind' || name === 'tiers' || name === 'threads' || name === 'quantize' ? env.addon : env.tier) as unknown as Record<string, (...a: unknown[]) => unknown>;
      holder[name](...args);
    } else {
      const be = (target === 'ref' ? env.ref : env.native) as unknown as Record<string, (...a: unknown[]) => unknown>;
      if (c.op === 'prepareWeight') be.prepareWeight({ dtype: args[0], data: args[1], outFeatures: args[2], inFeatures: args[3] });
      else if (c.op === 'prepareQuant') be.prepareWeight({ dtype: args[0], data: args[1], outFeatures: args[2], inFeatures: args[3], scales: args[4] });
      else be[c.op](...args);
    }
    return { ok: true };
  } catch (e) {
    const err = e as Error;
    return { ok: false, name: err?.constructor?.name ?? typeof e, message: String(err?.message ?? e) };
  }
}

/** Every typed array in args must equal its snapshot outside its view (always) and inside it (when the call threw). */
function checkMemory(before: unknown[], after: unknown[], threw: boolean): string | null {
  for (let i = 0; i < after.length; i++) {
    const a = after[i];
    if (!(ArrayBuffer.isView(a) && !(a instanceof DataView))) continue;
    const b = before[i] as AnyTyped;
    const x = new Uint8Array((a as AnyTyped).buffer);
    const y = new Uint8Array(b.buffer);
    const lo = (a as AnyTyped).byteOffset, hi = lo + (a as AnyTyped).byteLength;
    for (let j = 0; j < x.length; j++) {
      if (x[j] === y[j]) continue;
      if (j < lo || j >= hi) return `arg${i}: byte ${j - lo} relative to the view written (outside the array it was given)`;
      if (threw) return `arg${i}: element written although the call threw`;
    }
  }
  return null;
}

/** Runs one case on every target of its layer; returns the property violations. */
function runCase(c: Case, env: Env): string[] {
  const targets: Array<'raw' | 'native' | 'ref'> = c.layer === 'shared' ? ['raw', 'native', 'ref'] : c.layer === 'backend' ? ['native', 'ref'] : ['raw'];
  const fails: string[] = [];
  const outcomes: Outcome[] = [];
  for (const target of targets) {
    const args = materialise(c, env, target);
    const snapshot = args.map((a) => (ArrayBuffer.isView(a) && !(a instanceof DataView) ? cloneView(a as AnyTyped) : a));
    const o = call(c, env, target, args);
    outcomes.push(o);
    if (!o.ok) {
      if (o.name !== 'TypeError' && o.name !== 'RangeError') fails.push(`${target}: threw ${o.name} (expected TypeError or RangeError): ${o.message}`);
      if (!o.message.startsWith(`${c.fn}: `)) fails.push(`${target}: message does not start with '${c.fn}: ': ${o.message}`);
      if (/[\n\r]/.test(o.message) || o.message.length > 400) fails.push(`${target}: message is not one short line: ${JSON.stringify(o.message)}`);
    }
    if (o.ok && c.certainlyInvalid) fails.push(`${target}: returned, but the call is invalid (${c.mutations.join('; ')})`);
    const unitless = (c.op === 'raw.peak' || c.op === 'raw.streamRead') && (env.isa === 'portable');
    if (!o.ok && c.mutations.length === 0 && !unitless) fails.push(`${target}: the unmutated call threw ${o.name}: ${o.message}`);
    const mem = checkMemory(snapshot, args, !o.ok);
    if (mem) fails.push(`${target}: ${mem}`);
  }
  // The layers agree: same outcome class; the C++ (raw) and TypeScript messages are identical.
  const key = (o: Outcome): string => (o.ok ? 'returned' : o.name);
  const norm = (o: Outcome): string => (o.ok ? '' : o.message.replace(/(native|reference) backend/, 'backend'));
  for (let t = 1; t < outcomes.length; t++) {
    if (key(outcomes[t]) !== key(outcomes[0]) || norm(outcomes[t]) !== norm(outcomes[0])) {
      fails.push(`layers disagree: ${targets[0]} ${key(outcomes[0])} '${norm(outcomes[0])}' vs ${targets[t]} ${key(outcomes[t])} '${norm(outcomes[t])}'`);
    }
  }
  return fails;
}

function describeCase(c: Case): string {
  return `case ${c.index}: ${c.op} [${c.layer}] ${c.mutations.length ? c.mutations.join('; ') : '(unmutated)'}${c.certainlyInvalid ? ' (invalid)' : ''}`;
}

/** Child role: runs cases [first, first + count) of `seed` on tier `isa`, one stdout line per case, FAIL lines for violations. */
function childMain(): void {
  const isa = process.env.DYLLM_FUZZ_ISA ?? '';
  const seed = Number(process.env.DYLLM_FUZZ_SEED);
  const first = Number(process.env.DYLLM_FUZZ_FIRST ?? 0);
  const count = Number(process.env.DYLLM_FUZZ_CASES);
  const addon = loadNativeAddon();
  const env: Env = { addon, tier: addon.bind(isa), native: loadNativeBackend({ isa }), ref: new ReferenceBackend(), isa };
  const tiers = addon.tiers();
  let failures = 0;
  for (let i = first; i < first + count; i++) {
    const c = makeCase(seed, i, tiers);
    writeSync(1, `${describeCase(c)}\n`);
    if (process.env.DYLLM_FUZZ_SELFTEST === 'abort') process.abort(); // the harness's own test: a child that dies of a signal
    const fails = runCase(c, env);
    for (const f of fails) writeSync(1, `FAIL ${c.index} ${c.op}: ${f}\n`);
    if (fails.length) failures++;
    if (failures >= 20) break;
  }
  writeSync(1, `DONE failures=${failures}\n`);
  process.exitCode = failures ? 1 : 0;
}

// ---- the parent side -------------------------------------------------------------------------------------------

export interface FuzzResult {
  isa: string;
  seed: number;
  cases: number;
  /** Exit code and signal of the child (signal set: it crashed). */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** FAIL lines (property violations). */
  fails: string[];
  /** The last case the child started (the culprit when it crashed). */
  lastCase: string;
  done: boolean;
  stderr: string;
  replay: string;
}

/** The case budget from DYLLM_FUZZ_CASES (or the fallback when unset). */
export function fuzzCases(fallback: number): number {
  const s = process.env.DYLLM_FUZZ_CASES;
  if (s === undefined || s === '') return fallback;
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`DYLLM_FUZZ_CASES must be a positive integer, found '${s}'`);
  return n;
}

export function fuzzSeed(): number {
  const s = process.env.DYLLM_FUZZ_SEED;
  if (s === undefined || s === '') return randomInt(0, 2 ** 31);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`DYLLM_FUZZ_SEED must be a non-negative integer, found '${s}'`);
  return n;
}

/** Runs `cases` cases from index `first` of `seed` on tier `isa` in a child process. */
export function runFuzzChild(isa: string, seed: number, cases: number, first = 0, timeoutMs = 600_000, extraEnv: Record<string, string> = {}): Promise<FuzzResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [selfPath, '--child'], {
      env: { ...process.env, DYLLM_FUZZ_ISA: isa, DYLLM_FUZZ_SEED: String(seed), DYLLM_FUZZ_CASES: String(cases), DYLLM_FUZZ_FIRST: String(first), ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const fails: string[] = [];
    let lastCase = '';
    let done = false;
    let partial = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) {
        if (l.startsWith('FAIL ')) fails.push(l);
        else if (l.startsWith('case ')) lastCase = l;
        else if (l.startsWith('DONE')) done = true;
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => { stderr = (stderr + s).slice(-4000); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const replay = `DYLLM_FUZZ_SEED=${seed} DYLLM_FUZZ_CASES=${first + cases} npm run fuzz:kernels -- --isa ${isa}`;
      resolve({ isa, seed, cases, code, signal, fails, lastCase, done, stderr, replay });
    });
  });
}

/** A one-paragraph report of a failed run (empty when it passed). */
export function fuzzReport(r: FuzzResult): string {
  if (r.code === 0 && r.signal === null && r.done && r.fails.length === 0) return '';
  const how = r.signal ? `the child died of ${r.signal} during ${r.lastCase}` : !r.done ? `the child exited (code ${r.code}) during ${r.lastCase}` : `${r.fails.length} violation(s)`;
  return [`kernel fuzz on tier ${r.isa}, seed ${r.seed}: ${how}`, ...r.fails.slice(0, 20), r.stderr.trim() ? `stderr: ${r.stderr.trim()}` : '', `replay: ${r.replay}`]
    .filter(Boolean).join('\n');
}

async function cliMain(argv: string[]): Promise<void> {
  const opt = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (opt('--cases') !== undefined) process.env.DYLLM_FUZZ_CASES = opt('--cases');
  const cases = fuzzCases(20000);
  if (opt('--seed') !== undefined) process.env.DYLLM_FUZZ_SEED = opt('--seed');
  const seed = fuzzSeed();
  const isaOpt = opt('--isa');
  const tiers = isaOpt ? [isaOpt] : nativeIsaTiers();
  if (!tiers.length) throw new Error('kernel fuzz: the native addon is not built (run npm rebuild)');
  let bad = 0;
  for (const isa of tiers) {
    const t0 = Date.now();
    const r = await runFuzzChild(isa, seed, cases, 0, 3_600_000);
    const rep = fuzzReport(r);
    console.log(`kernel fuzz: tier ${isa}, seed ${seed}, ${cases} cases: ${rep ? 'FAILED' : 'ok'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    if (rep) {
      console.log(rep);
      bad++;
    }
  }
  process.exitCode = bad ? 1 : 0;
}

if (process.argv[1] === selfPath) {
  if (process.argv.includes('--child')) childMain();
  else cliMain(process.argv.slice(2)).catch((e: Error) => { console.error(`kernel fuzz: ${e.message}`); process.exitCode = 2; });
}


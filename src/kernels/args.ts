/**
 * Argument checks for the KernelBackend ops, shared by every backend and run before any memory is touched.
 *
 * Each `check*` function validates one op's arguments in argument order and throws a one-line TypeError (wrong type
 * or typed-array kind) or RangeError (a size that is not a safe non-negative integer, out of its range, or an array
 * shorter than the sizes require) naming the op and the argument, what was expected and what was found. Size products
 * are computed in float64 and refused above Number.MAX_SAFE_INTEGER, so they never wrap. The native addon repeats the
 * same checks with the same messages in C++ (src/kernels/native/napi_args.h) for callers of the raw addon.
 */
import type { HostWeight, PreparedWeight, WeightDtype } from './backend.js';
import { groups, QK } from './quant.js';

/** Largest head count / vocabulary size (they index Int32Arrays or C ints). */
export const MAX_INT32 = 2 ** 31 - 1;
/** Largest head dimension the kernels accept. */
export const MAX_HEAD_DIM = 65536;

type TypedKind = 'Float32Array' | 'Float64Array' | 'Int32Array' | 'Uint8Array' | 'Uint16Array' | 'Int8Array';

const article = (name: string): string => (/^[AEIO]/.test(name) ? `an ${name}` : `a ${name}`); // 'a Uint8Array'

/** What a value is, as the messages name it: 'null', 'a string', 'an Array', 'a Float64Array', ... */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v !== 'object') return article(typeof v);
  if (ArrayBuffer.isView(v)) return v instanceof DataView ? 'a DataView' : article((v as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag]);
  if (Array.isArray(v)) return 'an Array';
  if (v instanceof ArrayBuffer) return 'an ArrayBuffer';
  return 'an object';
}

function isKind(v: unknown, kind: TypedKind): boolean {
  return ArrayBuffer.isView(v) && !(v instanceof DataView) && (v as unknown as { [Symbol.toStringTag]: string })[Symbol.toStringTag] === kind;
}

/** A typed array of the given kind (optional: null or undefined allowed and returned as null). */
function typed(fn: string, what: string, v: unknown, kind: TypedKind, optional = false): ArrayLike<number> | null {
  if (optional && (v === null || v === undefined)) return null;
  if (!isKind(v, kind)) throw new TypeError(`${fn}: ${what} must be ${article(kind)}${optional ? ' or null' : ''}, found ${describe(v)}`);
  return v as ArrayLike<number>;
}

/** An integer in [lo, hi]. */
export function int(fn: string, what: string, v: unknown, lo = 0, hi = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') throw new TypeError(`${fn}: ${what} must be a number, found ${describe(v)}`);
  if (!(v >= lo && v <= hi) || !Number.isInteger(v)) throw new RangeError(`${fn}: ${what} must be an integer in [${lo}, ${hi}], found ${v}`);
  return v;
}

function bool(fn: string, what: string, v: unknown, optional = false): boolean {
  if (optional && (v === null || v === undefined)) return false;
  if (typeof v !== 'boolean') throw new TypeError(`${fn}: ${what} must be a boolean, found ${describe(v)}`);
  return v;
}

/** One of the listed strings; the message lists them as the C++ checks do ('a' or 'b' or 'c'). */
function choice<T extends string>(fn: string, what: string, v: unknown, choices: readonly T[]): T {
  if (typeof v === 'string' && (choices as readonly string[]).includes(v)) return v as T;
  const list = choices.map((c) => `'${c}'`).join(' or ');
  if (typeof v !== 'string') throw new TypeError(`${fn}: ${what} must be ${list}, found ${describe(v)}`);
  throw new RangeError(`${fn}: ${what} must be ${list}, found '${v.slice(0, 20)}${v.length >= 31 ? '...' : ''}'`);
}

/** The weight dtypes, in the order the messages list them. */
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['bf16', 'f32', 'int8', 'q4'];

/** Π factors (0 when one is 0), refused above 2^53 − 1; expr names it in the message ("M*N"). */
export function product(fn: string, expr: string, factors: number[]): number {
  if (factors.includes(0)) return 0;
  let p = 1;
  for (const f of factors) p *= f;
  if (p > Number.MAX_SAFE_INTEGER) throw new RangeError(`${fn}: ${expr} = ${factors.join('*')} exceeds 2^53 - 1 elements`);
  return p;
}

/** Array `what` (absent: passes) holds at least Π factors elements. */
function need(fn: string, what: string, a: ArrayLike<number> | null, expr: string, factors: number[]): void {
  const n = product(fn, expr, factors);
  if (a && a.length < n) {
    throw new RangeError(`${fn}: ${what} has ${a.length} elements, needs ${expr}${factors.length > 1 ? ` = ${factors.join('*')}` : ''} = ${n}`);
  }
}

/** Every idx[0..n) in [0, hi). */
function indices(fn: string, what: string, idx: ArrayLike<number>, n: number, hi: number, hiName: string): void {
  for (let c = 0; c < n; c++) {
    if (idx[c] < 0 || idx[c] >= hi) throw new RangeError(`${fn}: ${what}[${c}] = ${idx[c]} is outside [0, ${hiName}) = [0, ${hi})`);
  }
}

/** The attention shape arguments: H, Hkv ≥ 1 with H a multiple of Hkv, 1 ≤ Dh ≤ 65536. */
function heads(fn: string, H: unknown, Hkv: unknown, Dh: unknown): void {
  const h = int(fn, 'H', H, 1, MAX_INT32);
  const hkv = int(fn, 'Hkv', Hkv, 1, MAX_INT32);
  int(fn, 'Dh', Dh, 1, MAX_HEAD_DIM);
  if (h % hkv !== 0) throw new RangeError(`${fn}: H (${h}) must be a multiple of Hkv (${hkv})`);
}

/** A prepared weight's shape (any backend's: the backend checks its own payload). */
function weight(fn: string, w: unknown): { N: number; K: number; dtype: WeightDtype } {
  const p = w as PreparedWeight | null;
  if (typeof p !== 'object' || p === null || !WEIGHT_DTYPES.includes(p.dtype) ||
      !Number.isSafeInteger(p.outFeatures) || !Number.isSafeInteger(p.inFeatures) || p.outFeatures < 0 || p.inFeatures < 0) {
    throw new TypeError(`${fn}: weight must be a prepared weight (from prepareWeight), found ${describe(w)}`);
  }
  return { N: p.outFeatures, K: p.inFeatures, dtype: p.dtype };
}

/** The array kinds of a host weight's data and scales, by dtype. */
const DATA_KIND: Record<WeightDtype, TypedKind> = { bf16: 'Uint16Array', f32: 'Float32Array', int8: 'Int8Array', q4: 'Uint8Array' };
const SCALE_KIND: Record<'int8' | 'q4', TypedKind> = { int8: 'Float32Array', q4: 'Uint16Array' };

/**
 * A host weight's fields in the order the native prepare(dtype, data, outFeatures, inFeatures, scales) checks its
 * arguments: dtype, data's kind, the sizes, data's length, then (quantised dtypes) the scales' kind and length.
 */
export function checkPrepareWeight(w: HostWeight): void {
  const fn = 'prepareWeight';
  if (typeof w !== 'object' || w === null) throw new TypeError(`${fn}: weight must be an object {dtype, data, outFeatures, inFeatures}, found ${describe(w)}`);
  const dt = choice(fn, 'dtype', w.dtype, WEIGHT_DTYPES);
  const data = typed(fn, 'data', w.data, DATA_KIND[dt])!;
  const N = int(fn, 'outFeatures', w.outFeatures);
  const K = int(fn, 'inFeatures', w.inFeatures);
  const NK = product(fn, 'outFeatures*inFeatures', [N, K]);
  if (dt === 'bf16' || dt === 'f32' || dt === 'int8') {
    if (data.length !== NK) throw new RangeError(`${fn}: data has ${data.length} elements, expected ${N}x${K} = ${NK}`);
  } else {
    const bytes = product(fn, 'outFeatures*ceil(inFeatures/32)*16', [N, groups(K), QK / 2]);
    if (data.length !== bytes) throw new RangeError(`${fn}: data has ${data.length} elements, expected ${N}x${groups(K) * (QK / 2)} = ${bytes} (two 4-bit values per byte, inFeatures padded to a multiple of 32)`);
  }
  if (dt === 'int8' || dt === 'q4') {
    const scales = typed(fn, 'scales', w.scales, SCALE_KIND[dt])!;
    const ns = dt === 'int8' ? N : N * groups(K);
    if (scales.length !== ns) {
      throw new RangeError(`${fn}: scales has ${scales.length} elements, expected ${dt === 'int8' ? `outFeatures = ${N}` : `${N}x${groups(K)} = ${ns} (one per 32 input features)`}`);
    }
    if (w.quant !== undefined && w.quant !== null) throw new TypeError(`${fn}: quant applies to dense weights only, found quant '${String(w.quant)}' on a weight of dtype ${dt}`);
  } else if (w.quant !== undefined && w.quant !== null) {
    choice(fn, 'quant', w.quant, ['int8', 'q4'] as const);
  }
}

export function checkMatmul(x: unknown, M: unknown, w: unknown, out: unknown, bias: unknown, xRows: unknown): void {
  const fn = 'matmul';
  const xa = typed(fn, 'x', x, 'Float32Array')!;
  const m = int(fn, 'M', M);
  const { N, K } = weight(fn, w);
  const o = typed(fn, 'out', out, 'Float32Array');
  const b = typed(fn, 'bias', bias, 'Float32Array', true);
  const r = typed(fn, 'xRows', xRows, 'Int32Array', true);
  need(fn, 'out', o, 'M*N', [m, N]);
  need(fn, 'bias', b, 'N', [N]);
  if (r) {
    need(fn, 'xRows', r, 'M', [m]);
    indices(fn, 'xRows', r, m, K > 0 ? Math.floor(xa.length / K) : MAX_INT32 + 1, 'x.length/K');
  } else {
    need(fn, 'x', xa, 'M*K', [m, K]);
  }
}

export function checkMatmulCols(x: unknown, M: unknown, w: unknown, k0: unknown, kLen: unknown, out: unknown): void {
  const fn = 'matmulCols';
  const xa = typed(fn, 'x', x, 'Float32Array');
  const m = int(fn, 'M', M);
  const { N, K, dtype: dt } = weight(fn, w);
  const c0 = int(fn, 'k0', k0);
  const len = int(fn, 'kLen', kLen);
  const o = typed(fn, 'out', out, 'Float32Array');
  const end = c0 + len;
  if (end > K) throw new RangeError(`${fn}: columns [${c0}, ${c0} + ${len}) are outside the weight's ${K} input features`);
  if (dt === 'bf16' && (c0 % 2 !== 0 || (len % 2 !== 0 && end !== K))) {
    throw new RangeError(`${fn}: bf16 weights are packed in input pairs; k0 (${c0}) and kLen (${len}) must be even`);
  }
  need(fn, 'x', xa, 'M*kLen', [m, len]);
  need(fn, 'out', o, 'M*N', [m, N]);
}

export function checkGemm(a: unknown, M: unknown, K: unknown, b: unknown, N: unknown, out: unknown): void {
  const fn = 'gemm';
  const aa = typed(fn, 'a', a, 'Float32Array');
  const m = int(fn, 'M', M);
  const k = int(fn, 'K', K);
  const ba = typed(fn, 'b', b, 'Float32Array');
  const n = int(fn, 'N', N);
  const o = typed(fn, 'out', out, 'Float32Array');
  need(fn, 'a', aa, 'M*K', [m, k]);
  need(fn, 'b', ba, 'K*N', [k, n]);
  need(fn, 'out', o, 'M*N', [m, n]);
}

export function checkRmsnorm(x: unknown, M: unknown, D: unknown, weight: unknown, eps: unknown, out: unknown): void {
  const fn = 'rmsnorm';
  const xa = typed(fn, 'x', x, 'Float32Array');
  const m = int(fn, 'M', M);
  const d = int(fn, 'D', D);
  const w = typed(fn, 'weight', weight, 'Float32Array');
  if (typeof eps !== 'number') throw new TypeError(`${fn}: eps must be a number, found ${describe(eps)}`);
  if (!(eps >= 0) || eps === Infinity) throw new RangeError(`${fn}: eps must be a finite number >= 0, found ${eps}`);
  const o = typed(fn, 'out', out, 'Float32Array');
  need(fn, 'x', xa, 'M*D', [m, d]);
  need(fn, 'weight', w, 'D', [d]);
  need(fn, 'out', o, 'M*D', [m, d]);
}

export function checkRope(x: unknown, M: unknown, nHeads: unknown, Dh: unknown, positions: unknown, cos: unknown, sin: unknown): void {
  const fn = 'rope';
  const xa = typed(fn, 'x', x, 'Float32Array');
  const m = int(fn, 'M', M);
  const nh = int(fn, 'nHeads', nHeads, 0, MAX_INT32);
  const dh = int(fn, 'Dh', Dh, 0, MAX_HEAD_DIM);
  const pos = typed(fn, 'positions', positions, 'Int32Array')!;
  const c = typed(fn, 'cos', cos, 'Float32Array')!;
  const s = typed(fn, 'sin', sin, 'Float32Array')!;
  if (dh % 2 !== 0) throw new RangeError(`${fn}: Dh (${dh}) must be even`);
  need(fn, 'x', xa, 'M*nHeads*Dh', [m, nh, dh]);
  need(fn, 'positions', pos, 'M', [m]);
  const h = dh / 2;
  const table = Math.min(c.length, s.length);
  for (let i = 0; i < m; i++) {
    if (pos[i] < 0 || (pos[i] + 1) * h > table) {
      throw new RangeError(`${fn}: positions[${i}] = ${pos[i]} is outside the cos/sin tables (${c.length}/${s.length} entries, ${h} per position)`);
    }
  }
}

export function checkAttention(
  q: unknown, Mq: unknown, k: unknown, v: unknown, Mk: unknown, H: unknown, Hkv: unknown, Dh: unknown,
  keyMask: unknown, out: unknown, lse: unknown,
): void {
  const fn = 'attention';
  const qa = typed(fn, 'q', q, 'Float32Array');
  const mq = int(fn, 'Mq', Mq);
  const ka = typed(fn, 'k', k, 'Float32Array');
  const va = typed(fn, 'v', v, 'Float32Array');
  const mk = int(fn, 'Mk', Mk);
  heads(fn, H, Hkv, Dh);
  const mask = typed(fn, 'keyMask', keyMask, 'Uint8Array', true);
  const o = typed(fn, 'out', out, 'Float32Array');
  const l = typed(fn, 'lse', lse, 'Float32Array', true);
  const [h, hkv, dh] = [H, Hkv, Dh] as number[];
  need(fn, 'q', qa, 'Mq*H*Dh', [mq, h, dh]);
  need(fn, 'k', ka, 'Mk*Hkv*Dh', [mk, hkv, dh]);
  need(fn, 'v', va, 'Mk*Hkv*Dh', [mk, hkv, dh]);
  need(fn, 'keyMask', mask, 'Mk', [mk]);
  need(fn, 'out', o, 'Mq*H*Dh', [mq, h, dh]);
  need(fn, 'lse', l, 'Mq*H', [mq, h]);
}

export function checkAttentionDelta(
  q: unknown, Mq: unknown, k: unknown, Mk: unknown, H: unknown, Hkv: unknown, Dh: unknown,
  keyMask: unknown, cols: unknown, dv: unknown, ctx: unknown, probs: unknown,
): void {
  const fn = 'attentionDelta';
  const qa = typed(fn, 'q', q, 'Float32Array');
  const mq = int(fn, 'Mq', Mq);
  const ka = typed(fn, 'k', k, 'Float32Array');
  const mk = int(fn, 'Mk', Mk);
  heads(fn, H, Hkv, Dh);
  const mask = typed(fn, 'keyMask', keyMask, 'Uint8Array', true);
  const c = typed(fn, 'cols', cols, 'Int32Array')!;
  const d = typed(fn, 'dv', dv, 'Float32Array');
  const x = typed(fn, 'ctx', ctx, 'Float32Array');
  const p = typed(fn, 'probs', probs, 'Float32Array', true);
  const [h, hkv, dh] = [H, Hkv, Dh] as number[];
  const nc = c.length;
  need(fn, 'q', qa, 'Mq*H*Dh', [mq, h, dh]);
  need(fn, 'k', ka, 'Mk*Hkv*Dh', [mk, hkv, dh]);
  need(fn, 'keyMask', mask, 'Mk', [mk]);
  need(fn, 'dv', d, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
  need(fn, 'ctx', x, 'Mq*H*Dh', [mq, h, dh]);
  need(fn, 'probs', p, 'Mq*H*cols.length', [mq, h, nc]);
  indices(fn, 'cols', c, nc, mk, 'Mk');
}

export function checkAttentionRescale(
  q: unknown, Mq: unknown, k: unknown, Mk: unknown, H: unknown, Hkv: unknown, Dh: unknown,
  keyMask: unknown, cols: unknown, kOld: unknown, vOld: unknown, vNew: unknown, lse: unknown, ctx: unknown, incremental: unknown,
): void {
  const fn = 'attentionRescale';
  const qa = typed(fn, 'q', q, 'Float32Array');
  const mq = int(fn, 'Mq', Mq);
  const ka = typed(fn, 'k', k, 'Float32Array');
  const mk = int(fn, 'Mk', Mk);
  heads(fn, H, Hkv, Dh);
  const mask = typed(fn, 'keyMask', keyMask, 'Uint8Array', true);
  const c = typed(fn, 'cols', cols, 'Int32Array')!;
  const ko = typed(fn, 'kOld', kOld, 'Float32Array');
  const vo = typed(fn, 'vOld', vOld, 'Float32Array');
  const vn = typed(fn, 'vNew', vNew, 'Float32Array');
  const l = typed(fn, 'lse', lse, 'Float32Array');
  const x = typed(fn, 'ctx', ctx, 'Float32Array');
  bool(fn, 'incremental', incremental);
  const [h, hkv, dh] = [H, Hkv, Dh] as number[];
  const nc = c.length;
  need(fn, 'q', qa, 'Mq*H*Dh', [mq, h, dh]);
  need(fn, 'k', ka, 'Mk*Hkv*Dh', [mk, hkv, dh]);
  need(fn, 'keyMask', mask, 'Mk', [mk]);
  need(fn, 'kOld', ko, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
  need(fn, 'vOld', vo, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
  need(fn, 'vNew', vn, 'cols.length*Hkv*Dh', [nc, hkv, dh]);
  need(fn, 'lse', l, 'Mq*H', [mq, h]);
  need(fn, 'ctx', x, 'Mq*H*Dh', [mq, h, dh]);
  indices(fn, 'cols', c, nc, mk, 'Mk');
}

export function checkCosineRows(a: unknown, b: unknown, M: unknown, D: unknown, out: unknown): void {
  const fn = 'cosineRows';
  const aa = typed(fn, 'a', a, 'Float32Array');
  const ba = typed(fn, 'b', b, 'Float32Array');
  const m = int(fn, 'M', M);
  const d = int(fn, 'D', D);
  const o = typed(fn, 'out', out, 'Float32Array');
  need(fn, 'a', aa, 'M*D', [m, d]);
  need(fn, 'b', ba, 'M*D', [m, d]);
  need(fn, 'out', o, 'M', [m]);
}

export function checkLogitStats(logits: unknown, M: unknown, V: unknown, argmax: unknown, p1: unknown, p2: unknown, negEntropy: unknown): void {
  const fn = 'logitStats';
  const x = typed(fn, 'logits', logits, 'Float32Array');
  const m = int(fn, 'M', M);
  const v = int(fn, 'V', V, 1, MAX_INT32); // the argmax is an Int32Array index
  const am = typed(fn, 'argmax', argmax, 'Int32Array');
  const a1 = typed(fn, 'p1', p1, 'Float64Array');
  const a2 = typed(fn, 'p2', p2, 'Float64Array');
  const ne = typed(fn, 'negEntropy', negEntropy, 'Float64Array', true);
  need(fn, 'logits', x, 'M*V', [m, v]);
  need(fn, 'argmax', am, 'M', [m]);
  need(fn, 'p1', a1, 'M', [m]);
  need(fn, 'p2', a2, 'M', [m]);
  need(fn, 'negEntropy', ne, 'M', [m]);
}

export function checkSiluMul(gate: unknown, up: unknown, n: unknown, out: unknown): void {
  const fn = 'siluMul';
  const g = typed(fn, 'gate', gate, 'Float32Array');
  const u = typed(fn, 'up', up, 'Float32Array');
  const len = int(fn, 'n', n);
  const o = typed(fn, 'out', out, 'Float32Array');
  need(fn, 'gate', g, 'n', [len]);
  need(fn, 'up', u, 'n', [len]);
  need(fn, 'out', o, 'n', [len]);
}

export function checkAdd(dst: unknown, src: unknown, n: unknown): void {
  const fn = 'add';
  const d = typed(fn, 'dst', dst, 'Float32Array');
  const s = typed(fn, 'src', src, 'Float32Array');
  const len = int(fn, 'n', n);
  need(fn, 'dst', d, 'n', [len]);
  need(fn, 'src', s, 'n', [len]);
}

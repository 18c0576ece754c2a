/**
 * Per-row statistics of logits[M, V] for the samplers, so only 4 numbers per row cross back to the host: the argmax
 * (lowest index on ties), p1 = softmax probability of the argmax, p2 = the second largest probability, and
 * Σ p·log(p + 1e-10) (Dream's negative entropy). One workgroup of 256 per row, three passes over the row.
 *
 * The reference semantics (../../reference.ts) for special values, reproduced from the bit patterns (WGSL gives no
 * IEEE guarantees for infinities and NaNs): NaN entries never win the argmax; a row whose maximum is −∞ (all −∞ or
 * NaN) keeps index 0; a row holding a NaN, or whose maximum is ±∞, has NaN p1 and entropy, and a NaN p2 unless no
 * second value above −∞ exists (then p2 = 0).
 *
 * Precision: exp, log and the sums are f32 (the reference is float64); terms more than 104 below the maximum
 * underflow to 0 as they do in f32. Output stats[m·4 + 0..3] = argmax, then the f32 bits of p1, p2, negEntropy.
 */
import { PRELUDE } from './common.js';

export const LOGIT_STATS = /* wgsl */ `${PRELUDE}
struct P { M: u32, V: u32, lo: u32, so: u32, entropy: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> lg: array<u32>;
@group(0) @binding(2) var<storage, read_write> st: array<u32>;
var<workgroup> rk: array<u32, 256>;
var<workgroup> ri: array<u32, 256>;
var<workgroup> rn: array<u32, 256>;
var<workgroup> rf: array<f32, 256>;
const NONE: u32 = 0xffffffffu;

fn isNan(b: u32) -> bool { return (b & 0x7fffffffu) > 0x7f800000u; }
fn isFinite(b: u32) -> bool { return (b & 0x7f800000u) != 0x7f800000u; }
// Order-preserving key of a non-NaN float (−0 as +0): larger float, larger key; every key is > 0.
fn key(bits: u32) -> u32 {
  var b = bits;
  if (b == 0x80000000u) { b = 0u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}
fn unkey(k: u32) -> u32 {
  if ((k & 0x80000000u) != 0u) { return k & 0x7fffffffu; }
  return ~k;
}
// (key, index) pairs: the larger key wins, the lower index on ties; (0, NONE) is "no candidate".
fn better(k1: u32, i1: u32, k2: u32, i2: u32) -> bool { return k2 > k1 || (k2 == k1 && i2 < i1); }
fn reduceArg(k: u32, i: u32, n: u32, li: u32) -> vec3u {
  rk[li] = k; ri[li] = i; rn[li] = n;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) {
      if (better(rk[li], ri[li], rk[li + s], ri[li + s])) { rk[li] = rk[li + s]; ri[li] = ri[li + s]; }
      rn[li] = max(rn[li], rn[li + s]);
    }
    workgroupBarrier();
  }
  let r = vec3u(rk[0], ri[0], rn[0]);
  workgroupBarrier();
  return r;
}
fn reduceSum(v: f32, li: u32) -> f32 {
  rf[li] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (li < s) { rf[li] = rf[li] + rf[li + s]; }
    workgroupBarrier();
  }
  let r = rf[0];
  workgroupBarrier();
  return r;
}
// e^(x − m) for x ≤ m, 0 when it underflows f32 (and for x = −∞); no infinite intermediate.
fn expBelow(xb: u32, m: f32) -> f32 {
  if (!isFinite(xb)) { return 0.0; }
  let x = bitcast<f32>(xb);
  if (x < m - 104.0) { return 0.0; }
  return exp(min(x - m, 0.0));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wgIndex(wid, nwg);
  if (row >= p.M) { return; }
  let base = p.lo + row * p.V;
  // Pass 1: argmax over non-NaN entries (first index of the largest), and whether any entry is NaN.
  var bk = 0u;
  var bi = NONE;
  var nan = 0u;
  for (var v = li; v < p.V; v = v + 256u) {
    let b = lg[base + v];
    if (isNan(b)) { nan = 1u; continue; }
    let k = key(b);
    if (better(bk, bi, k, v)) { bk = k; bi = v; }
  }
  let r1 = reduceArg(bk, bi, nan, li);
  let negInfKey = key(NEG_INF_BITS);
  let maxNegInf = r1.x <= negInfKey; // no candidate, or the maximum is −∞
  let best = select(r1.y, 0u, maxNegInf);
  let maxBits = unkey(r1.x);
  let rowNan = r1.z != 0u || maxNegInf || maxBits == 0x7f800000u;
  let m = select(bitcast<f32>(maxBits), 0.0, rowNan); // the finite maximum (0 in NaN rows: their sums are unused)
  // Pass 2: the second largest value (over v ≠ best) and z = Σ e^(x − max).
  var sk = 0u;
  var z = 0.0;
  var c = 0.0; // Kahan compensation
  for (var v = li; v < p.V; v = v + 256u) {
    let b = lg[base + v];
    if (isNan(b)) { continue; }
    if (v != best) { sk = max(sk, key(b)); }
    let y = expBelow(b, m) - c;
    let t = z + y;
    c = (t - z) - y;
    z = t;
  }
  let r2 = reduceArg(sk, 0u, 0u, li);
  let zt = reduceSum(z, li);
  let secondNegInf = r2.x <= negInfKey;
  // Pass 3: Σ p·log(p + 1e-10).
  var h = 0.0;
  if (p.entropy != 0u) {
    for (var v = li; v < p.V; v = v + 256u) {
      let b = lg[base + v];
      if (isNan(b)) { continue; }
      let q = expBelow(b, m) / zt;
      h = h + q * log(q + 1e-10);
    }
  }
  let ht = reduceSum(h, li);
  if (li == 0u) {
    let o = p.so + row * 4u;
    st[o] = best;
    st[o + 1u] = select(bitcast<u32>(1.0 / zt), NAN_BITS, rowNan);
    var p2 = 0u;
    if (!secondNegInf) { p2 = select(bitcast<u32>(expBelow(unkey(r2.x), m) / zt), NAN_BITS, rowNan); }
    st[o + 2u] = p2;
    st[o + 3u] = select(select(0u, bitcast<u32>(ht), p.entropy != 0u), NAN_BITS, rowNan);
  }
}
`;

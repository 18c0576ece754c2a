/**
 * Attention kernels: one workgroup of 64 invocations per (query row, query head); the query row sits in workgroup
 * memory (Dh ≤ 256), keys are visited in chunks of 64 (one score per invocation), and each invocation accumulates
 * up to 4 of the head's Dh output values. Query head h reads KV head h / (H / Hkv); scores are q·k · scale.
 *
 * A key is live when there is no mask or its mask entry is nonzero; masked keys carry an explicit flag (no −∞
 * arithmetic). Softmax statistics run online over the chunks (running maximum m, normaliser z), in f32.
 */
import { PRELUDE, reductions } from './common.js';

const COMMON = /* wgsl */ `${PRELUDE}${reductions(64)}
const WG: u32 = 64u;
struct P {
  Mq: u32, Mk: u32, H: u32, Hkv: u32, Dh: u32, scale: f32,
  qo: u32, ko: u32, vo: u32, oo: u32, mo: u32, hasMask: u32, lo: u32, hasLse: u32,
  co: u32, nc: u32, dvo: u32, po: u32, hasProbs: u32, kOldo: u32, vOldo: u32, vNewo: u32, so: u32, incremental: u32,
}
@group(0) @binding(0) var<uniform> p: P;
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
var<workgroup> lv: array<u32, 64>;
var<workgroup> lseSh: u32;
`;

/** Loads the (i, h) query row into workgroup memory; returns (i, h, kv head). */
const LOAD_Q = /* wgsl */ `
fn loadQ(idx: u32, li: u32) -> vec3u {
  let i = idx / p.H;
  let h = idx % p.H;
  let qb = p.qo + (i * p.H + h) * p.Dh;
  for (var d = li; d < p.Dh; d = d + WG) { qs[d] = q[qb + d]; }
  workgroupBarrier();
  return vec3u(i, h, h / (p.H / p.Hkv));
}
fn isLive(j: u32) -> bool { return p.hasMask == 0u || mask[p.mo + j] != 0u; }
fn scoreK(base: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < p.Dh; d = d + 1u) { s = s + qs[d] * k[base + d]; }
  return s * p.scale;
}
`;

/** Online (max, normaliser) of the (i, h) row's scores over all Mk keys; m stays NEG when no key is live. */
const ONLINE_NORMALISER = /* wgsl */ `
fn normaliser(kvh: u32, li: u32) -> vec2<f32> {
  var m = NEG;
  var z = 0.0;
  let kvStride = p.Hkv * p.Dh;
  for (var j0 = 0u; j0 < p.Mk; j0 = j0 + WG) {
    let j = j0 + li;
    var s = NEG;
    var live = false;
    if (j < p.Mk && isLive(j)) { live = true; s = scoreK(p.ko + j * kvStride + kvh * p.Dh); }
    let mNew = max(m, reduceMax(s, li));
    let zs = reduceSum(select(0.0, exp(s - mNew), live), li);
    z = z * exp(max(m - mNew, -200.0)) + zs;
    m = mNew;
  }
  return vec2<f32>(m, z);
}
`;

/** out = softmax(q·Kᵀ·scale) · V (0 for a row with no live key); lse = m + log z (−∞ bits for such a row). */
export const ATTENTION = /* wgsl */ `${COMMON}
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> mask: array<u32>;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<u32>;
${LOAD_Q}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wgIndex(wid, nwg);
  if (idx >= p.Mq * p.H) { return; }
  let ihk = loadQ(idx, li);
  let kvh = ihk.z;
  let kvStride = p.Hkv * p.Dh;
  var m = NEG;
  var z = 0.0;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var j0 = 0u; j0 < p.Mk; j0 = j0 + WG) {
    let j = j0 + li;
    var s = NEG;
    var live = 0u;
    if (j < p.Mk && isLive(j)) { live = 1u; s = scoreK(p.ko + j * kvStride + kvh * p.Dh); }
    sc[li] = s;
    lv[li] = live;
    let mNew = max(m, reduceMax(s, li)); // the reduction's barriers publish sc and lv
    let alpha = exp(max(m - mNew, -200.0));
    z = z * alpha;
    for (var t = 0u; t < 4u; t = t + 1u) { acc[t] = acc[t] * alpha; }
    let cnt = min(WG, p.Mk - j0);
    for (var jj = 0u; jj < cnt; jj = jj + 1u) {
      if (lv[jj] != 0u) {
        let pj = exp(sc[jj] - mNew);
        z = z + pj;
        let vb = p.vo + (j0 + jj) * kvStride + kvh * p.Dh;
        for (var t = 0u; t < 4u; t = t + 1u) {
          let d = li + t * WG;
          if (d < p.Dh) { acc[t] = acc[t] + pj * v[vb + d]; }
        }
      }
    }
    m = mNew;
    workgroupBarrier();
  }
  let ob = p.oo + idx * p.Dh;
  for (var t = 0u; t < 4u; t = t + 1u) {
    let d = li + t * WG;
    if (d < p.Dh) { o[ob + d] = select(0.0, acc[t] / z, z > 0.0); }
  }
  if (li == 0u && p.hasLse != 0u) { lse[p.lo + idx] = select(NEG_INF_BITS, bitcast<u32>(m + log(z)), z > 0.0); }
}
`;

/**
 * DyLLM's delta update: ctx[i,h] += Σ_c softmax(q·Kᵀ·scale)[cols[c]] · dv[c, kv head], the softmax over all Mk
 * current keys; probs[i,h,c] (optional) receives those probabilities (0 for hidden keys). A row with no live key
 * is left as it is. A column index outside [0, Mk) contributes nothing.
 */
export const ATTENTION_DELTA = /* wgsl */ `${COMMON}
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> cols: array<i32>;
@group(0) @binding(5) var<storage, read_write> dv: array<f32>;
@group(0) @binding(6) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(7) var<storage, read_write> probs: array<f32>;
${LOAD_Q}${ONLINE_NORMALISER}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wgIndex(wid, nwg);
  if (idx >= p.Mq * p.H) { return; }
  let ihk = loadQ(idx, li);
  let kvh = ihk.z;
  let kvStride = p.Hkv * p.Dh;
  let mz = normaliser(kvh, li);
  let anyLive = mz.x > NEG;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var c0 = 0u; c0 < p.nc; c0 = c0 + WG) {
    let c = c0 + li;
    var pc = 0.0;
    if (c < p.nc) {
      let col = cols[p.co + c];
      if (anyLive && col >= 0 && u32(col) < p.Mk && isLive(u32(col))) {
        pc = exp(scoreK(p.ko + u32(col) * kvStride + kvh * p.Dh) - mz.x) / mz.y;
      }
      if (p.hasProbs != 0u) { probs[p.po + idx * p.nc + c] = pc; }
    }
    sc[li] = pc;
    workgroupBarrier();
    let cnt = min(WG, p.nc - c0);
    for (var cc = 0u; cc < cnt; cc = cc + 1u) {
      let w = sc[cc];
      if (w != 0.0) {
        let vb = p.dvo + (c0 + cc) * kvStride + kvh * p.Dh;
        for (var t = 0u; t < 4u; t = t + 1u) {
          let d = li + t * WG;
          if (d < p.Dh) { acc[t] = acc[t] + w * dv[vb + d]; }
        }
      }
    }
    workgroupBarrier();
  }
  if (anyLive) {
    let cb = p.oo + idx * p.Dh;
    for (var t = 0u; t < 4u; t = t + 1u) {
      let d = li + t * WG;
      if (d < p.Dh) { ctx[cb + d] = ctx[cb + d] + acc[t]; }
    }
  }
}
`;

/**
 * The corrected (rescale) update, pass 1 of 2: per (i, h) with a finite cached lse, the ratio r = Z_old / Z_new, the
 * new lse, and the weights e^(l_new,c − lse_new), e^(l_old,c − lse_new) of every changed column, into
 * scratch[(i·H + h)·(2 + 2·nc) ..] = [r, lse_new, (w_new, w_old) per column] (f32 bits). Rows whose lse is −∞ are
 * skipped (pass 2 skips them too). The split keeps each pass within 8 storage bindings, WebGPU's default limit.
 */
export const RESCALE_WEIGHTS = /* wgsl */ `${COMMON}
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> mask: array<u32>;
@group(0) @binding(4) var<storage, read_write> cols: array<i32>;
@group(0) @binding(5) var<storage, read_write> kOld: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<u32>;
@group(0) @binding(7) var<storage, read_write> scratch: array<u32>;
${LOAD_Q}${ONLINE_NORMALISER}
fn scoreOld(base: u32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < p.Dh; d = d + 1u) { s = s + qs[d] * kOld[base + d]; }
  return s * p.scale;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wgIndex(wid, nwg);
  if (idx >= p.Mq * p.H) { return; }
  if (li == 0u) { lseSh = lse[p.lo + idx]; }
  let ihk = loadQ(idx, li);
  let lb = workgroupUniformLoad(&lseSh);
  if (lb == NEG_INF_BITS) { return; }
  let kvh = ihk.z;
  let kvStride = p.Hkv * p.Dh;
  let lseOld = bitcast<f32>(lb);
  let sb = p.so + idx * (2u + 2u * p.nc);
  // The changed columns' scores under the current query: new keys (k at cols[c]) and old keys (kOld row c);
  // NEG marks a hidden (or out-of-range) column. Each invocation keeps to its own columns c ≡ li (mod 64).
  for (var c = li; c < p.nc; c = c + WG) {
    let col = cols[p.co + c];
    var lN = NEG;
    var lO = NEG;
    if (col >= 0 && u32(col) < p.Mk && isLive(u32(col))) {
      lN = scoreK(p.ko + u32(col) * kvStride + kvh * p.Dh);
      lO = scoreOld(p.kOldo + c * kvStride + kvh * p.Dh);
    }
    scratch[sb + 2u + 2u * c] = bitcast<u32>(lN);
    scratch[sb + 3u + 2u * c] = bitcast<u32>(lO);
  }
  var lseNew = 0.0;
  var r = 0.0;
  var noLive = false;
  if (p.incremental != 0u) {
    // Z_old = e^lse cached from the query that produced C_old; Z_new = Z_old + Σ_c (e^l_new − e^l_old).
    var zp = 0.0;
    for (var c = li; c < p.nc; c = c + WG) {
      let lN = bitcast<f32>(scratch[sb + 2u + 2u * c]);
      let lO = bitcast<f32>(scratch[sb + 3u + 2u * c]);
      if (lN > NEG) { zp = zp + exp(lN - lseOld) - exp(lO - lseOld); }
    }
    let z = 1.0 + reduceSum(zp, li);
    lseNew = lseOld + log(max(z, 1e-30));
    r = exp(lseOld - lseNew);
  } else {
    // Z_new exact over all current keys; Z_old = Z_new − Σ_c (e^l_new − e^l_old) under the current query.
    let mz = normaliser(kvh, li);
    var dz = 0.0;
    for (var c = li; c < p.nc; c = c + WG) {
      let lN = bitcast<f32>(scratch[sb + 2u + 2u * c]);
      let lO = bitcast<f32>(scratch[sb + 3u + 2u * c]);
      if (lN > NEG) { dz = dz + exp(lO - mz.x) - exp(lN - mz.x); }
    }
    let zOld = mz.y + reduceSum(dz, li);
    noLive = !(mz.x > NEG);
    lseNew = mz.x + log(mz.y);
    r = zOld / mz.y;
  }
  for (var c = li; c < p.nc; c = c + WG) {
    let lN = bitcast<f32>(scratch[sb + 2u + 2u * c]);
    let lO = bitcast<f32>(scratch[sb + 3u + 2u * c]);
    var wN = 0.0;
    var wO = 0.0;
    if (lN > NEG && !noLive) { wN = exp(lN - lseNew); wO = exp(lO - lseNew); }
    scratch[sb + 2u + 2u * c] = bitcast<u32>(wN);
    scratch[sb + 3u + 2u * c] = bitcast<u32>(wO);
  }
  if (li == 0u) {
    // No live key at all (non-incremental): the reference's 0/0 — NaN context, −∞ lse.
    scratch[sb] = select(bitcast<u32>(r), NAN_BITS, noLive);
    scratch[sb + 1u] = select(bitcast<u32>(lseNew), NEG_INF_BITS, noLive);
  }
}
`;

/** Pass 2: ctx[i,h,d] = r·ctx + Σ_c (w_new,c · vNew[c] − w_old,c · vOld[c]); lse = lse_new. */
export const RESCALE_APPLY = /* wgsl */ `${COMMON}
@group(0) @binding(1) var<storage, read_write> lse: array<u32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(3) var<storage, read_write> vOld: array<f32>;
@group(0) @binding(4) var<storage, read_write> vNew: array<f32>;
@group(0) @binding(5) var<storage, read_write> ctx: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wgIndex(wid, nwg);
  if (idx >= p.Mq * p.H) { return; }
  if (li == 0u) { lseSh = lse[p.lo + idx]; }
  let lb = workgroupUniformLoad(&lseSh);
  if (lb == NEG_INF_BITS) { return; }
  let h = idx % p.H;
  let kvh = h / (p.H / p.Hkv);
  let kvStride = p.Hkv * p.Dh;
  let sb = p.so + idx * (2u + 2u * p.nc);
  let r = bitcast<f32>(scratch[sb]);
  let cb = p.oo + idx * p.Dh;
  for (var d = li; d < p.Dh; d = d + WG) {
    var acc = r * ctx[cb + d];
    for (var c = 0u; c < p.nc; c = c + 1u) {
      let off = c * kvStride + kvh * p.Dh + d;
      acc = acc + bitcast<f32>(scratch[sb + 2u + 2u * c]) * vNew[p.vNewo + off] - bitcast<f32>(scratch[sb + 3u + 2u * c]) * vOld[p.vOldo + off];
    }
    ctx[cb + d] = acc;
  }
  if (li == 0u) { lse[p.lo + idx] = scratch[sb + 1u]; }
}
`;

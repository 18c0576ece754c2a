/** Row kernels: RMSNorm, half-split RoPE, cosine of row pairs, row gather / scatter, rows of a prepared weight. */
import { PRELUDE, reductions } from './common.js';

/** out[m] = x[m] / sqrt(mean(x[m]²) + eps) · weight; one workgroup of 256 per row. */
export const RMSNORM = /* wgsl */ `${PRELUDE}${reductions(256)}
struct P { M: u32, D: u32, xo: u32, wo: u32, oo: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wgIndex(wid, nwg);
  if (row >= p.M) { return; }
  let xb = p.xo + row * p.D;
  let ob = p.oo + row * p.D;
  var ss = 0.0;
  for (var d = li; d < p.D; d = d + 256u) { let v = x[xb + d]; ss = ss + v * v; }
  let tot = reduceSum(ss, li);
  let r = 1.0 / sqrt(tot / f32(p.D) + p.eps);
  for (var d = li; d < p.D; d = d + 256u) { o[ob + d] = x[xb + d] * r * w[p.wo + d]; }
}
`;

/**
 * Half-split rotary embedding in place on x[M, nH·Dh]: one invocation per (row, head, j < Dh/2). A row whose
 * position is outside the cos/sin tables is left as it is.
 */
export const ROPE = /* wgsl */ `${PRELUDE}
struct P { M: u32, nH: u32, Dh: u32, xo: u32, po: u32, co: u32, so: u32, table: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pos: array<i32>;
@group(0) @binding(3) var<storage, read_write> cs: array<f32>;
@group(0) @binding(4) var<storage, read_write> sn: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = p.Dh / 2u;
  let idx = wgIndex(wid, nwg) * 256u + li;
  if (idx >= p.M * p.nH * h) { return; }
  let j = idx % h;
  let t = idx / h;
  let hd = t % p.nH;
  let m = t / p.nH;
  let ps = pos[p.po + m];
  if (ps < 0 || (u32(ps) + 1u) * h > p.table) { return; }
  let c = cs[p.co + u32(ps) * h + j];
  let s = sn[p.so + u32(ps) * h + j];
  let base = p.xo + (m * p.nH + hd) * p.Dh;
  let x1 = x[base + j];
  let x2 = x[base + h + j];
  x[base + j] = x1 * c - x2 * s;
  x[base + h + j] = x2 * c + x1 * s;
}
`;

/** out[m] = a[m]·b[m] · rsqrt(max(|a[m]|², 1e-8)) · rsqrt(max(|b[m]|², 1e-8)); one workgroup of 256 per row. */
export const COSINE = /* wgsl */ `${PRELUDE}
struct P { M: u32, D: u32, ao: u32, bo: u32, oo: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
var<workgroup> red: array<vec4<f32>, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wgIndex(wid, nwg);
  if (row >= p.M) { return; }
  var s = vec4<f32>(0.0);
  for (var d = li; d < p.D; d = d + 256u) {
    let x = a[p.ao + row * p.D + d];
    let y = b[p.bo + row * p.D + d];
    s = s + vec4<f32>(x * y, x * x, y * y, 0.0);
  }
  red[li] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k = k >> 1u) {
    if (li < k) { red[li] = red[li] + red[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let t = red[0];
    o[p.oo + row] = t.x / sqrt(max(t.y, 1e-8)) / sqrt(max(t.z, 1e-8));
  }
}
`;

/**
 * Row gather (dst[i] = src[rows[i]]) or scatter (dst[rows[i]] = src[i]) of rows of \`width\` values; one invocation
 * per element. An index outside [0, bound) (the indexed tensor's row count) is skipped.
 */
export const ROWS = /* wgsl */ `${PRELUDE}
struct P { n: u32, width: u32, dOff: u32, sOff: u32, rOff: u32, bound: u32, scatter: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read_write> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> rows: array<i32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wgIndex(wid, nwg) * 256u + li;
  if (idx >= p.n * p.width) { return; }
  let i = idx / p.width;
  let c = idx % p.width;
  let r = rows[p.rOff + i];
  if (r < 0 || u32(r) >= p.bound) { return; }
  if (p.scatter != 0u) {
    dst[p.dOff + u32(r) * p.width + c] = src[p.sOff + i * p.width + c];
  } else {
    dst[p.dOff + i * p.width + c] = src[p.sOff + u32(r) * p.width + c];
  }
}
`;

/**
 * dst[i, c] = W[rows[i], c] as f32, for the rows of one chunk of a prepared weight (rows [n0, n0 + chunkRows), each
 * `stride` stored elements): bf16 pairs widened exactly (element 2j in the low half), or f32 bits. Rows outside the
 * chunk are left to the other chunks' dispatches; rows outside the weight are skipped.
 */
export const WEIGHT_ROWS = /* wgsl */ `${PRELUDE}
struct P { n: u32, width: u32, dOff: u32, rOff: u32, n0: u32, chunkRows: u32, stride: u32, bf16: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> rows: array<i32>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wgIndex(wid, nwg) * 256u + li;
  if (idx >= p.n * p.width) { return; }
  let i = idx / p.width;
  let c = idx % p.width;
  let r = rows[p.rOff + i];
  if (r < i32(p.n0) || u32(r) - p.n0 >= p.chunkRows) { return; }
  let e = (u32(r) - p.n0) * p.stride + c;
  var bits: u32;
  if (p.bf16 != 0u) {
    let word = w[e / 2u];
    bits = select(word & 0xffffu, word >> 16u, (e & 1u) == 1u) << 16u;
  } else {
    bits = w[e];
  }
  dst[p.dOff + idx] = bitcast<f32>(bits);
}
`;

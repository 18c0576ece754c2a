/**
 * Matrix products out[m, n] = Σ_k x[row(m), k] · W(n, k) (+ bias[n]), f32 accumulation, for three weight layouts
 * (a uniform, so each kernel is one pipeline: compiling is the slow part on software adapters):
 *   0 bf16  — a prepared bf16 weight [N, Kp] (Kp = K rounded up to even), two bf16 per u32 (element 2i in the low
 *             half), widened in the shader by a 16-bit shift: the host never converts the weights;
 *   1 f32   — a prepared f32 weight [N, K] (read as u32 bits);
 *   2 f32kn — a run-time f32 operand b[K, N] (gemm).
 * The weight is addressed as (wo + n·ws + wk0 + k) for the [N, ·] layouts (wk0: the first input feature of a
 * matmulCols slice) and (wo + k·ws + n) for f32kn. x rows are gathered through `rows` when hasRows is set (an
 * index outside [0, xRowsBound) reads as a zero row). out rows have stride os (a weight split into row chunks
 * writes its columns at oo + chunk start).
 *
 * Two kernels:
 *  - tiled: T×T output tiles (T = g·r), K in steps of bk through workgroup memory, g×g invocations each computing
 *    an r×r block; any M, N, K;
 *  - skinny (M ≤ 8, needs the 'subgroups' feature): each subgroup computes whole output columns for all M rows,
 *    its lanes striding over K (bf16 weights read as u32 pairs) and combining with subgroupAdd. Subgroups get dense
 *    indices from a workgroup atomic and lanes their rank from subgroupExclusiveAdd, so the kernel is correct for
 *    any subgroup size and any mapping of invocations to subgroups.
 */
export type WeightLayout = 'bf16' | 'f32' | 'f32kn';

export const LAYOUT_CODE: Record<WeightLayout, number> = { bf16: 0, f32: 1, f32kn: 2 };

/** Rows at most this many use the skinny subgroup kernel (when the adapter offers subgroups). */
export const SKINNY_MAX_M = 8;

const PARAMS = /* wgsl */ `
struct P {
  M: u32, N: u32, K: u32, xo: u32, xs: u32, xRowsBound: u32, wo: u32, ws: u32, wk0: u32,
  oo: u32, os: u32, bo: u32, hasBias: u32, ro: u32, hasRows: u32, wl: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read_write> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> rows: array<i32>;
const NO_ROW: u32 = 0xffffffffu;
fn xRow(m: u32) -> u32 {
  if (p.hasRows == 0u) { return m; }
  let r = rows[p.ro + m];
  if (r < 0 || u32(r) >= p.xRowsBound) { return NO_ROW; }
  return u32(r);
}
fn biasOf(n: u32) -> f32 { return select(0.0, bias[p.bo + n], p.hasBias != 0u); }
// W(n, k) as f32.
fn wv(n: u32, k: u32) -> f32 {
  if (p.wl == 0u) {
    let e = p.wo + n * p.ws + p.wk0 + k;
    let u = w[e >> 1u];
    return bitcast<f32>(select(u << 16u, u & 0xffff0000u, (e & 1u) == 1u));
  }
  if (p.wl == 1u) { return bitcast<f32>(w[p.wo + n * p.ws + p.wk0 + k]); }
  return bitcast<f32>(w[p.wo + k * p.ws + n]);
}
`;

/** Tile geometry of the tiled kernel: g×g invocations, each computing r×r outputs; K in steps of bk. */
export interface TileShape { readonly g: number; readonly r: number; readonly bk: number }
export const TILE: TileShape = { g: 8, r: 8, bk: 16 };

export function tiledMatmulShader(shape: TileShape = TILE): string {
  const { g, r, bk } = shape;
  const T = g * r; // output tile edge
  const inv = g * g; // invocations
  const loads = (T * bk) / inv; // elements of each operand tile per invocation
  return /* wgsl */ `${PARAMS}
var<workgroup> As: array<f32, ${T * bk}>; // [bk][T m]
var<workgroup> Bs: array<f32, ${T * bk}>; // [bk][T n]
@compute @workgroup_size(${g}, ${g})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let m0 = wid.y * ${T}u;
  let n0 = wid.x * ${T}u;
  var aRow: array<u32, ${loads}>;
  for (var i = 0u; i < ${loads}u; i = i + 1u) {
    let m = m0 + (li + i * ${inv}u) / ${bk}u;
    aRow[i] = select(NO_ROW, xRow(m), m < p.M);
  }
  var acc = array<f32, ${r * r}>();
  for (var kt = 0u; kt < p.K; kt = kt + ${bk}u) {
    for (var i = 0u; i < ${loads}u; i = i + 1u) {
      let e = li + i * ${inv}u;
      let rr = e / ${bk}u;
      let c = e % ${bk}u;
      let k = kt + c;
      var a = 0.0;
      if (aRow[i] != NO_ROW && k < p.K) { a = x[p.xo + aRow[i] * p.xs + k]; }
      As[c * ${T}u + rr] = a;
    }
    for (var i = 0u; i < ${loads}u; i = i + 1u) {
      let e = li + i * ${inv}u;
      // Neighbouring invocations read neighbouring memory: along k for the [N, K] layouts, along n for [K, N].
      var rr = e / ${bk}u;
      var c = e % ${bk}u;
      if (p.wl == 2u) { rr = e % ${T}u; c = e / ${T}u; }
      let n = n0 + rr;
      let k = kt + c;
      var b = 0.0;
      if (n < p.N && k < p.K) { b = wv(n, k); }
      Bs[c * ${T}u + rr] = b;
    }
    workgroupBarrier();
    for (var k = 0u; k < ${bk}u; k = k + 1u) {
      var a: array<f32, ${r}>;
      var b: array<f32, ${r}>;
      for (var i = 0u; i < ${r}u; i = i + 1u) { a[i] = As[k * ${T}u + lid.y + ${g}u * i]; b[i] = Bs[k * ${T}u + lid.x + ${g}u * i]; }
      for (var i = 0u; i < ${r}u; i = i + 1u) {
        for (var j = 0u; j < ${r}u; j = j + 1u) { acc[i * ${r}u + j] = acc[i * ${r}u + j] + a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${r}u; i = i + 1u) {
    let m = m0 + lid.y + ${g}u * i;
    for (var j = 0u; j < ${r}u; j = j + 1u) {
      let n = n0 + lid.x + ${g}u * j;
      if (m < p.M && n < p.N) { o[p.oo + m * p.os + n] = acc[i * ${r}u + j] + biasOf(n); }
    }
  }
}
`;
}

/** Output columns per workgroup of the skinny kernel. */
export const SKINNY_COLS = 32;

export function skinnyMatmulShader(): string {
  return /* wgsl */ `enable subgroups;
${PARAMS}
const NB: u32 = ${SKINNY_COLS}u;
var<workgroup> sgCounter: atomic<u32>;
var<workgroup> sgTotal: u32;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  if (li == 0u) { atomicStore(&sgCounter, 0u); }
  workgroupBarrier();
  var mine = 0u;
  if (subgroupElect()) { mine = atomicAdd(&sgCounter, 1u); }
  let sg = subgroupBroadcastFirst(mine);
  let lane = subgroupExclusiveAdd(1u);
  let lanes = subgroupAdd(1u);
  workgroupBarrier();
  if (li == 0u) { sgTotal = atomicLoad(&sgCounter); }
  let nsg = workgroupUniformLoad(&sgTotal);
  var xr: array<u32, 8>;
  for (var m = 0u; m < 8u; m = m + 1u) { xr[m] = select(NO_ROW, xRow(m), m < p.M); }
  let nBase = (wid.y * nwg.x + wid.x) * NB;
  let tasks = (NB + nsg - 1u) / nsg;
  for (var t = 0u; t < tasks; t = t + 1u) {
    let slot = sg + t * nsg;
    let n = nBase + slot;
    let valid = slot < NB && n < p.N;
    // Zeroed explicitly: a declaration without initializer inside a loop was not re-zeroed per iteration on
    // SwiftShader (the WGSL rule is that it is).
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    if (valid && p.wl == 0u) {
      // bf16: one u32 = the weights of k and k + 1.
      for (var kp = lane; kp < (p.K + 1u) / 2u; kp = kp + lanes) {
        let k = 2u * kp;
        let u = w[(p.wo + n * p.ws + p.wk0 + k) >> 1u];
        let w0 = bitcast<f32>(u << 16u);
        let w1 = bitcast<f32>(u & 0xffff0000u);
        let has1 = k + 1u < p.K;
        for (var m = 0u; m < p.M; m = m + 1u) {
          if (xr[m] != NO_ROW) {
            let xb = p.xo + xr[m] * p.xs + k;
            var x1 = 0.0;
            if (has1) { x1 = x[xb + 1u]; }
            acc[m] = acc[m] + x[xb] * w0 + x1 * w1;
          }
        }
      }
    } else if (valid) {
      for (var k = lane; k < p.K; k = k + lanes) {
        let wk = wv(n, k);
        for (var m = 0u; m < p.M; m = m + 1u) {
          if (xr[m] != NO_ROW) { acc[m] = acc[m] + x[p.xo + xr[m] * p.xs + k] * wk; }
        }
      }
    }
    for (var m = 0u; m < 8u; m = m + 1u) {
      let s = subgroupAdd(acc[m]);
      if (valid && m < p.M && lane == 0u) { o[p.oo + m * p.os + n] = s + biasOf(n); }
    }
  }
}
`;
}

/**
 * Element-wise kernels: out = a + b, a − b, silu(a)·b over n elements (256 per workgroup, 2-D grid). The in-place
 * variant binds a once and writes the result into it (dst += src).
 */
import { PRELUDE } from './common.js';

export type ElementwiseOp = 'add' | 'sub' | 'silu_mul';

const EXPR: Record<ElementwiseOp, string> = {
  add: 'x + y',
  sub: 'x - y',
  // silu(g)·u with the sigmoid formed so that exp never overflows: g ≥ 0 uses e^−g, g < 0 uses e^g.
  silu_mul: 'silu(x) * y',
};

export function elementwiseShader(op: ElementwiseOp, inPlace: boolean): string {
  return /* wgsl */ `${PRELUDE}
struct P { n: u32, ao: u32, bo: u32, oo: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> b: array<f32>;
${inPlace ? '' : '@group(0) @binding(3) var<storage, read_write> o: array<f32>;'}
fn silu(g: f32) -> f32 {
  if (g >= 0.0) { return g / (1.0 + exp(-g)); }
  let e = exp(g);
  return g * e / (1.0 + e);
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = wgIndex(wid, nwg) * 256u + li;
  if (i >= p.n) { return; }
  let x = a[p.ao + i];
  let y = b[p.bo + i];
  ${inPlace ? 'a' : 'o'}[p.oo + i] = ${EXPR[op]};
}
`;
}

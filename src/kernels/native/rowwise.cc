// rowwise.cc — the bindings of the row-wise and element-wise kernels: rmsnorm, rope (half-split rotary embedding),
// siluMul and add. Rows (or 32 Ki-element chunks) are split over the pool; the tier kernel does one row or chunk.
#include <algorithm>

#include "glue.h"

namespace dyllm {

// rmsnorm(x, M, D, weight, eps, out)
napi_value Rmsnorm(napi_env env, napi_callback_info info) {
  Args a(env, info, "rmsnorm");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *x, *w, *out;
  size_t xl, wl, ol;
  int64_t M, D;
  double eps;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "D", &D) || !a.f32(3, "weight", &w, &wl) ||
      !a.num_arg(4, "eps", &eps, 0.0) || !a.f32(5, "out", &out, &ol))
    return nullptr;
  if (!a.need("x", x, xl, "M*D", {M, D}) || !a.need("weight", w, wl, "D", {D}) || !a.need("out", out, ol, "M*D", {M, D}))
    return nullptr;
  if (D == 0) return undefined(env);
  parallel_for(M, M * D >= (1 << 16), [&](int64_t m) { t.rmsnorm_row(x + m * D, D, w, float(eps), out + m * D); });
  return undefined(env);
}

// rope(x, M, nHeads, Dh, positions, cos, sin): in place; position p uses cos/sin[p·Dh/2 .. (p+1)·Dh/2).
napi_value Rope(napi_env env, napi_callback_info info) {
  Args a(env, info, "rope");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *x, *c, *s;
  int32_t* pos;
  size_t xl, cl, sl, pl;
  int64_t M, nH, Dh;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "nHeads", &nH, 0, kMaxInt32) ||
      !a.int_arg(3, "Dh", &Dh, 0, kMaxHeadDim) || !a.i32(4, "positions", &pos, &pl) || !a.f32(5, "cos", &c, &cl) ||
      !a.f32(6, "sin", &s, &sl))
    return nullptr;
  if (Dh % 2 != 0) {
    a.range_error("Dh (%lld) must be even", (long long)Dh);
    return nullptr;
  }
  if (!a.need("x", x, xl, "M*nHeads*Dh", {M, nH, Dh}) || !a.need("positions", pos, pl, "M", {M})) return nullptr;
  const int64_t h = Dh / 2, table = int64_t(std::min(cl, sl));
  for (int64_t m = 0; m < M; m++)
    if (pos[m] < 0 || (int64_t(pos[m]) + 1) * h > table) {
      a.range_error("positions[%lld] = %d is outside the cos/sin tables (%zu/%zu entries, %lld per position)",
                    (long long)m, pos[m], cl, sl, (long long)h);
      return nullptr;
    }
  if (nH == 0 || Dh == 0) return undefined(env);  // nothing to rotate (and no loop over empty heads)
  parallel_for(M, M * nH * Dh >= (1 << 16),
               [&](int64_t m) { t.rope_row(x + m * nH * Dh, int(nH), int(Dh), c + pos[m] * h, s + pos[m] * h); });
  return undefined(env);
}

// siluMul(gate, up, n, out): out = silu(gate) · up
napi_value SiluMul(napi_env env, napi_callback_info info) {
  Args a(env, info, "siluMul");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *g, *u, *o;
  size_t gl, ul, ol;
  int64_t n;
  if (!a.f32(0, "gate", &g, &gl) || !a.f32(1, "up", &u, &ul) || !a.int_arg(2, "n", &n) || !a.f32(3, "out", &o, &ol))
    return nullptr;
  if (!a.need("gate", g, gl, "n", {n}) || !a.need("up", u, ul, "n", {n}) || !a.need("out", o, ol, "n", {n}))
    return nullptr;
  constexpr int64_t CH = 1 << 15;  // elements per chunk (multiple of 16)
  parallel_for((n + CH - 1) / CH, n >= (1 << 17), [&](int64_t c) {
    const int64_t b = c * CH, e = std::min(n, b + CH);
    t.silu_mul(g + b, u + b, e - b, o + b);
  });
  return undefined(env);
}

// add(dst, src, n): dst += src
napi_value Add(napi_env env, napi_callback_info info) {
  Args a(env, info, "add");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *d, *s;
  size_t dl, sl;
  int64_t n;
  if (!a.f32(0, "dst", &d, &dl) || !a.f32(1, "src", &s, &sl) || !a.int_arg(2, "n", &n)) return nullptr;
  if (!a.need("dst", d, dl, "n", {n}) || !a.need("src", s, sl, "n", {n})) return nullptr;
  constexpr int64_t CH = 1 << 15;  // elements per chunk (multiple of 16)
  parallel_for((n + CH - 1) / CH, n >= (1 << 17), [&](int64_t c) {
    const int64_t b = c * CH, e = std::min(n, b + CH);
    t.add(d + b, s + b, e - b);
  });
  return undefined(env);
}

}  // namespace dyllm

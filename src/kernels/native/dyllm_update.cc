// dyllm_update.cc — the bindings of DyLLM's cached-attention updates (arXiv 2603.08026): attentionDelta (context
// rows += softmax-weighted ΔV of the changed key columns), attentionRescale (the normaliser-corrected update) and
// cosineRows (the saliency measure between a token's old and new activations). Scores come from the tier's
// score_block4 over transposed keys (attention.h) or its score_row; the column update is the tier's delta_cols.
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention.h"

namespace dyllm {
namespace {

inline float dotf(const float* a, const float* b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t d = 0;
  for (; d + 4 <= n; d += 4) {
    s0 += a[d] * b[d];
    s1 += a[d + 1] * b[d + 1];
    s2 += a[d + 2] * b[d + 2];
    s3 += a[d + 3] * b[d + 3];
  }
  for (; d < n; d++) s0 += a[d] * b[d];
  return (s0 + s1) + (s2 + s3);
}

}  // namespace

// attentionDelta(q, Mq, k, Mk, H, Hkv, Dh, keyMask?, cols, dv, ctx, probs?)
napi_value AttentionDelta(napi_env env, napi_callback_info info) {
  Args a(env, info, "attentionDelta");
  if (!a.ok) return nullptr;
  float *q, *k, *dv, *ctx, *probs;
  uint8_t* mask;
  int32_t* cols;
  size_t ql, kl, ml, cl, dl, xl, pl;
  int64_t Mq, Mk, H, Hkv, Dh;
  if (!a.f32(0, "q", &q, &ql) || !a.int_arg(1, "Mq", &Mq) || !a.f32(2, "k", &k, &kl) || !a.int_arg(3, "Mk", &Mk) ||
      !a.heads(4, 5, 6, &H, &Hkv, &Dh) || !a.u8(7, "keyMask", &mask, &ml, true) || !a.i32(8, "cols", &cols, &cl) ||
      !a.f32(9, "dv", &dv, &dl) || !a.f32(10, "ctx", &ctx, &xl) || !a.f32(11, "probs", &probs, &pl, true))
    return nullptr;
  const int64_t nc = int64_t(cl);
  if (!a.need("q", q, ql, "Mq*H*Dh", {Mq, H, Dh}) || !a.need("k", k, kl, "Mk*Hkv*Dh", {Mk, Hkv, Dh}) ||
      !a.need("keyMask", mask, ml, "Mk", {Mk}) || !a.need("dv", dv, dl, "cols.length*Hkv*Dh", {nc, Hkv, Dh}) ||
      !a.need("ctx", ctx, xl, "Mq*H*Dh", {Mq, H, Dh}) || !a.need("probs", probs, pl, "Mq*H*cols.length", {Mq, H, nc}) ||
      !a.indices("cols", cols, nc, Mk, "Mk"))
    return nullptr;
  const TierOps& t = tier_of(a);
  const int64_t items = Mq * H, group = H / Hkv, kvs = Hkv * Dh;
  const float scale = float(1.0 / std::sqrt(double(Dh)));
  const bool par = double(items) * double(Mk + nc) * double(Dh) >= 1e5;
  if (g_attn_blocked && t.score_block4 && Dh % 16 == 0 && Mq >= 2) {
    // Scores of 4 query rows at a time against transposed keys; only the listed columns feed the update.
    const bool ok = for_each_scored_row(t, q, Mq, k, Mk, H, Hkv, Dh, mask, scale, par, [&](int64_t, int64_t it, int64_t kvh, const float* sr, float m, float z) {
      t.delta_cols(ctx + it * Dh, sr, m, z, cols, long(nc), dv + kvh * Dh, long(kvs), int(Dh), probs ? probs + it * nc : nullptr);
    });
    return ok ? undefined(env) : (a.range_error("cannot allocate the transposed keys (Mk = %lld)", (long long)Mk), nullptr);
  }
  const int64_t per = std::max<int64_t>(1, items / (8 * int64_t(g_threads)));
  parallel_for((items + per - 1) / per, par, [&](int64_t ch) {
    thread_local std::vector<float> sbuf;
    if (int64_t(sbuf.size()) < Mk) sbuf.resize(size_t(Mk));
    float* sc = sbuf.data();
    for (int64_t it = ch * per; it < std::min(items, (ch + 1) * per); it++) {
      const int64_t kvh = (it % H) / group;
      float m, z;
      t.score_row(q + it * Dh, k + kvh * Dh, long(kvs), long(Mk), int(Dh), mask, scale, sc, &m, &z);
      t.delta_cols(ctx + it * Dh, sc, m, z, cols, long(nc), dv + kvh * Dh, long(kvs), int(Dh), probs ? probs + it * nc : nullptr);
    }
  });
  return undefined(env);
}

// attentionRescale(q, Mq, k, Mk, H, Hkv, Dh, keyMask?, cols, kOld, vOld, vNew, lse, ctx, incremental)
napi_value AttentionRescale(napi_env env, napi_callback_info info) {
  Args a(env, info, "attentionRescale");
  if (!a.ok) return nullptr;
  float *q, *k, *kOld, *vOld, *vNew, *lse, *ctx;
  uint8_t* mask;
  int32_t* cols;
  size_t ql, kl, ml, cl, kol, vol, vnl, ll, xl;
  int64_t Mq, Mk, H, Hkv, Dh;
  bool incremental;
  if (!a.f32(0, "q", &q, &ql) || !a.int_arg(1, "Mq", &Mq) || !a.f32(2, "k", &k, &kl) || !a.int_arg(3, "Mk", &Mk) ||
      !a.heads(4, 5, 6, &H, &Hkv, &Dh) || !a.u8(7, "keyMask", &mask, &ml, true) || !a.i32(8, "cols", &cols, &cl) ||
      !a.f32(9, "kOld", &kOld, &kol) || !a.f32(10, "vOld", &vOld, &vol) || !a.f32(11, "vNew", &vNew, &vnl) ||
      !a.f32(12, "lse", &lse, &ll) || !a.f32(13, "ctx", &ctx, &xl) || !a.bool_arg(14, "incremental", &incremental))
    return nullptr;
  const int64_t nc = int64_t(cl);
  if (!a.need("q", q, ql, "Mq*H*Dh", {Mq, H, Dh}) || !a.need("k", k, kl, "Mk*Hkv*Dh", {Mk, Hkv, Dh}) ||
      !a.need("keyMask", mask, ml, "Mk", {Mk}) || !a.need("kOld", kOld, kol, "cols.length*Hkv*Dh", {nc, Hkv, Dh}) ||
      !a.need("vOld", vOld, vol, "cols.length*Hkv*Dh", {nc, Hkv, Dh}) ||
      !a.need("vNew", vNew, vnl, "cols.length*Hkv*Dh", {nc, Hkv, Dh}) || !a.need("lse", lse, ll, "Mq*H", {Mq, H}) ||
      !a.need("ctx", ctx, xl, "Mq*H*Dh", {Mq, H, Dh}) || !a.indices("cols", cols, nc, Mk, "Mk"))
    return nullptr;
  const TierOps& t = tier_of(a);
  const int64_t items = Mq * H, group = H / Hkv, kvs = Hkv * Dh;
  const float scale = float(1.0 / std::sqrt(double(Dh)));
  const bool par = double(items) * double((incremental ? 0 : Mk) + 2 * nc) * double(Dh) >= 1e5;
  if (!incremental && g_attn_blocked && t.score_block4 && Dh % 16 == 0 && Mq >= 2) {
    const bool ok = for_each_scored_row(t, q, Mq, k, Mk, H, Hkv, Dh, mask, scale, par, [&](int64_t, int64_t it, int64_t kvh, const float* sr, float m, float z) {
      if (lse[it] == -INFINITY || m == -INFINITY || z <= 0.f) return;
      const float* qi = q + it * Dh;
      thread_local std::vector<float> lold;
      if (int64_t(lold.size()) < nc) lold.resize(size_t(nc));
      // Z_old under the current query: Z_new minus the changed columns' new terms plus their old ones.
      double zold = z;
      for (int64_t c = 0; c < nc; c++) {
        const float ln = sr[cols[c]];
        if (ln == -INFINITY) continue;
        lold[c] = dotf(qi, kOld + c * kvs + kvh * Dh, Dh) * scale;
        zold += std::exp(double(lold[c]) - m) - std::exp(double(ln) - m);
      }
      const double lse_new = double(m) + std::log(double(z));
      const float ratio = float(zold / double(z));
      float* o = ctx + it * Dh;
      for (int64_t d = 0; d < Dh; d++) o[d] *= ratio;
      for (int64_t c = 0; c < nc; c++) {
        const float ln = sr[cols[c]];
        if (ln == -INFINITY) continue;
        const float lo = lold[c];
        const float pn = float(std::exp(double(ln) - lse_new)), po = float(std::exp(double(lo) - lse_new));
        const float* vn = vNew + c * kvs + kvh * Dh;
        const float* vo = vOld + c * kvs + kvh * Dh;
        for (int64_t d = 0; d < Dh; d++) o[d] += pn * vn[d] - po * vo[d];
      }
      lse[it] = float(lse_new);
    });
    return ok ? undefined(env) : (a.range_error("cannot allocate the transposed keys (Mk = %lld)", (long long)Mk), nullptr);
  }
  const int64_t per = std::max<int64_t>(1, items / (8 * int64_t(g_threads)));
  parallel_for((items + per - 1) / per, par, [&](int64_t ch) {
    thread_local std::vector<float> sbuf, lnew, lold;
    if (int64_t(sbuf.size()) < Mk) sbuf.resize(size_t(Mk));
    if (int64_t(lnew.size()) < nc) lnew.resize(size_t(nc)), lold.resize(size_t(nc));
    for (int64_t it = ch * per; it < std::min(items, (ch + 1) * per); it++) {
      const int64_t kvh = (it % H) / group;
      const float lse_old = lse[it];
      if (lse_old == -INFINITY) continue;
      const float* qi = q + it * Dh;
      for (int64_t c = 0; c < nc; c++) {
        const bool live = !mask || mask[cols[c]];
        lnew[c] = live ? dotf(qi, k + cols[c] * kvs + kvh * Dh, Dh) * scale : -INFINITY;
        lold[c] = live ? dotf(qi, kOld + c * kvs + kvh * Dh, Dh) * scale : -INFINITY;
      }
      double lse_new, ratio;
      if (incremental) {
        double z = 1.0;
        for (int64_t c = 0; c < nc; c++) z += std::exp(double(lnew[c]) - lse_old) - std::exp(double(lold[c]) - lse_old);
        lse_new = double(lse_old) + std::log(std::max(z, 1e-30));
        ratio = std::exp(double(lse_old) - lse_new);
      } else {
        // Z_old under the current query: Z_new minus the changed columns' new terms plus their old ones.
        float m, z;
        t.score_row(qi, k + kvh * Dh, long(kvs), long(Mk), int(Dh), mask, scale, sbuf.data(), &m, &z);
        double zold = z;
        for (int64_t c = 0; c < nc; c++) zold += std::exp(double(lold[c]) - m) - std::exp(double(lnew[c]) - m);
        lse_new = double(m) + std::log(double(z));
        ratio = zold / double(z);
      }
      const float r = float(ratio);
      float* o = ctx + it * Dh;
      for (int64_t d = 0; d < Dh; d++) o[d] *= r;
      for (int64_t c = 0; c < nc; c++) {
        if (lnew[c] == -INFINITY) continue;
        const float pn = float(std::exp(double(lnew[c]) - lse_new)), po = float(std::exp(double(lold[c]) - lse_new));
        const float* vn = vNew + c * kvs + kvh * Dh;
        const float* vo = vOld + c * kvs + kvh * Dh;
        for (int64_t d = 0; d < Dh; d++) o[d] += pn * vn[d] - po * vo[d];
      }
      lse[it] = float(lse_new);
    }
  });
  return undefined(env);
}

// cosineRows(a, b, M, D, out): out[m] = cos(a[m], b[m]) over D, double-precision sums.
napi_value CosineRows(napi_env env, napi_callback_info info) {
  Args a(env, info, "cosineRows");
  if (!a.ok) return nullptr;
  float *x, *y, *out;
  size_t xl, yl, ol;
  int64_t M, D;
  if (!a.f32(0, "a", &x, &xl) || !a.f32(1, "b", &y, &yl) || !a.int_arg(2, "M", &M) || !a.int_arg(3, "D", &D) ||
      !a.f32(4, "out", &out, &ol))
    return nullptr;
  if (!a.need("a", x, xl, "M*D", {M, D}) || !a.need("b", y, yl, "M*D", {M, D}) || !a.need("out", out, ol, "M", {M}))
    return nullptr;
  parallel_for(M, M * D >= (1 << 16), [&](int64_t m) {
    const float* ar = x + m * D;
    const float* br = y + m * D;
    double dot = 0, aa = 0, bb = 0;
    for (int64_t d = 0; d < D; d++) {
      dot += double(ar[d]) * br[d];
      aa += double(ar[d]) * ar[d];
      bb += double(br[d]) * br[d];
    }
    out[m] = float(dot / std::sqrt(std::max(aa, 1e-8)) / std::sqrt(std::max(bb, 1e-8)));
  });
  return undefined(env);
}

}  // namespace dyllm

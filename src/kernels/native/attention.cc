// attention.cc — the attention binding: bidirectional softmax attention of gathered query rows against a key/value
// set, with optional key mask and log-sum-exp output. Blocked path: keys transposed once per KV head, then blocks of
// 4 query rows per head through the tier's attn_block4; otherwise the tier's per-row online-softmax kernel.
#include "attention.h"

#include <cmath>

namespace dyllm {

const float* transpose_keys(const float* k, int64_t Mk, int64_t Hkv, int64_t Dh, int64_t ldk, bool par) {
  thread_local Scratch buf;
  int64_t need;
  if (!checked_product({Hkv, Dh, ldk, int64_t(sizeof(float))}, &need)) return nullptr;
  float* base = static_cast<float*>(buf.get(size_t(need)));
  if (!base) return nullptr;
  // Tiles of 16 keys x 16 dims keep both the strided reads and the strided writes inside a few cache lines.
  const int64_t kvs = Hkv * Dh, dblocks = (Dh + 15) / 16;
  parallel_for(Hkv * dblocks, par, [&](int64_t w) {
    const int64_t kvh = w / dblocks, d0 = (w % dblocks) * 16, d1 = std::min<int64_t>(Dh, d0 + 16);
    float* dst = base + kvh * Dh * ldk;
    for (int64_t j0 = 0; j0 < Mk; j0 += 16) {
      const int64_t j1 = std::min<int64_t>(Mk, j0 + 16);
      for (int64_t j = j0; j < j1; j++) {
        const float* kr = k + j * kvs + kvh * Dh;
        for (int64_t d = d0; d < d1; d++) dst[d * ldk + j] = kr[d];
      }
    }
    for (int64_t d = d0; d < d1; d++) std::fill(dst + d * ldk + Mk, dst + (d + 1) * ldk, 0.f);
  });
  return base;
}

// attention(q, Mq, k, v, Mk, H, Hkv, Dh, keyMask?, out, lse?)
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info, "attention");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *q, *k, *v, *out, *lse;
  uint8_t* mask;
  size_t ql, kl, vl, ol, ll, ml;
  int64_t Mq, Mk, H, Hkv, Dh;
  if (!a.f32(0, "q", &q, &ql) || !a.int_arg(1, "Mq", &Mq) || !a.f32(2, "k", &k, &kl) || !a.f32(3, "v", &v, &vl) ||
      !a.int_arg(4, "Mk", &Mk) || !a.heads(5, 6, 7, &H, &Hkv, &Dh) || !a.u8(8, "keyMask", &mask, &ml, true) ||
      !a.f32(9, "out", &out, &ol) || !a.f32(10, "lse", &lse, &ll, true))
    return nullptr;
  if (!a.need("q", q, ql, "Mq*H*Dh", {Mq, H, Dh}) || !a.need("k", k, kl, "Mk*Hkv*Dh", {Mk, Hkv, Dh}) ||
      !a.need("v", v, vl, "Mk*Hkv*Dh", {Mk, Hkv, Dh}) || !a.need("keyMask", mask, ml, "Mk", {Mk}) ||
      !a.need("out", out, ol, "Mq*H*Dh", {Mq, H, Dh}) || !a.need("lse", lse, ll, "Mq*H", {Mq, H}))
    return nullptr;
  const int64_t items = Mq * H, group = H / Hkv;
  const float scale = float(1.0 / std::sqrt(double(Dh)));
  const bool par = double(items) * double(Mk) * double(Dh) >= 1e5;
  if (g_attn_blocked && t.attn_block4 && Dh % 16 == 0 && Mq >= 2) {
    // K transposed once per KV head ([Hkv][Dh][ldk], zero padded), then blocks of 4 query rows per head.
    const int64_t ldk = (Mk + 63) / 64 * 64, kvs = Hkv * Dh;
    const float* KT = transpose_keys(k, Mk, Hkv, Dh, ldk, par);
    if (!KT) {
      a.range_error("cannot allocate the transposed keys (Mk = %lld, Hkv = %lld, Dh = %lld)", (long long)Mk,
                    (long long)Hkv, (long long)Dh);
      return nullptr;
    }
    const int64_t rblocks = (Mq + 3) / 4, work = H * rblocks;
    parallel_for(work, par, [&](int64_t w) {
      thread_local std::vector<float> sbuf;
      if (int64_t(sbuf.size()) < 4 * ldk) sbuf.resize(size_t(4 * ldk));
      // Head-major work order: consecutive items reuse one head's transposed keys from L2.
      const int64_t h = w / rblocks, rb = w % rblocks, kvh = h / group, r0 = rb * 4;
      const int nq = int(std::min<int64_t>(4, Mq - r0));
      t.attn_block4(q + (r0 * H + h) * Dh, long(H * Dh), nq, KT + kvh * Dh * ldk, long(ldk), v + kvh * Dh,
                    long(kvs), long(Mk), int(Dh), mask, scale, out + (r0 * H + h) * Dh, long(H * Dh),
                    lse ? lse + r0 * H + h : nullptr, long(H), sbuf.data());
    });
    return undefined(env);
  }
  const int64_t per = std::max<int64_t>(1, items / (8 * int64_t(g_threads)));  // ~8 chunks per thread
  parallel_for((items + per - 1) / per, par, [&](int64_t ch) {
    float scratch[ATTN_BLOCK];
    for (int64_t it = ch * per; it < std::min(items, (ch + 1) * per); it++) {
      const int64_t i = it / H, h = it % H, kvh = h / group;
      t.attn_row(q + it * Dh, k + kvh * Dh, v + kvh * Dh, Hkv * Dh, Mk, int(Dh), mask, scale, out + it * Dh,
                 lse ? lse + i * H + h : nullptr, scratch);
    }
  });
  return undefined(env);
}

}  // namespace dyllm

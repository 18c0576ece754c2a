// attention.h — the blocked attention helpers shared by attention.cc and dyllm_update.cc: keys transposed per KV
// head, and a loop over (query row, head) pairs with their scores from the tier's score_block4.
#pragma once
#include <algorithm>
#include <vector>

#include "glue.h"

namespace dyllm {

// Keys transposed per KV head for the blocked score kernels: KT[kvh][d][j], ldk = Mk rounded up to 64, zero padded.
// Returns a buffer owned by the calling thread, valid until its next call, or nullptr when it cannot be allocated.
const float* transpose_keys(const float* k, int64_t Mk, int64_t Hkv, int64_t Dh, int64_t ldk, bool par);

// Runs `fn(r, item, kvh, scores_of_row, m, z)` for every (query row, head) with scores from score_block4 over
// transposed keys (4 query rows per call); item = row * H + head, as the per-row kernels index q and ctx.
// Returns false (nothing run) when the transposed keys cannot be allocated.
template <typename Fn>
bool for_each_scored_row(const TierOps& t, const float* q, int64_t Mq, const float* k, int64_t Mk, int64_t H, int64_t Hkv,
                         int64_t Dh, const uint8_t* mask, float scale, bool par, Fn fn) {
  const int64_t ldk = (Mk + 63) / 64 * 64, group = H / Hkv;
  const float* KT = transpose_keys(k, Mk, Hkv, Dh, ldk, par);
  if (!KT) return false;
  // Head-major work order: consecutive items reuse one head's transposed keys from L2 (all heads' keys exceed it).
  const int64_t rblocks = (Mq + 3) / 4;
  parallel_for(H * rblocks, par, [&](int64_t w) {
    thread_local std::vector<float> sbuf;
    if (int64_t(sbuf.size()) < 4 * ldk) sbuf.resize(size_t(4 * ldk));
    const int64_t h = w / rblocks, r0 = (w % rblocks) * 4, kvh = h / group;
    const int nq = int(std::min<int64_t>(4, Mq - r0));
    float m[4], z[4];
    t.score_block4(q + (r0 * H + h) * Dh, long(H * Dh), nq, KT + kvh * Dh * ldk, long(ldk), long(Mk), int(Dh), mask,
                   scale, sbuf.data(), m, z);
    for (int r = 0; r < nq; r++) fn(r0 + r, (r0 + r) * H + h, kvh, sbuf.data() + r * ldk, m[r], z[r]);
  });
  return true;
}

}  // namespace dyllm

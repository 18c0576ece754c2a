// tier_avx512_attn.cc — the AVX-512 tier's attention kernels (compiled with the tier's flags): the per-row online
// softmax (attn_row, score_row), the blocked 4-query-row kernels over transposed keys (score_block4, attn_block4) and
// DyLLM's column update (delta_cols). Layouts and contracts: kernels.h.
#include "tier_avx512.h"

namespace dyllm {
namespace avx512 {
namespace {

inline float dot(const float* a, const float* b, int n) {
  __m512 acc = _mm512_setzero_ps();
  int d = 0;
  for (; d + 16 <= n; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + d), _mm512_loadu_ps(b + d), acc);
  if (d < n) {
    const __mmask16 m = tail_mask(n - d);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + d), _mm512_maskz_loadu_ps(m, b + d), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// out[0..n) = out * f + p * v
inline void scale_axpy(float* out, float f, float p, const float* v, int n) {
  const __m512 fv = _mm512_set1_ps(f), pv = _mm512_set1_ps(p);
  for (int d = 0; d < n; d += 16) {
    const __mmask16 m = tail_mask(n - d);
    __m512 o = _mm512_maskz_loadu_ps(m, out + d);
    o = _mm512_fmadd_ps(pv, _mm512_maskz_loadu_ps(m, v + d), _mm512_mul_ps(o, fv));
    _mm512_mask_storeu_ps(out + d, m, o);
  }
}

}  // namespace

void attn_row(const float* q, const float* k, const float* v, long kvStride, long Mk, int Dh, const uint8_t* mask,
              float scale, float* out, float* lse, float* s) {
  float m = -INFINITY, z = 0.f;
  for (int d = 0; d < Dh; d += 16) _mm512_mask_storeu_ps(out + d, tail_mask(Dh - d), _mm512_setzero_ps());
  for (long j0 = 0; j0 < Mk; j0 += ATTN_BLOCK) {
    const long nb = Mk - j0 < ATTN_BLOCK ? Mk - j0 : ATTN_BLOCK;
    float bm = -INFINITY;
    for (long j = 0; j < nb; j++) {
      if (mask && !mask[j0 + j]) {
        s[j] = -INFINITY;
        continue;
      }
      const float sj = dot(q, k + (j0 + j) * kvStride, Dh) * scale;
      s[j] = sj;
      bm = sj > bm ? sj : bm;
    }
    if (bm == -INFINITY) continue;
    float f = 1.f;
    if (bm > m) {
      f = std::exp(m - bm);  // 0 on the first live block
      z *= f;
      m = bm;
    }
    // p = exp(s - m), 0 for masked keys
    const __m512 mv = _mm512_set1_ps(m), ninf = _mm512_set1_ps(-INFINITY);
    __m512 zs = _mm512_setzero_ps();
    for (long j = 0; j < nb; j += 16) {
      const __mmask16 tm = tail_mask(nb - j);
      const __m512 sv = _mm512_mask_loadu_ps(ninf, tm, s + j);
      const __mmask16 live = _mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ);
      const __m512 p = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(sv, mv)));
      zs = _mm512_add_ps(zs, p);
      _mm512_mask_storeu_ps(s + j, tm, p);
    }
    z += _mm512_reduce_add_ps(zs);
    bool first = true;
    for (long j = 0; j < nb; j++) {
      if (s[j] == 0.f) continue;
      scale_axpy(out, first ? f : 1.f, s[j], v + (j0 + j) * kvStride, Dh);
      first = false;
    }
    if (first && f != 1.f) scale_axpy(out, f, 0.f, out, Dh);
  }
  if (z > 0.f) {
    const __m512 inv = _mm512_set1_ps(1.f / z);
    for (int d = 0; d < Dh; d += 16) {
      const __mmask16 tm = tail_mask(Dh - d);
      _mm512_mask_storeu_ps(out + d, tm, _mm512_mul_ps(_mm512_maskz_loadu_ps(tm, out + d), inv));
    }
    if (lse) *lse = m + std::log(z);
  } else {
    for (int d = 0; d < Dh; d += 16) _mm512_mask_storeu_ps(out + d, tail_mask(Dh - d), _mm512_setzero_ps());
    if (lse) *lse = -INFINITY;
  }
}

void score_row(const float* q, const float* k, long kvStride, long Mk, int Dh, const uint8_t* mask, float scale,
               float* s, float* m_out, float* z_out) {
  float m = -INFINITY;
  for (long j = 0; j < Mk; j++) {
    if (mask && !mask[j]) {
      s[j] = -INFINITY;
      continue;
    }
    const float sj = dot(q, k + j * kvStride, Dh) * scale;
    s[j] = sj;
    m = sj > m ? sj : m;
  }
  float z = 0.f;
  if (m != -INFINITY) {
    const __m512 mv = _mm512_set1_ps(m), ninf = _mm512_set1_ps(-INFINITY);
    __m512 zs = _mm512_setzero_ps();
    for (long j = 0; j < Mk; j += 16) {
      const __mmask16 tm = tail_mask(Mk - j);
      const __m512 sv = _mm512_mask_loadu_ps(ninf, tm, s + j);
      const __mmask16 live = _mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ);
      zs = _mm512_add_ps(zs, _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(sv, mv))));
    }
    z = _mm512_reduce_add_ps(zs);
  }
  *m_out = m;
  *z_out = z;
}


void score_block4(const float* q, long qs, int nq, const float* KT, long ldk, long Mk, int Dh, const uint8_t* mask,
                  float scale, float* s, float* m, float* z) {
  const float* qr[4];
  for (int r = 0; r < 4; r++) qr[r] = q + (r < nq ? r : 0) * qs;
  for (long j = 0; j < Mk; j += 64) {
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    const float* kt = KT + j;
    for (int d = 0; d < Dh; d++) {
      const float* row = kt + long(d) * ldk;
      __m512 k0 = _mm512_loadu_ps(row), k1 = _mm512_loadu_ps(row + 16), k2 = _mm512_loadu_ps(row + 32),
             k3 = _mm512_loadu_ps(row + 48);
      // Keep the four key vectors in registers: folded into the FMAs they would be loaded four times each.
      asm("" : "+v"(k0), "+v"(k1), "+v"(k2), "+v"(k3));
      for (int r = 0; r < 4; r++) {
        const __m512 qb = _mm512_set1_ps(qr[r][d]);
        acc[r][0] = _mm512_fmadd_ps(qb, k0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(qb, k1, acc[r][1]);
        acc[r][2] = _mm512_fmadd_ps(qb, k2, acc[r][2]);
        acc[r][3] = _mm512_fmadd_ps(qb, k3, acc[r][3]);
      }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 4; c++) _mm512_storeu_ps(s + r * ldk + j + 16 * c, _mm512_mul_ps(acc[r][c], sc));
  }
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int r = 0; r < nq; r++) {
    float* sr = s + r * ldk;
    __m512 mv = ninf;
    for (long j = 0; j < Mk; j += 16) {
      __mmask16 tm = tail_mask(Mk - j);
      if (mask) {
        __mmask16 live = 0;
        for (int e = 0; e < 16 && j + e < Mk; e++) live |= __mmask16(mask[j + e] ? 1u << e : 0u);
        const __m512 sv = _mm512_mask_loadu_ps(ninf, tm & live, sr + j);
        _mm512_mask_storeu_ps(sr + j, tm, sv);
        mv = _mm512_max_ps(mv, sv);
      } else {
        mv = _mm512_max_ps(mv, _mm512_mask_loadu_ps(ninf, tm, sr + j));
      }
    }
    m[r] = _mm512_reduce_max_ps(mv);
    __m512 zs = _mm512_setzero_ps();
    if (m[r] != -INFINITY) {
      const __m512 mb = _mm512_set1_ps(m[r]);
      for (long j = 0; j < Mk; j += 16) {
        const __m512 sv = _mm512_mask_loadu_ps(ninf, tail_mask(Mk - j), sr + j);
        const __mmask16 live = _mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ);
        zs = _mm512_add_ps(zs, _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(sv, mb))));
      }
    }
    z[r] = _mm512_reduce_add_ps(zs);
  }
}

void attn_block4(const float* q, long qs, int nq, const float* KT, long ldk, const float* v, long kvs, long Mk, int Dh,
                 const uint8_t* mask, float scale, float* out, long os, float* lse, long ls, float* s) {
  float m[4], z[4];
  score_block4(q, qs, nq, KT, ldk, Mk, Dh, mask, scale, s, m, z);
  // Probabilities in place (masked keys -> 0).
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  for (int r = 0; r < nq; r++) {
    float* sr = s + r * ldk;
    const __m512 mb = _mm512_set1_ps(m[r]);
    for (long j = 0; j < Mk; j += 16) {
      const __mmask16 tm = tail_mask(Mk - j);
      const __m512 sv = _mm512_mask_loadu_ps(ninf, tm, sr + j);
      const __mmask16 live = _mm512_cmp_ps_mask(sv, ninf, _CMP_NEQ_OQ);
      const __m512 p = m[r] == -INFINITY ? _mm512_setzero_ps() : _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(sv, mb)));
      _mm512_mask_storeu_ps(sr + j, tm, p);
    }
  }
  // PV in 64-wide slices of the head dimension: 4 rows x 4 vectors of accumulators.
  for (int d0 = 0; d0 < Dh; d0 += 64) {
    const int nv = (Dh - d0) >= 64 ? 4 : (Dh - d0) / 16;
    if (nv == 4 && nq == 4) {
      // Full tile with constant trip counts, so the 16 accumulators stay in registers (the general loop below
      // indexes them with run-time bounds). Zero probabilities (masked keys) contribute exact zeros.
      __m512 acc[4][4];
      for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
      for (long j = 0; j < Mk; j++) {
        const float* vj = v + j * kvs + d0;
        __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16), v2 = _mm512_loadu_ps(vj + 32),
               v3 = _mm512_loadu_ps(vj + 48);
        asm("" : "+v"(v0), "+v"(v1), "+v"(v2), "+v"(v3));  // loaded once, not folded into each FMA
        for (int r = 0; r < 4; r++) {
          const __m512 pb = _mm512_set1_ps(s[r * ldk + j]);
          acc[r][0] = _mm512_fmadd_ps(pb, v0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(pb, v1, acc[r][1]);
          acc[r][2] = _mm512_fmadd_ps(pb, v2, acc[r][2]);
          acc[r][3] = _mm512_fmadd_ps(pb, v3, acc[r][3]);
        }
      }
      for (int r = 0; r < 4; r++) {
        const __m512 inv = _mm512_set1_ps(z[r] > 0.f ? 1.f / z[r] : 0.f);
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(out + r * os + d0 + 16 * c, _mm512_mul_ps(acc[r][c], inv));
      }
      continue;
    }
    __m512 acc[4][4];
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    for (long j = 0; j < Mk; j++) {
      const float* vj = v + j * kvs + d0;
      __m512 vv[4];
      for (int c = 0; c < nv; c++) vv[c] = _mm512_loadu_ps(vj + 16 * c);
      for (int r = 0; r < nq; r++) {
        const float p = s[r * ldk + j];
        if (p == 0.f) continue;
        const __m512 pb = _mm512_set1_ps(p);
        for (int c = 0; c < nv; c++) acc[r][c] = _mm512_fmadd_ps(pb, vv[c], acc[r][c]);
      }
    }
    for (int r = 0; r < nq; r++) {
      const __m512 inv = _mm512_set1_ps(z[r] > 0.f ? 1.f / z[r] : 0.f);
      for (int c = 0; c < nv; c++) _mm512_storeu_ps(out + r * os + d0 + 16 * c, _mm512_mul_ps(acc[r][c], inv));
    }
  }
  if (lse)
    for (int r = 0; r < nq; r++) lse[r * ls] = z[r] > 0.f ? m[r] + std::log(z[r]) : -INFINITY;
}

// DyLLM column update (TierOps::delta_cols). Dh = 128 (LLaDA, Dream): the row's 8 output vectors stay in registers
// across the columns; other Dh: masked 16-wide steps over o.
void delta_cols(float* o, const float* s, float m, float z, const int32_t* cols, long nc, const float* dv, long kvs, int Dh,
                float* pr) {
  if (pr)
    for (long c = 0; c < nc; c++) pr[c] = 0.f;
  if (m == -INFINITY || z <= 0.f || nc == 0) return;
  const float invz = 1.f / z;
  // Column c's probability (0 for a hidden key), recorded in pr.
  auto prob = [&](long c) {
    const float sj = s[cols[c]];
    const float p = sj == -INFINITY ? 0.f : std::exp(sj - m) * invz;
    if (pr) pr[c] = p;
    return p;
  };
  if (Dh == 128) {
    __m512 acc[8];
    for (int v = 0; v < 8; v++) acc[v] = _mm512_loadu_ps(o + 16 * v);
    for (long c = 0; c < nc; c++) {
      const float p = prob(c);
      if (p == 0.f) continue;
      const __m512 pb = _mm512_set1_ps(p);
      for (int v = 0; v < 8; v++) acc[v] = _mm512_fmadd_ps(pb, _mm512_loadu_ps(dv + c * kvs + 16 * v), acc[v]);
    }
    for (int v = 0; v < 8; v++) _mm512_storeu_ps(o + 16 * v, acc[v]);
    return;
  }
  for (long c = 0; c < nc; c++) {
    const float p = prob(c);
    if (p == 0.f) continue;
    const __m512 pb = _mm512_set1_ps(p);
    for (int d = 0; d < Dh; d += 16) {
      const __mmask16 tm = tail_mask(Dh - d);
      _mm512_mask_storeu_ps(o + d, tm, _mm512_fmadd_ps(pb, _mm512_maskz_loadu_ps(tm, dv + c * kvs + d), _mm512_maskz_loadu_ps(tm, o + d)));
    }
  }
}

}  // namespace avx512
}  // namespace dyllm

// tier_avx512.h — what the AVX-512 + BF16 tier's translation units share (all compiled with the tier's flags:
// -march=x86-64-v4 -mavx512bf16 -mavx512vnni): the register tile height, mask and exp helpers, and the kernels defined in
// tier_avx512_attn.cc and tier_avx512_stats.cc that tier_avx512.cc puts into the TierOps table.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels.h"

namespace dyllm {
namespace avx512 {

constexpr int MR = 12;

inline __mmask16 tail_mask(long n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

// exp(x) for x in [-inf, 88.7]: Cephes polynomial on the reduced argument, 2^n applied with vscalefps.
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.f)), _mm512_set1_ps(88.72f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}

// tier_avx512_attn.cc
void attn_row(const float* q, const float* k, const float* v, long kvStride, long Mk, int Dh, const uint8_t* mask,
              float scale, float* out, float* lse, float* s);
void score_row(const float* q, const float* k, long kvStride, long Mk, int Dh, const uint8_t* mask, float scale,
               float* s, float* m_out, float* z_out);
void score_block4(const float* q, long qs, int nq, const float* KT, long ldk, long Mk, int Dh, const uint8_t* mask,
                  float scale, float* s, float* m, float* z);
void attn_block4(const float* q, long qs, int nq, const float* KT, long ldk, const float* v, long kvs, long Mk, int Dh,
                 const uint8_t* mask, float scale, float* out, long os, float* lse, long ls, float* s);
void delta_cols(float* o, const float* s, float m, float z, const int32_t* cols, long nc, const float* dv, long kvs,
                int Dh, float* pr);
// tier_avx512_stats.cc
void logit_row_stats(const float* r, long V, int want_entropy, int32_t* argmax, double* p1, double* p2, double* ne);
// tier_avx512_quant.cc (rows per quantised tile: 6; activations of int8 weights packed unsigned)
void quant_row(const float* x, long lead, long n, long G, int8_t* q, float* d, int32_t* qsum);
void gemm_q8(int rows, long G, const uint32_t* A, const uint8_t* B, const float* cs, float* C, long ldc, int ncols,
             int accumulate, const float* bias);
void gemm_q4(int rows, long G, const uint32_t* A, const uint8_t* B, float* C, long ldc, int ncols, int accumulate,
             const float* bias);

}  // namespace avx512
}  // namespace dyllm

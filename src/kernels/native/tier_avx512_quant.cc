// AVX-512 tier, quantised weights (compiled with the tier's flags plus -mavx512vnni; the tier is only bound after
// CPUID reports AVX512-VNNI): activation quantisation of a row and the int8 / q4 GEMM tiles (layouts in kernels.h,
// rounding rules in src/kernels/quant.ts).
//
// Both GEMMs run vpdpbusd (64 u8 × s8 products into 16 int32 lanes per instruction, twice the vdpbf16ps rate) over
// one group of 32 input features, then convert the group's int32 sums to f32 and accumulate them scaled by the
// activation block's scale (and, for q4, the weight group's scale). Register tile: 6 rows × 32 columns = 12 int32 +
// 12 f32 accumulators.
//   int8: vpdpbusd needs one unsigned operand, so activations are packed as q + 128 (u8) against the signed weights,
//         and each group's sums start at −128·Σ_k w (the panel's correction row, times 128 by a shift).
//   q4:   the 4-bit weights are the unsigned operand (0..15) against the signed activations; each group's sums start
//         at −8·Σ_k xq (packed with the activations), which turns q into q − 8.
#include "tier_avx512.h"

namespace dyllm {
namespace avx512 {
namespace {

constexpr int MRQ = 6;

inline __mmask16 mask_lo(int ncols) { return ncols >= 16 ? __mmask16(0xffff) : __mmask16((1u << ncols) - 1); }
inline __mmask16 mask_hi(int ncols) {
  return ncols >= 32 ? __mmask16(0xffff) : ncols > 16 ? __mmask16((1u << (ncols - 16)) - 1) : __mmask16(0);
}

template <int R>
inline void store_q(const __m512* f0, const __m512* f1, const float* cs, float* C, long ldc, int ncols, int accumulate,
                    const float* bias) {
  const __mmask16 m0 = mask_lo(ncols), m1 = mask_hi(ncols);
  __m512 s0 = _mm512_set1_ps(1.f), s1 = s0, b0 = _mm512_setzero_ps(), b1 = b0;
  if (cs) {
    s0 = _mm512_loadu_ps(cs);
    s1 = _mm512_loadu_ps(cs + 16);
  }
  if (bias) {
    b0 = _mm512_maskz_loadu_ps(m0, bias);
    b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) {
    float* cr = C + r * ldc;
    __m512 v0 = _mm512_fmadd_ps(f0[r], s0, b0), v1 = _mm512_fmadd_ps(f1[r], s1, b1);
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

template <int R>
void kq8(long G, const uint32_t* A, const uint8_t* B, const float* cs, float* C, long ldc, int ncols, int accumulate,
         const float* bias) {
  __m512 f0[R], f1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) f0[r] = f1[r] = _mm512_setzero_ps();
  for (long g = 0; g < G; g++) {
    const uint8_t* b = B + g * Q8_GROUP_BYTES;
    const uint32_t* a = A + g * QA_UNITS * MRQ;
    if (R <= 2) _mm_prefetch(reinterpret_cast<const char*>(b + 4 * Q8_GROUP_BYTES), _MM_HINT_T0);
    const __m512i w0 = _mm512_slli_epi32(_mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 1024))), 7);
    const __m512i w1 = _mm512_slli_epi32(_mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 1056))), 7);
    __m512i i0[R], i1[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) i0[r] = w0, i1[r] = w1;
#pragma GCC unroll 8
    for (int kq = 0; kq < 8; kq++) {
      const __m512i b0 = _mm512_loadu_si512(b + kq * 128), b1 = _mm512_loadu_si512(b + kq * 128 + 64);
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        const __m512i av = _mm512_set1_epi32(int(a[kq * MRQ + r]));
        i0[r] = _mm512_dpbusd_epi32(i0[r], av, b0);
        i1[r] = _mm512_dpbusd_epi32(i1[r], av, b1);
      }
    }
    const float* ad = reinterpret_cast<const float*>(a + 8 * MRQ);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m512 dv = _mm512_set1_ps(ad[r]);
      f0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0[r]), dv, f0[r]);
      f1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1[r]), dv, f1[r]);
    }
  }
  store_q<R>(f0, f1, cs, C, ldc, ncols, accumulate, bias);
}

template <int R>
void kq4(long G, const uint32_t* A, const uint8_t* B, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  __m512 f0[R], f1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; r++) f0[r] = f1[r] = _mm512_setzero_ps();
  for (long g = 0; g < G; g++) {
    const uint8_t* b = B + g * Q4_GROUP_BYTES;
    const uint32_t* a = A + g * QA_UNITS * MRQ;
    if (R <= 2) _mm_prefetch(reinterpret_cast<const char*>(b + 4 * Q4_GROUP_BYTES), _MM_HINT_T0);
    const int32_t* as = reinterpret_cast<const int32_t*>(a + 9 * MRQ);
    __m512i i0[R], i1[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) i0[r] = i1[r] = _mm512_set1_epi32(as[r]);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      const __m512i v0 = _mm512_loadu_si512(b + (2 * j) * 64), v1 = _mm512_loadu_si512(b + (2 * j + 1) * 64);
      const __m512i l0 = _mm512_and_si512(v0, m4), l1 = _mm512_and_si512(v1, m4);
      const __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4), h1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4);
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        const __m512i aj = _mm512_set1_epi32(int(a[j * MRQ + r]));
        const __m512i ak = _mm512_set1_epi32(int(a[(j + 4) * MRQ + r]));
        i0[r] = _mm512_dpbusd_epi32(i0[r], l0, aj);
        i1[r] = _mm512_dpbusd_epi32(i1[r], l1, aj);
        i0[r] = _mm512_dpbusd_epi32(i0[r], h0, ak);
        i1[r] = _mm512_dpbusd_epi32(i1[r], h1, ak);
      }
    }
    const __m512 d0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 512))), 16));
    const __m512 d1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 544))), 16));
    const float* ad = reinterpret_cast<const float*>(a + 8 * MRQ);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
      const __m512 dv = _mm512_set1_ps(ad[r]);
      f0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0[r]), _mm512_mul_ps(d0, dv), f0[r]);
      f1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1[r]), _mm512_mul_ps(d1, dv), f1[r]);
    }
  }
  store_q<R>(f0, f1, nullptr, C, ldc, ncols, accumulate, bias);
}

}  // namespace

void gemm_q8(int rows, long G, const uint32_t* A, const uint8_t* B, const float* cs, float* C, long ldc, int ncols,
             int accumulate, const float* bias) {
  switch (rows) {
    case 1: kq8<1>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    case 2: kq8<2>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    case 3: kq8<3>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    case 4: kq8<4>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    case 5: kq8<5>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    default: kq8<6>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
  }
}

void gemm_q4(int rows, long G, const uint32_t* A, const uint8_t* B, float* C, long ldc, int ncols, int accumulate,
             const float* bias) {
  switch (rows) {
    case 1: kq4<1>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    case 2: kq4<2>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    case 3: kq4<3>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    case 4: kq4<4>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    case 5: kq4<5>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    default: kq4<6>(G, A, B, C, ldc, ncols, accumulate, bias); break;
  }
}

// One group of 32 values at a time; a group that straddles the row's lead or end is copied into a zero buffer.
void quant_row(const float* x, long lead, long n, long G, int8_t* q, float* d, int32_t* qsum) {
  const __m512 sign = _mm512_set1_ps(-0.f), inf = _mm512_set1_ps(INFINITY);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  alignas(64) float buf[QK];
  for (long g = 0; g < G; g++) {
    const long j0 = g * QK - lead;  // x index of the group's first value
    const float* src = x + j0;
    if (j0 < 0 || j0 + QK > n) {
      for (int t = 0; t < QK; t++) buf[t] = j0 + t >= 0 && j0 + t < n ? x[j0 + t] : 0.f;
      src = buf;
    }
    const __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
    const __m512 a0 = _mm512_andnot_ps(sign, v0), a1 = _mm512_andnot_ps(sign, v1);
    const __mmask16 bad = _mm512_cmp_ps_mask(a0, inf, _CMP_NLT_UQ) | _mm512_cmp_ps_mask(a1, inf, _CMP_NLT_UQ);
    int8_t* qg = q + g * QK;
    if (bad) {
      d[g] = NAN;
      qsum[g] = 0;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qg), _mm256_setzero_si256());
      continue;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    const float id = 127.f / amax;
    if (std::isinf(id)) {
      d[g] = 0.f;
      qsum[g] = 0;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qg), _mm256_setzero_si256());
      continue;
    }
    d[g] = amax / 127.f;
    const __m512 iv = _mm512_set1_ps(id);
    __m512i t0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, iv)), t1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, iv));
    t0 = _mm512_min_epi32(_mm512_max_epi32(t0, lo), hi);
    t1 = _mm512_min_epi32(_mm512_max_epi32(t1, lo), hi);
    qsum[g] = _mm512_reduce_add_epi32(_mm512_add_epi32(t0, t1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qg), _mm512_cvtepi32_epi8(t0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qg + 16), _mm512_cvtepi32_epi8(t1));
  }
}

}  // namespace avx512
}  // namespace dyllm

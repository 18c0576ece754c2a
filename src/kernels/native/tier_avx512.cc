// AVX-512 + BF16 tier (compiled with -march=x86-64-v4 -mavx512bf16; only ever called after a CPUID check): GEMM, the
// row-wise kernels, the microbenchmarks and the tier's TierOps table (attention kernels: tier_avx512_attn.cc; logit
// statistics: tier_avx512_stats.cc; quantised weights: tier_avx512_quant.cc).
// bf16 GEMM/GEMV: vdpbf16ps on k-pairs, 12x32 register tile (24 zmm accumulators); the same kernel with fewer rows
// and the whole K in registers is the small-M / GEMV path (it streams each weight panel once).
#include "tier_avx512.h"

namespace dyllm {
namespace avx512 {
namespace {

inline __mmask16 mask_lo(int ncols) { return ncols >= 16 ? __mmask16(0xffff) : __mmask16((1u << ncols) - 1); }
inline __mmask16 mask_hi(int ncols) {
  return ncols >= 32 ? __mmask16(0xffff) : ncols > 16 ? __mmask16((1u << (ncols - 16)) - 1) : __mmask16(0);
}

template <int R>
inline void store_tile(__m512* c0, __m512* c1, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  const __mmask16 m0 = mask_lo(ncols), m1 = mask_hi(ncols);
  __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
  if (bias) {
    b0 = _mm512_maskz_loadu_ps(m0, bias);
    b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) {
    float* cr = C + r * ldc;
    __m512 v0 = _mm512_add_ps(c0[r], b0), v1 = _mm512_add_ps(c1[r], b1);
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}

template <int R>
void kbf16(long kp, const uint32_t* A, const uint16_t* B, float* C, long ldc, int ncols, int accumulate,
           const float* bias) {
  __m512 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (long kk = 0; kk < kp; kk++) {
    const uint16_t* b = B + kk * 64;
    if (R <= 4) _mm_prefetch(reinterpret_cast<const char*>(b + 64 * 16), _MM_HINT_T0),
                _mm_prefetch(reinterpret_cast<const char*>(b + 64 * 16 + 32), _MM_HINT_T0);
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 32);
    const uint32_t* a = A + kk * MR;
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[r]));
      c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
    }
  }
  store_tile<R>(c0, c1, C, ldc, ncols, accumulate, bias);
}

template <int R>
void kbf16c(long kp, const uint32_t* A, const uint32_t* Alo, const uint16_t* B, float* C, long ldc, int ncols,
            int accumulate, const float* bias) {
  __m512 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (long kk = 0; kk < kp; kk++) {
    const uint16_t* b = B + kk * 64;
    if (R <= 4) _mm_prefetch(reinterpret_cast<const char*>(b + 64 * 16), _MM_HINT_T0),
                _mm_prefetch(reinterpret_cast<const char*>(b + 64 * 16 + 32), _MM_HINT_T0);
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 32);
    const uint32_t* a = A + kk * MR;
    const uint32_t* al = Alo + kk * MR;
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[r]));
      const __m512bh lv = (__m512bh)_mm512_set1_epi32(int(al[r]));
      c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
      c0[r] = _mm512_dpbf16_ps(c0[r], lv, b0);
      c1[r] = _mm512_dpbf16_ps(c1[r], lv, b1);
    }
  }
  store_tile<R>(c0, c1, C, ldc, ncols, accumulate, bias);
}

template <int R>
void kf32(long k, const float* A, const float* B, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  __m512 c0[R], c1[R];
#pragma GCC unroll 16
  for (int r = 0; r < R; r++) c0[r] = c1[r] = _mm512_setzero_ps();
  for (long i = 0; i < k; i++) {
    const float* b = B + i * 32;
    if (R <= 4) _mm_prefetch(reinterpret_cast<const char*>(b + 32 * 16), _MM_HINT_T0),
                _mm_prefetch(reinterpret_cast<const char*>(b + 32 * 16 + 16), _MM_HINT_T0);
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    const float* a = A + i * MR;
#pragma GCC unroll 16
    for (int r = 0; r < R; r++) {
      const __m512 av = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
  }
  store_tile<R>(c0, c1, C, ldc, ncols, accumulate, bias);
}

#define DISPATCH_ROWS(FN, ...)        \
  switch (rows) {                     \
    case 1: FN<1>(__VA_ARGS__); break;   \
    case 2: FN<2>(__VA_ARGS__); break;   \
    case 3: FN<3>(__VA_ARGS__); break;   \
    case 4: FN<4>(__VA_ARGS__); break;   \
    case 5: FN<5>(__VA_ARGS__); break;   \
    case 6: FN<6>(__VA_ARGS__); break;   \
    case 7: FN<7>(__VA_ARGS__); break;   \
    case 8: FN<8>(__VA_ARGS__); break;   \
    case 9: FN<9>(__VA_ARGS__); break;   \
    case 10: FN<10>(__VA_ARGS__); break; \
    case 11: FN<11>(__VA_ARGS__); break; \
    default: FN<12>(__VA_ARGS__); break; \
  }

void gemm_bf16(int rows, long kp, const uint32_t* A, const uint16_t* B, float* C, long ldc, int ncols, int accumulate,
               const float* bias) {
  DISPATCH_ROWS(kbf16, kp, A, B, C, ldc, ncols, accumulate, bias)
}
void gemm_f32(int rows, long k, const float* A, const float* B, float* C, long ldc, int ncols, int accumulate,
              const float* bias) {
  DISPATCH_ROWS(kf32, k, A, B, C, ldc, ncols, accumulate, bias)
}
void gemm_bf16_comp(int rows, long kp, const uint32_t* A, const uint32_t* Alo, const uint16_t* B, float* C, long ldc,
                    int ncols, int accumulate, const float* bias) {
  DISPATCH_ROWS(kbf16c, kp, A, Alo, B, C, ldc, ncols, accumulate, bias)
}

void rmsnorm_row(const float* x, long D, const float* w, float eps, float* out) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  long d = 0;
  for (; d + 32 <= D; d += 32) {
    const __m512 x0 = _mm512_loadu_ps(x + d), x1 = _mm512_loadu_ps(x + d + 16);
    a0 = _mm512_fmadd_ps(x0, x0, a0);
    a1 = _mm512_fmadd_ps(x1, x1, a1);
  }
  for (; d < D; d += 16) {
    const __m512 x0 = _mm512_maskz_loadu_ps(tail_mask(D - d), x + d);
    a0 = _mm512_fmadd_ps(x0, x0, a0);
  }
  const double ss = double(_mm512_reduce_add_ps(_mm512_add_ps(a0, a1)));
  const __m512 r = _mm512_set1_ps(float(1.0 / std::sqrt(ss / double(D) + double(eps))));
  for (d = 0; d < D; d += 16) {
    const __mmask16 m = tail_mask(D - d);
    const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + d), r), _mm512_maskz_loadu_ps(m, w + d));
    _mm512_mask_storeu_ps(out + d, m, y);
  }
}

void rope_row(float* x, int nHeads, int Dh, const float* c, const float* s) {
  const int h = Dh / 2;
  for (int hd = 0; hd < nHeads; hd++) {
    float* xo = x + long(hd) * Dh;
    for (int j = 0; j < h; j += 16) {
      const __mmask16 m = tail_mask(h - j);
      const __m512 x1 = _mm512_maskz_loadu_ps(m, xo + j), x2 = _mm512_maskz_loadu_ps(m, xo + h + j);
      const __m512 cv = _mm512_maskz_loadu_ps(m, c + j), sv = _mm512_maskz_loadu_ps(m, s + j);
      _mm512_mask_storeu_ps(xo + j, m, _mm512_fmsub_ps(x1, cv, _mm512_mul_ps(x2, sv)));
      _mm512_mask_storeu_ps(xo + h + j, m, _mm512_fmadd_ps(x2, cv, _mm512_mul_ps(x1, sv)));
    }
  }
}

void silu_mul(const float* g, const float* u, long n, float* out) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (long i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i), uv = _mm512_maskz_loadu_ps(m, u + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv));
  }
}

void add(float* dst, const float* src, long n) {
  for (long i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + i), _mm512_maskz_loadu_ps(m, src + i)));
  }
}

// ---- microbenchmarks -------------------------------------------------------------------------------------------

#define DYLLM_CHAINS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DYLLM_CHAINS24(X) DYLLM_CHAINS12(X) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)

// 12 independent accumulator chains kept in registers (the empty asm keeps the compiler from folding the loop).
double peak_bf16(long iters) {
#define DECL(i) __m512 c##i = _mm512_set1_ps(float(i));
  DYLLM_CHAINS24(DECL)
#undef DECL
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3f003f00);
  for (long it = 0; it < iters; it++) {
#define STEP(i) c##i = _mm512_dpbf16_ps(c##i, a, b);
    DYLLM_CHAINS24(STEP)
#undef STEP
    __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
    __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    __asm__ volatile("" : "+v"(c12), "+v"(c13), "+v"(c14), "+v"(c15), "+v"(c16), "+v"(c17));
    __asm__ volatile("" : "+v"(c18), "+v"(c19), "+v"(c20), "+v"(c21), "+v"(c22), "+v"(c23));
  }
  __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, c##i);
  DYLLM_CHAINS24(SUM)
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return double(iters) * 24 * 64;
}

double peak_fma(long iters) {
#define DECL(i) __m512 c##i = _mm512_set1_ps(float(i));
  DYLLM_CHAINS12(DECL)
#undef DECL
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (long it = 0; it < iters; it++) {
#define STEP(i) c##i = _mm512_fmadd_ps(c##i, a, b);
    DYLLM_CHAINS12(STEP)
#undef STEP
    __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
    __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
  }
  __m512 s = _mm512_setzero_ps();
  DYLLM_CHAINS12(SUM)
#undef SUM
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return double(iters) * 12 * 32;
}

double stream_read(const float* p, long n, float* sink) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  long i = 0;
  for (; i + 64 <= n; i += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 512), _MM_HINT_T0);  // 2 KiB ahead, like the GEMV
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 528), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 544), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i + 560), _MM_HINT_T0);
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  float r = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; i++) r += p[i];
  *sink = r;
  return double(n) * 4;
}

}  // namespace
}  // namespace avx512

const TierOps tier_avx512 = {
    "avx512bf16", avx512::MR, avx512::gemm_bf16, avx512::gemm_f32, avx512::attn_row, avx512::rmsnorm_row,
    avx512::rope_row, avx512::silu_mul, avx512::add, avx512::peak_bf16, avx512::peak_fma, avx512::stream_read,
    avx512::gemm_bf16_comp, avx512::score_row, avx512::attn_block4, avx512::score_block4, avx512::logit_row_stats,
    avx512::delta_cols, 6, 1, avx512::quant_row, avx512::gemm_q8, avx512::gemm_q4,
};

}  // namespace dyllm

// AVX-512 + BF16 tier (compiled with -march=x86-64-v4 -mavx512bf16; only ever called after a CPUID check).
// bf16 GEMM/GEMV: vdpbf16ps on k-pairs, 12x32 register tile (24 zmm accumulators); the same kernel with fewer rows
// and the whole K in registers is the small-M / GEMV path (it streams each weight panel once).
#include <immintrin.h>

#include <cmath>

#include "kernels.h"

namespace dyllm {
namespace {

constexpr int MR = 12;

inline __mmask16 mask_lo(int ncols) { return ncols >= 16 ? __mmask16(0xffff) : __mmask16((1u << ncols) - 1); }
inline __mmask16 mask_hi(int ncols) {
  return ncols >= 32 ? __mmask16(0xffff) : ncols > 16 ? __mmask16((1u << (ncols - 16)) - 1) : __mmask16(0);
}
inline __mmask16 tail_mask(long n) { return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1); }

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

// ---------------------------------------------------------------------------------------------------------------
// Logit row statistics. Pass 1: max, its first index and the second value with fp32 compares (4 x 16 lanes). Pass 2:
// z = Σ exp(x − max) in double (8 lanes). Pass 3 (entropy only): Σ p·log(p + 1e-10) in double. The row (≤ 600 KB)
// stays in L2 after pass 1.

// 2^(j/16), j = 0..15 (correctly rounded).
alignas(64) constexpr double kExp2Frac[16] = {
    0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
    0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0,
    0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
    0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0};
// log: the mantissa m in [0.75, 1.5) is rounded to k/16, k = 12..24; entry k mod 16 (the 13 used are distinct) holds
// kLogInv = RN(16/k) and kLogL = −log(kLogInv). k = 16 has 1 and 0 exactly, so y near 1 keeps full relative accuracy.
alignas(64) constexpr double kLogInv[16] = {
    0x1.0000000000000p+0, 0x1.e1e1e1e1e1e1ep-1, 0x1.c71c71c71c71cp-1, 0x1.af286bca1af28p-1,
    0x1.999999999999ap-1, 0x1.8618618618618p-1, 0x1.745d1745d1746p-1, 0x1.642c8590b2164p-1,
    0x1.5555555555555p-1, 0x1.0000000000000p+0, 0x1.0000000000000p+0, 0x1.0000000000000p+0,
    0x1.5555555555555p+0, 0x1.3b13b13b13b14p+0, 0x1.2492492492492p+0, 0x1.1111111111111p+0};
alignas(64) constexpr double kLogL[16] = {
    0.0,                   0x1.f0a30c01162a8p-5,  0x1.e27076e2af2eap-4,  0x1.5ff3070a793d6p-3,
    0x1.c8ff7c79a9a20p-3,  0x1.1675cababa60fp-2,  0x1.4618bc21c5ec2p-2,  0x1.739d7f6bbd007p-2,
    0x1.9f323ecbf984dp-2,  0.0,                   0.0,                   0.0,
    -0x1.269621134db91p-2, -0x1.a93ed3c8ad9e5p-3, -0x1.1178e8227e47ap-3, -0x1.08598b59e3a06p-4};

struct ExpTab {
  __m512d t0 = _mm512_load_pd(kExp2Frac), t1 = _mm512_load_pd(kExp2Frac + 8);
};
struct LogTab {
  __m512d i0 = _mm512_load_pd(kLogInv), i1 = _mm512_load_pd(kLogInv + 8);
  __m512d l0 = _mm512_load_pd(kLogL), l1 = _mm512_load_pd(kLogL + 8);
};

// exp(d) in double for d <= 0 (NaN stays NaN; d < −1000 gives 0): d = k·ln2/16 + r with |r| <= ln2/32,
// exp(d) = 2^floor(k/16) · 2^((k mod 16)/16) · (1 + expm1(r)), expm1 by its degree-7 Taylor polynomial
// (truncation < 2e-18). Relative error ≈ 1 ulp.
inline __m512d exp_le0_pd(__m512d d, const ExpTab& T) {
  d = _mm512_max_pd(_mm512_set1_pd(-1000.0), d);  // vmaxpd returns its second operand for NaN
  const __m512d magic = _mm512_set1_pd(0x1.8p52);   // t's low mantissa bits hold k (two's complement)
  const __m512d t = _mm512_fmadd_pd(d, _mm512_set1_pd(0x1.71547652b82fep+4), magic);
  const __m512d kf = _mm512_sub_pd(t, magic);
  __m512d r = _mm512_fnmadd_pd(kf, _mm512_set1_pd(0x1.62e42fefa0000p-5), d);  // ln2/16, high 38 bits: exact product
  r = _mm512_fnmadd_pd(kf, _mm512_set1_pd(0x1.cf79abc9e3b3ap-44), r);
  const __m512d f = _mm512_permutex2var_pd(T.t0, _mm512_castpd_si512(t), T.t1);  // index = k mod 16
  __m512d q = _mm512_set1_pd(1.0 / 5040);
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 720));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 120));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 24));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 6));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(0.5));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0));
  q = _mm512_mul_pd(q, r);
  return _mm512_scalef_pd(_mm512_fmadd_pd(f, q, f), _mm512_mul_pd(kf, _mm512_set1_pd(0.0625)));  // scalef floors
}

// log(y) in double for normal positive y: y = 2^E·m with m in [0.75, 1.5), k = round(16m), inv = RN(16/k),
// L = −log(inv): log(y) = E·ln2 + L + log1p(m·inv − 1) with |m·inv − 1| <= 1/24, log1p by its degree-11 Taylor
// polynomial (relative truncation < 5e-17). Near y = 1 (E = 0, k = 16) this is log1p(y − 1) itself.
inline __m512d log_pd(__m512d y, const LogTab& T) {
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d m = _mm512_getmant_pd(y, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
  __m512d E = _mm512_getexp_pd(y);
  E = _mm512_mask_add_pd(E, _mm512_cmp_pd_mask(m, one, _CMP_LT_OQ), E, one);  // m was halved: one more
  const __m512i k = _mm512_castpd_si512(_mm512_fmadd_pd(m, _mm512_set1_pd(16.0), _mm512_set1_pd(0x1.8p52)));
  const __m512d inv = _mm512_permutex2var_pd(T.i0, k, T.i1);  // bits 3:0 of k select the entry
  const __m512d L = _mm512_permutex2var_pd(T.l0, k, T.l1);
  const __m512d r = _mm512_fmsub_pd(m, inv, one);
  __m512d q = _mm512_set1_pd(1.0 / 11);
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(-1.0 / 10));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 9));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(-1.0 / 8));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 7));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(-1.0 / 6));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 5));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(-1.0 / 4));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 3));
  q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(-0.5));
  q = _mm512_fmadd_pd(q, r, one);
  q = _mm512_mul_pd(q, r);
  const __m512d lo = _mm512_fmadd_pd(E, _mm512_set1_pd(0x1.cf79abc9e3b3ap-40), q);  // ln2 = hi (38 bits) + lo
  return _mm512_fmadd_pd(E, _mm512_set1_pd(0x1.62e42fefa0000p-1), _mm512_add_pd(L, lo));
}

// 16 floats at r (n < 16: the first n, the rest −inf) as two double vectors minus mx.
inline void load_sub(const float* r, long n, __m512d mx, __m512d* lo, __m512d* hi) {
  const __m512 x = n >= 16 ? _mm512_loadu_ps(r) : _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail_mask(n), r);
  *lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), mx);
  *hi = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)), mx);
}

void logit_row_stats(const float* r, long V, int want_entropy, int32_t* argmax, double* p1, double* p2, double* ne) {
  // Pass 1. Each of the S·16 lanes keeps its max, the iteration where it first reached it (strict >, so the lowest
  // index wins ties) and its second value (the largest at another position, an equal one included).
  constexpr int S = 4;
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 m1[S], m2[S];
  __m512i it[S];
  for (int s = 0; s < S; s++) m1[s] = m2[s] = ninf, it[s] = _mm512_setzero_si512();
  __m512i cnt = _mm512_setzero_si512();
  auto step = [&](int s, __m512 x) {
    const __mmask16 gt = _mm512_cmp_ps_mask(x, m1[s], _CMP_GT_OQ), gt2 = _mm512_cmp_ps_mask(x, m2[s], _CMP_GT_OQ);
    m2[s] = _mm512_mask_mov_ps(_mm512_mask_mov_ps(m2[s], gt2, x), gt, m1[s]);
    m1[s] = _mm512_mask_mov_ps(m1[s], gt, x);
    it[s] = _mm512_mask_mov_epi32(it[s], gt, cnt);
  };
  long v = 0;
  for (; v + 16 * S <= V; v += 16 * S) {
#pragma GCC unroll 4
    for (int s = 0; s < S; s++) step(s, _mm512_loadu_ps(r + v + 16 * s));
    cnt = _mm512_add_epi32(cnt, _mm512_set1_epi32(1));
  }
  for (int s = 0; s < S && v + 16 * s < V; s++)
    step(s, _mm512_mask_loadu_ps(ninf, tail_mask(V - v - 16 * s), r + v + 16 * s));
  alignas(64) float f1[S][16], f2[S][16];
  alignas(64) int32_t fi[S][16];
  for (int s = 0; s < S; s++) {
    _mm512_store_ps(f1[s], m1[s]);
    _mm512_store_ps(f2[s], m2[s]);
    _mm512_store_si512(fi[s], it[s]);
  }
  float mx = -INFINITY, second = -INFINITY;
  long best = 0;
  int bs = -1, bl = -1;
  for (int s = 0; s < S; s++)
    for (int l = 0; l < 16; l++) {
      if (!(f1[s][l] > -INFINITY)) continue;  // the lane never held a value
      const long idx = long(fi[s][l]) * 16 * S + 16 * s + l;
      if (f1[s][l] > mx || (f1[s][l] == mx && idx < best)) mx = f1[s][l], best = idx, bs = s, bl = l;
    }
  for (int s = 0; s < S; s++)
    for (int l = 0; l < 16; l++) {
      if (f2[s][l] > second) second = f2[s][l];
      if ((s != bs || l != bl) && f1[s][l] > second) second = f1[s][l];
    }

  // Pass 2: z = Σ exp(x − mx), double lanes. An infinite or absent maximum makes every x − mx NaN or −inf, hence z
  // NaN, exactly as in the reference.
  const ExpTab ET;
  const __m512d mxd = _mm512_set1_pd(double(mx));
  __m512d z0 = _mm512_setzero_pd(), z1 = _mm512_setzero_pd();
  for (v = 0; v < V; v += 16) {
    __m512d a, b;
    load_sub(r + v, V - v, mxd, &a, &b);
    z0 = _mm512_add_pd(z0, exp_le0_pd(a, ET));
    z1 = _mm512_add_pd(z1, exp_le0_pd(b, ET));
  }
  const double z = _mm512_reduce_add_pd(_mm512_add_pd(z0, z1));
  *argmax = int32_t(best);
  *p1 = 1.0 / z;
  *p2 = second == -INFINITY ? 0.0 : std::exp(double(second) - double(mx)) / z;
  if (!want_entropy) return;

  // Pass 3: Σ p·log(p + 1e-10) with p = exp(x − mx) / z (p = 0 contributes 0, as in the reference).
  const LogTab LT;
  const __m512d rz = _mm512_set1_pd(1.0 / z), tiny = _mm512_set1_pd(1e-10);
  __m512d h0 = _mm512_setzero_pd(), h1 = _mm512_setzero_pd();
  for (v = 0; v < V; v += 16) {
    __m512d a, b;
    load_sub(r + v, V - v, mxd, &a, &b);
    const __m512d pa = _mm512_mul_pd(exp_le0_pd(a, ET), rz), pb = _mm512_mul_pd(exp_le0_pd(b, ET), rz);
    h0 = _mm512_fmadd_pd(pa, log_pd(_mm512_add_pd(pa, tiny), LT), h0);
    h1 = _mm512_fmadd_pd(pb, log_pd(_mm512_add_pd(pb, tiny), LT), h1);
  }
  *ne = _mm512_reduce_add_pd(_mm512_add_pd(h0, h1));
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
}  // namespace

const TierOps tier_avx512 = {
    "avx512bf16", MR, gemm_bf16, gemm_f32, attn_row, rmsnorm_row, rope_row, silu_mul, add,
    peak_bf16,    peak_fma, stream_read, gemm_bf16_comp, score_row, attn_block4, score_block4, logit_row_stats,
    delta_cols,
};

}  // namespace dyllm

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
      const __m512 k0 = _mm512_loadu_ps(row), k1 = _mm512_loadu_ps(row + 16), k2 = _mm512_loadu_ps(row + 32),
                   k3 = _mm512_loadu_ps(row + 48);
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

}  // namespace

const TierOps tier_avx512 = {
    "avx512bf16", MR, gemm_bf16, gemm_f32, attn_row, rmsnorm_row, rope_row, silu_mul, add,
    peak_bf16,    peak_fma, stream_read, gemm_bf16_comp, score_row, attn_block4, score_block4,
};

}  // namespace dyllm

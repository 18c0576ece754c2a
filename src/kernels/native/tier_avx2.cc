// AVX2 + FMA tier (compiled with -mavx2 -mfma; only called after a CPUID check). bf16 weights are widened to f32
// in registers with a 16-bit shift (even k of a pair) or a mask (odd k). Register tile: 4 rows x 16 columns
// (8 ymm accumulators), a 32-column panel is processed as two halves.
#include <immintrin.h>

#include <cmath>

#include "kernels.h"

namespace dyllm {
namespace {

constexpr int MR = 4;

inline __m256i tail_mask8(long n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 8 ? n : 8)), idx);
}

template <int R>
inline void store_half(__m256* c, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  // ncols: valid columns in this 16-column half (may be <= 0)
  if (ncols <= 0) return;
  const __m256i m0 = tail_mask8(ncols), m1 = tail_mask8(ncols - 8);
  __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
  if (bias) {
    b0 = _mm256_maskload_ps(bias, m0);
    b1 = _mm256_maskload_ps(bias + 8, m1);
  }
  for (int r = 0; r < R; r++) {
    float* cr = C + r * ldc;
    __m256 v0 = _mm256_add_ps(c[2 * r], b0), v1 = _mm256_add_ps(c[2 * r + 1], b1);
    if (accumulate) {
      v0 = _mm256_add_ps(v0, _mm256_maskload_ps(cr, m0));
      v1 = _mm256_add_ps(v1, _mm256_maskload_ps(cr + 8, m1));
    }
    _mm256_maskstore_ps(cr, m0, v0);
    _mm256_maskstore_ps(cr + 8, m1, v1);
  }
}

template <int R>
void kbf16(long kp, const uint32_t* A, const uint16_t* B, float* C, long ldc, int ncols, int accumulate,
           const float* bias) {
  const __m256i hi_mask = _mm256_set1_epi32(int(0xffff0000u));
  for (int half = 0; half < 2; half++) {
    __m256 c[2 * R];
#pragma GCC unroll 8
    for (int i = 0; i < 2 * R; i++) c[i] = _mm256_setzero_ps();
    const uint16_t* Bh = B + half * 32;
    for (long kk = 0; kk < kp; kk++) {
      const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(Bh + kk * 64));
      const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(Bh + kk * 64 + 16));
      const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)), o0 = _mm256_castsi256_ps(_mm256_and_si256(w0, hi_mask));
      const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16)), o1 = _mm256_castsi256_ps(_mm256_and_si256(w1, hi_mask));
      const uint32_t* a = A + kk * MR;
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        const __m256i av = _mm256_set1_epi32(int(a[r]));
        const __m256 ae = _mm256_castsi256_ps(_mm256_slli_epi32(av, 16));
        const __m256 ao = _mm256_castsi256_ps(_mm256_and_si256(av, hi_mask));
        c[2 * r] = _mm256_fmadd_ps(ae, e0, c[2 * r]);
        c[2 * r + 1] = _mm256_fmadd_ps(ae, e1, c[2 * r + 1]);
        c[2 * r] = _mm256_fmadd_ps(ao, o0, c[2 * r]);
        c[2 * r + 1] = _mm256_fmadd_ps(ao, o1, c[2 * r + 1]);
      }
    }
    store_half<R>(c, C + half * 16, ldc, ncols - half * 16, accumulate, bias ? bias + half * 16 : nullptr);
  }
}

template <int R>
void kf32(long k, const float* A, const float* B, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  for (int half = 0; half < 2; half++) {
    __m256 c[2 * R];
#pragma GCC unroll 8
    for (int i = 0; i < 2 * R; i++) c[i] = _mm256_setzero_ps();
    const float* Bh = B + half * 16;
    for (long i = 0; i < k; i++) {
      const __m256 b0 = _mm256_loadu_ps(Bh + i * 32), b1 = _mm256_loadu_ps(Bh + i * 32 + 8);
      const float* a = A + i * MR;
#pragma GCC unroll 8
      for (int r = 0; r < R; r++) {
        const __m256 av = _mm256_broadcast_ss(a + r);
        c[2 * r] = _mm256_fmadd_ps(av, b0, c[2 * r]);
        c[2 * r + 1] = _mm256_fmadd_ps(av, b1, c[2 * r + 1]);
      }
    }
    store_half<R>(c, C + half * 16, ldc, ncols - half * 16, accumulate, bias ? bias + half * 16 : nullptr);
  }
}

void gemm_bf16(int rows, long kp, const uint32_t* A, const uint16_t* B, float* C, long ldc, int ncols, int accumulate,
               const float* bias) {
  switch (rows) {
    case 1: kbf16<1>(kp, A, B, C, ldc, ncols, accumulate, bias); break;
    case 2: kbf16<2>(kp, A, B, C, ldc, ncols, accumulate, bias); break;
    case 3: kbf16<3>(kp, A, B, C, ldc, ncols, accumulate, bias); break;
    default: kbf16<4>(kp, A, B, C, ldc, ncols, accumulate, bias); break;
  }
}
void gemm_f32(int rows, long k, const float* A, const float* B, float* C, long ldc, int ncols, int accumulate,
              const float* bias) {
  switch (rows) {
    case 1: kf32<1>(k, A, B, C, ldc, ncols, accumulate, bias); break;
    case 2: kf32<2>(k, A, B, C, ldc, ncols, accumulate, bias); break;
    case 3: kf32<3>(k, A, B, C, ldc, ncols, accumulate, bias); break;
    default: kf32<4>(k, A, B, C, ldc, ncols, accumulate, bias); break;
  }
}

// exp(x) for x <= 88.7 (inputs below -87.3 give ~1e-38, callers zero masked lanes explicitly).
inline __m256 exp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float dot(const float* a, const float* b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int d = 0;
  for (; d + 8 <= n; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), acc);
  float s = hsum(acc);
  for (; d < n; d++) s += a[d] * b[d];
  return s;
}

inline void scale_axpy(float* out, float f, float p, const float* v, int n) {
  const __m256 fv = _mm256_set1_ps(f), pv = _mm256_set1_ps(p);
  int d = 0;
  for (; d + 8 <= n; d += 8)
    _mm256_storeu_ps(out + d, _mm256_fmadd_ps(pv, _mm256_loadu_ps(v + d), _mm256_mul_ps(_mm256_loadu_ps(out + d), fv)));
  for (; d < n; d++) out[d] = out[d] * f + p * v[d];
}

void attn_row(const float* q, const float* k, const float* v, long kvStride, long Mk, int Dh, const uint8_t* mask,
              float scale, float* out, float* lse, float* s) {
  float m = -INFINITY, z = 0.f;
  for (int d = 0; d < Dh; d++) out[d] = 0.f;
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
      f = std::exp(m - bm);
      z *= f;
      m = bm;
    }
    const __m256 mv = _mm256_set1_ps(m), ninf = _mm256_set1_ps(-INFINITY);
    __m256 zs = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= nb; j += 8) {
      const __m256 sv = _mm256_loadu_ps(s + j);
      const __m256 live = _mm256_cmp_ps(sv, ninf, _CMP_NEQ_OQ);
      const __m256 p = _mm256_and_ps(live, exp256(_mm256_sub_ps(sv, mv)));
      zs = _mm256_add_ps(zs, p);
      _mm256_storeu_ps(s + j, p);
    }
    z += hsum(zs);
    for (; j < nb; j++) {
      const float p = s[j] == -INFINITY ? 0.f : std::exp(s[j] - m);
      s[j] = p;
      z += p;
    }
    bool first = true;
    for (j = 0; j < nb; j++) {
      if (s[j] == 0.f) continue;
      scale_axpy(out, first ? f : 1.f, s[j], v + (j0 + j) * kvStride, Dh);
      first = false;
    }
    if (first && f != 1.f) scale_axpy(out, f, 0.f, out, Dh);
  }
  if (z > 0.f) {
    const float inv = 1.f / z;
    for (int d = 0; d < Dh; d++) out[d] *= inv;
    if (lse) *lse = m + std::log(z);
  } else {
    for (int d = 0; d < Dh; d++) out[d] = 0.f;
    if (lse) *lse = -INFINITY;
  }
}

void rmsnorm_row(const float* x, long D, const float* w, float eps, float* out) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  long d = 0;
  for (; d + 16 <= D; d += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + d), x1 = _mm256_loadu_ps(x + d + 8);
    a0 = _mm256_fmadd_ps(x0, x0, a0);
    a1 = _mm256_fmadd_ps(x1, x1, a1);
  }
  double ss = double(hsum(_mm256_add_ps(a0, a1)));
  for (; d < D; d++) ss += double(x[d]) * x[d];
  const float rs = float(1.0 / std::sqrt(ss / double(D) + double(eps)));
  const __m256 r = _mm256_set1_ps(rs);
  for (d = 0; d + 8 <= D; d += 8)
    _mm256_storeu_ps(out + d, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + d), r), _mm256_loadu_ps(w + d)));
  for (; d < D; d++) out[d] = x[d] * rs * w[d];
}

void rope_row(float* x, int nHeads, int Dh, const float* c, const float* s) {
  const int h = Dh / 2;
  for (int hd = 0; hd < nHeads; hd++) {
    float* xo = x + long(hd) * Dh;
    int j = 0;
    for (; j + 8 <= h; j += 8) {
      const __m256 x1 = _mm256_loadu_ps(xo + j), x2 = _mm256_loadu_ps(xo + h + j);
      const __m256 cv = _mm256_loadu_ps(c + j), sv = _mm256_loadu_ps(s + j);
      _mm256_storeu_ps(xo + j, _mm256_fmsub_ps(x1, cv, _mm256_mul_ps(x2, sv)));
      _mm256_storeu_ps(xo + h + j, _mm256_fmadd_ps(x2, cv, _mm256_mul_ps(x1, sv)));
    }
    for (; j < h; j++) {
      const float x1 = xo[j], x2 = xo[h + j];
      xo[j] = x1 * c[j] - x2 * s[j];
      xo[h + j] = x2 * c[j] + x1 * s[j];
    }
  }
}

void silu_mul(const float* g, const float* u, long n, float* out) {
  const __m256 one = _mm256_set1_ps(1.f);
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), uv));
  }
  for (; i < n; i++) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

void add(float* dst, const float* src, long n) {
  long i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
  for (; i < n; i++) dst[i] += src[i];
}

#define DYLLM_CHAINS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

double peak_fma(long iters) {
#define DECL(i) __m256 c##i = _mm256_set1_ps(float(i));
  DYLLM_CHAINS12(DECL)
#undef DECL
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (long it = 0; it < iters; it++) {
#define STEP(i) c##i = _mm256_fmadd_ps(c##i, a, b);
    DYLLM_CHAINS12(STEP)
#undef STEP
    __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
    __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
  }
  __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, c##i);
  DYLLM_CHAINS12(SUM)
#undef SUM
  volatile float sink = hsum(s);
  (void)sink;
  return double(iters) * 12 * 16;
}

double stream_read(const float* p, long n, float* sink) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  long i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
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
    const float* kj = k + j * kvStride;
    float acc = 0.f;
    for (int d = 0; d < Dh; d++) acc += q[d] * kj[d];
    s[j] = acc * scale;
    if (s[j] > m) m = s[j];
  }
  float z = 0.f;
  if (m != -INFINITY)
    for (long j = 0; j < Mk; j++)
      if (s[j] != -INFINITY) z += std::exp(s[j] - m);
  *m_out = m;
  *z_out = z;
}

// ---------------------------------------------------------------------------------------------------------------
// Logit row statistics (logit_stats_generic.h) on 8 float lanes and 4 double lanes; exp/log without tables.

// exp(d) in double for d <= 0 (NaN stays NaN; d < −708 gives 0, not a subnormal: far below any sum's ulp).
// d = k·ln2 + r with |r| <= ln2/2, 2^k written into the exponent field, expm1(r) by its degree-13 Taylor polynomial
// (truncation < 5e-18). Relative error ≈ 1 ulp.
inline __m256d exp_le0_pd(__m256d d) {
  const __m256d under = _mm256_cmp_pd(d, _mm256_set1_pd(-708.0), _CMP_LT_OQ);
  d = _mm256_max_pd(_mm256_set1_pd(-708.0), d);  // vmaxpd returns its second operand for NaN
  const __m256d magic = _mm256_set1_pd(0x1.8p52);  // t's low mantissa bits hold k (two's complement)
  const __m256d t = _mm256_fmadd_pd(d, _mm256_set1_pd(0x1.71547652b82fep+0), magic);
  const __m256d kf = _mm256_sub_pd(t, magic);
  __m256d r = _mm256_fnmadd_pd(kf, _mm256_set1_pd(0x1.62e42fefa0000p-1), d);  // ln2, high 38 bits: exact product
  r = _mm256_fnmadd_pd(kf, _mm256_set1_pd(0x1.cf79abc9e3b3ap-40), r);
  double c = 1.0;
  double coef[14];
  for (int i = 1; i <= 13; i++) coef[i] = (c /= i);  // 1/i!, folded to constants
  __m256d q = _mm256_set1_pd(coef[13]);
  for (int i = 12; i >= 1; i--) q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(coef[i]));
  q = _mm256_mul_pd(q, r);
  const __m256d scale = _mm256_castsi256_pd(
      _mm256_add_epi64(_mm256_slli_epi64(_mm256_castpd_si256(t), 52), _mm256_set1_epi64x(1023ll << 52)));
  return _mm256_andnot_pd(under, _mm256_fmadd_pd(scale, q, scale));
}

// log(y) in double for normal positive y: y = 2^E·m with m in (√½, √2], f = m − 1 (exact), s = f / (2 + f),
// log(m) = 2·atanh(s) = 2s·Σ_{i<=10} s^(2i)/(2i+1) (|s| <= 0.172, truncation < 3e-17).
inline __m256d log_pd(__m256d y) {
  const __m256i b = _mm256_castpd_si256(y);
  const __m256d two52 = _mm256_set1_pd(0x1p52);
  __m256d E = _mm256_sub_pd(_mm256_or_pd(_mm256_castsi256_pd(_mm256_srli_epi64(b, 52)), two52), two52);
  E = _mm256_sub_pd(E, _mm256_set1_pd(1023.0));
  __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi64x(0x000fffffffffffffll)),
                                                  _mm256_set1_epi64x(0x3ff0000000000000ll)));
  const __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(0x1.6a09e667f3bcdp+0), _CMP_GT_OQ);
  m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
  E = _mm256_add_pd(E, _mm256_and_pd(big, _mm256_set1_pd(1.0)));
  const __m256d f = _mm256_sub_pd(m, _mm256_set1_pd(1.0));
  const __m256d s = _mm256_div_pd(f, _mm256_add_pd(f, _mm256_set1_pd(2.0)));
  const __m256d w = _mm256_mul_pd(s, s);
  __m256d q = _mm256_set1_pd(1.0 / 21);
  for (int i = 9; i >= 0; i--) q = _mm256_fmadd_pd(q, w, _mm256_set1_pd(1.0 / (2 * i + 1)));
  const __m256d lm = _mm256_mul_pd(_mm256_add_pd(s, s), q);
  return _mm256_fmadd_pd(E, _mm256_set1_pd(0x1.62e42fefa0000p-1),
                         _mm256_fmadd_pd(E, _mm256_set1_pd(0x1.cf79abc9e3b3ap-40), lm));
}

struct LogitLanes {
  static constexpr int W = 8, S = 4;
  using F = __m256;
  using I = __m256i;
  using M = __m256;  // compare result: all-ones lanes
  using D = __m256d;
  struct Ctx {};
  static F ninf() { return _mm256_set1_ps(-INFINITY); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_tail(const float* p, long n) {
    const __m256i k = tail_mask8(n);
    return _mm256_blendv_ps(ninf(), _mm256_maskload_ps(p, k), _mm256_castsi256_ps(k));
  }
  static M gt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static F sel(M m, F a, F b) { return _mm256_blendv_ps(a, b, m); }
  static I seli(M m, I a, I b) {
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), m));
  }
  static I izero() { return _mm256_setzero_si256(); }
  static I iinc(I c) { return _mm256_add_epi32(c, _mm256_set1_epi32(1)); }
  static void store(float* p, F x) { _mm256_store_ps(p, x); }
  static void storei(int32_t* p, I x) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), x); }
  static void load_sub(const float* r, long n, D mx, D* lo, D* hi) {
    const __m256 x = n >= 8 ? _mm256_loadu_ps(r) : load_tail(r, n);
    *lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), mx);
    *hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), mx);
  }
  static D dset(double x) { return _mm256_set1_pd(x); }
  static D dadd(D a, D b) { return _mm256_add_pd(a, b); }
  static D dmul(D a, D b) { return _mm256_mul_pd(a, b); }
  static D dfma(D a, D b, D c) { return _mm256_fmadd_pd(a, b, c); }
  static double reduce(D v) {
    const __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(a, _mm_unpackhi_pd(a, a)));
  }
  static D exp_le0(D d, const Ctx&) { return exp_le0_pd(d); }
  static D log(D y, const Ctx&) { return log_pd(y); }
};

#include "logit_stats_generic.h"
#include "delta_cols_generic.h"

// ---- quantised weights (layouts in kernels.h, rounding in src/kernels/quant.ts) ----
// Register tile: 4 rows x 8 columns (a 32-column panel in four quarters). int8 weights use the sign trick of
// vpmaddubsw (|x| as the unsigned operand, w with x's sign as the signed one: pair sums <= 2*127*127, no
// saturation), so activations stay signed (q8_act_u8 = 0); q4 weights are the unsigned operand (0..15) directly.

constexpr int MRQ = 4;

void quant_row(const float* x, long lead, long n, long G, int8_t* q, float* d, int32_t* qsum) {
  const __m256 sign = _mm256_set1_ps(-0.f), inf = _mm256_set1_ps(INFINITY);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  alignas(32) float buf[QK];
  for (long g = 0; g < G; g++) {
    const long j0 = g * QK - lead;
    const float* src = x + j0;
    if (j0 < 0 || j0 + QK > n) {
      for (int t = 0; t < QK; t++) buf[t] = j0 + t >= 0 && j0 + t < n ? x[j0 + t] : 0.f;
      src = buf;
    }
    __m256 v[4], mx = _mm256_setzero_ps();
    int bad = 0;
    for (int i = 0; i < 4; i++) {
      v[i] = _mm256_loadu_ps(src + 8 * i);
      const __m256 a = _mm256_andnot_ps(sign, v[i]);
      bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, inf, _CMP_NLT_UQ));
      mx = _mm256_max_ps(mx, a);
    }
    int8_t* qg = q + g * QK;
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float id = 127.f / amax;
    if (bad || std::isinf(id)) {
      d[g] = bad ? NAN : 0.f;
      qsum[g] = 0;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qg), _mm256_setzero_si256());
      continue;
    }
    d[g] = amax / 127.f;
    const __m256 iv = _mm256_set1_ps(id);
    __m256i t[4];
    for (int i = 0; i < 4; i++) t[i] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[i], iv)), lo), hi);
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(t[0], t[1]), _mm256_add_epi32(t[2], t[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    qsum[g] = _mm_cvtsi128_si32(s4);
    // int32 -> int8 (values within ±127): two saturating packs, then undo the lane interleave of the 256-bit packs.
    const __m256i p16a = _mm256_packs_epi32(t[0], t[1]), p16b = _mm256_packs_epi32(t[2], t[3]);
    const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qg), _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
}

template <int R>
inline void store_q(const __m256* f, const float* cs, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  if (ncols <= 0) return;
  const __m256i m = tail_mask8(ncols);
  const __m256 s = cs ? _mm256_maskload_ps(cs, m) : _mm256_set1_ps(1.f);
  const __m256 b = bias ? _mm256_maskload_ps(bias, m) : _mm256_setzero_ps();
  for (int r = 0; r < R; r++) {
    float* cr = C + r * ldc;
    __m256 v = _mm256_fmadd_ps(f[r], s, b);
    if (accumulate) v = _mm256_add_ps(v, _mm256_maskload_ps(cr, m));
    _mm256_maskstore_ps(cr, m, v);
  }
}

template <int R>
void kq8(long G, const uint32_t* A, const uint8_t* B, const float* cs, float* C, long ldc, int ncols, int accumulate,
         const float* bias) {
  const __m256i ones = _mm256_set1_epi16(1);
  for (int qq = 0; qq < 4; qq++) {
    __m256 f[R];
    for (int r = 0; r < R; r++) f[r] = _mm256_setzero_ps();
    for (long g = 0; g < G; g++) {
      const uint8_t* b = B + g * Q8_GROUP_BYTES + qq * 32;
      const uint32_t* a = A + g * QA_UNITS * MRQ;
      __m256i is[R];
      for (int r = 0; r < R; r++) is[r] = _mm256_setzero_si256();
      for (int kq = 0; kq < 8; kq++) {
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kq * 128));
        for (int r = 0; r < R; r++) {
          const __m256i xv = _mm256_set1_epi32(int(a[kq * MRQ + r]));
          const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(xv), _mm256_sign_epi8(w, xv));
          is[r] = _mm256_add_epi32(is[r], _mm256_madd_epi16(p, ones));
        }
      }
      const float* ad = reinterpret_cast<const float*>(a + 8 * MRQ);
      for (int r = 0; r < R; r++) f[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[r]), _mm256_set1_ps(ad[r]), f[r]);
    }
    store_q<R>(f, cs ? cs + qq * 8 : nullptr, C + qq * 8, ldc, ncols - qq * 8, accumulate, bias ? bias + qq * 8 : nullptr);
  }
}

template <int R>
void kq4(long G, const uint32_t* A, const uint8_t* B, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
  for (int qq = 0; qq < 4; qq++) {
    __m256 f[R];
    for (int r = 0; r < R; r++) f[r] = _mm256_setzero_ps();
    for (long g = 0; g < G; g++) {
      const uint8_t* b = B + g * Q4_GROUP_BYTES;
      const uint32_t* a = A + g * QA_UNITS * MRQ;
      const int32_t* as = reinterpret_cast<const int32_t*>(a + 9 * MRQ);
      __m256i is[R];
      for (int r = 0; r < R; r++) is[r] = _mm256_set1_epi32(as[r]);
      for (int j = 0; j < 4; j++) {
        // the quarter's 8 columns: half qq/2 of chunk j, bytes 32·(qq%2) onwards
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + (2 * j + (qq >> 1)) * 64 + (qq & 1) * 32));
        const __m256i l = _mm256_and_si256(v, m4), h = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        for (int r = 0; r < R; r++) {
          const __m256i pl = _mm256_maddubs_epi16(l, _mm256_set1_epi32(int(a[j * MRQ + r])));
          const __m256i ph = _mm256_maddubs_epi16(h, _mm256_set1_epi32(int(a[(j + 4) * MRQ + r])));
          is[r] = _mm256_add_epi32(is[r], _mm256_madd_epi16(_mm256_add_epi16(pl, ph), ones));
        }
      }
      const __m256 dv = _mm256_castsi256_ps(_mm256_slli_epi32(
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 512 + qq * 16))), 16));
      const float* ad = reinterpret_cast<const float*>(a + 8 * MRQ);
      for (int r = 0; r < R; r++) f[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[r]), _mm256_mul_ps(dv, _mm256_set1_ps(ad[r])), f[r]);
    }
    store_q<R>(f, nullptr, C + qq * 8, ldc, ncols - qq * 8, accumulate, bias ? bias + qq * 8 : nullptr);
  }
}

void gemm_q8(int rows, long G, const uint32_t* A, const uint8_t* B, const float* cs, float* C, long ldc, int ncols,
             int accumulate, const float* bias) {
  switch (rows) {
    case 1: kq8<1>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    case 2: kq8<2>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    case 3: kq8<3>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
    default: kq8<4>(G, A, B, cs, C, ldc, ncols, accumulate, bias); break;
  }
}

void gemm_q4(int rows, long G, const uint32_t* A, const uint8_t* B, float* C, long ldc, int ncols, int accumulate,
             const float* bias) {
  switch (rows) {
    case 1: kq4<1>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    case 2: kq4<2>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    case 3: kq4<3>(G, A, B, C, ldc, ncols, accumulate, bias); break;
    default: kq4<4>(G, A, B, C, ldc, ncols, accumulate, bias); break;
  }
}

}  // namespace

const TierOps tier_avx2 = {
    "avx2", MR, gemm_bf16, gemm_f32, attn_row, rmsnorm_row, rope_row, silu_mul, add, nullptr, peak_fma, stream_read, nullptr, score_row, nullptr, nullptr, logit_row_stats, delta_cols,
    MRQ, 0, quant_row, gemm_q8, gemm_q4,
};

}  // namespace dyllm

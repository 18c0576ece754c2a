// tier_avx512_stats.cc — the AVX-512 tier's logit row statistics (compiled with the tier's flags): the lane traits
// and double-precision exp/log that logit_stats_generic.h runs on.
#include "tier_avx512.h"

namespace dyllm {
namespace avx512 {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// Logit row statistics (logit_stats_generic.h) on 16 float lanes and 8 double lanes; exp and log use 16-entry tables
// through vpermt2pd.

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

struct LogitTables {
  __m512d t0 = _mm512_load_pd(kExp2Frac), t1 = _mm512_load_pd(kExp2Frac + 8);
  __m512d i0 = _mm512_load_pd(kLogInv), i1 = _mm512_load_pd(kLogInv + 8);
  __m512d l0 = _mm512_load_pd(kLogL), l1 = _mm512_load_pd(kLogL + 8);
};

// exp(d) in double for d <= 0 (NaN stays NaN; d < −1000 gives 0): d = k·ln2/16 + r with |r| <= ln2/32,
// exp(d) = 2^floor(k/16) · 2^((k mod 16)/16) · (1 + expm1(r)), expm1 by its degree-7 Taylor polynomial
// (truncation < 2e-18). Relative error ≈ 1 ulp.
inline __m512d exp_le0_pd(__m512d d, const LogitTables& T) {
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
inline __m512d log_pd(__m512d y, const LogitTables& T) {
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

struct LogitLanes {
  static constexpr int W = 16, S = 4;
  using F = __m512;
  using I = __m512i;
  using M = __mmask16;
  using D = __m512d;
  using Ctx = LogitTables;
  static F ninf() { return _mm512_set1_ps(-INFINITY); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_tail(const float* p, long n) { return _mm512_mask_loadu_ps(ninf(), tail_mask(n), p); }
  static M gt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static F sel(M m, F a, F b) { return _mm512_mask_mov_ps(a, m, b); }
  static I seli(M m, I a, I b) { return _mm512_mask_mov_epi32(a, m, b); }
  static I izero() { return _mm512_setzero_si512(); }
  static I iinc(I c) { return _mm512_add_epi32(c, _mm512_set1_epi32(1)); }
  static void store(float* p, F x) { _mm512_store_ps(p, x); }
  static void storei(int32_t* p, I x) { _mm512_store_si512(p, x); }
  static void load_sub(const float* r, long n, D mx, D* lo, D* hi) {
    const __m512 x = n >= 16 ? _mm512_loadu_ps(r) : load_tail(r, n);
    *lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), mx);
    *hi = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)), mx);
  }
  static D dset(double x) { return _mm512_set1_pd(x); }
  static D dadd(D a, D b) { return _mm512_add_pd(a, b); }
  static D dmul(D a, D b) { return _mm512_mul_pd(a, b); }
  static D dfma(D a, D b, D c) { return _mm512_fmadd_pd(a, b, c); }
  static double reduce(D v) { return _mm512_reduce_add_pd(v); }
  static D exp_le0(D d, const Ctx& T) { return exp_le0_pd(d, T); }
  static D log(D y, const Ctx& T) { return log_pd(y, T); }
};

}  // namespace

#include "logit_stats_generic.h"

}  // namespace avx512
}  // namespace dyllm

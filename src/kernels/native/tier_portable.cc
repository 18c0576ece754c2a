// Portable C++ tier: no intrinsics, compiled for the baseline target. Correct everywhere; the compiler may
// auto-vectorise the inner loops with SSE2.
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace dyllm {
namespace {

constexpr int MR = 4;

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void gemm_bf16(int rows, long kp, const uint32_t* A, const uint16_t* B, float* C, long ldc, int ncols,
               int accumulate, const float* bias) {
  float acc[MR][NR] = {};
  for (long kk = 0; kk < kp; kk++) {
    const uint16_t* b = B + kk * 2 * NR;
    float b0[NR], b1[NR];
    for (int c = 0; c < NR; c++) {
      b0[c] = bf16_to_f32(b[2 * c]);
      b1[c] = bf16_to_f32(b[2 * c + 1]);
    }
    for (int r = 0; r < rows; r++) {
      uint32_t a = A[kk * MR + r];
      float a0 = bf16_to_f32(uint16_t(a & 0xffff)), a1 = bf16_to_f32(uint16_t(a >> 16));
      for (int c = 0; c < NR; c++) acc[r][c] += a0 * b0[c] + a1 * b1[c];
    }
  }
  for (int r = 0; r < rows; r++) {
    float* cr = C + r * ldc;
    for (int c = 0; c < ncols; c++) {
      float v = acc[r][c];
      if (accumulate) v += cr[c];
      if (bias) v += bias[c];
      cr[c] = v;
    }
  }
}

void gemm_f32(int rows, long k, const float* A, const float* B, float* C, long ldc, int ncols, int accumulate,
              const float* bias) {
  float acc[MR][NR] = {};
  for (long i = 0; i < k; i++) {
    const float* b = B + i * NR;
    for (int r = 0; r < rows; r++) {
      float a = A[i * MR + r];
      for (int c = 0; c < NR; c++) acc[r][c] += a * b[c];
    }
  }
  for (int r = 0; r < rows; r++) {
    float* cr = C + r * ldc;
    for (int c = 0; c < ncols; c++) {
      float v = acc[r][c];
      if (accumulate) v += cr[c];
      if (bias) v += bias[c];
      cr[c] = v;
    }
  }
}

void attn_row(const float* q, const float* k, const float* v, long kvStride, long Mk, int Dh, const uint8_t* mask,
              float scale, float* out, float* lse, float* s) {
  float m = -INFINITY, z = 0.f;
  for (int d = 0; d < Dh; d++) out[d] = 0.f;
  for (long j0 = 0; j0 < Mk; j0 += ATTN_BLOCK) {
    long nb = Mk - j0 < ATTN_BLOCK ? Mk - j0 : ATTN_BLOCK;
    float bm = -INFINITY;
    for (long j = 0; j < nb; j++) {
      if (mask && !mask[j0 + j]) { s[j] = -INFINITY; continue; }
      const float* kr = k + (j0 + j) * kvStride;
      float acc = 0.f;
      for (int d = 0; d < Dh; d++) acc += q[d] * kr[d];
      s[j] = acc * scale;
      if (s[j] > bm) bm = s[j];
    }
    if (bm == -INFINITY) continue;
    if (bm > m) {
      float f = std::exp(m - bm);  // exp(-inf) = 0 on the first block
      z *= f;
      for (int d = 0; d < Dh; d++) out[d] *= f;
      m = bm;
    }
    for (long j = 0; j < nb; j++) {
      if (s[j] == -INFINITY) continue;
      float p = std::exp(s[j] - m);
      z += p;
      const float* vr = v + (j0 + j) * kvStride;
      for (int d = 0; d < Dh; d++) out[d] += p * vr[d];
    }
  }
  if (z > 0.f) {
    float inv = 1.f / z;
    for (int d = 0; d < Dh; d++) out[d] *= inv;
    if (lse) *lse = m + std::log(z);
  } else {
    for (int d = 0; d < Dh; d++) out[d] = 0.f;
    if (lse) *lse = -INFINITY;
  }
}

void rmsnorm_row(const float* x, long D, const float* w, float eps, float* out) {
  double ss = 0;
  for (long d = 0; d < D; d++) ss += double(x[d]) * x[d];
  float r = float(1.0 / std::sqrt(ss / D + eps));
  for (long d = 0; d < D; d++) out[d] = x[d] * r * w[d];
}

void rope_row(float* x, int nHeads, int Dh, const float* c, const float* s) {
  int h = Dh / 2;
  for (int hd = 0; hd < nHeads; hd++) {
    float* xo = x + long(hd) * Dh;
    for (int j = 0; j < h; j++) {
      float x1 = xo[j], x2 = xo[h + j];
      xo[j] = x1 * c[j] - x2 * s[j];
      xo[h + j] = x2 * c[j] + x1 * s[j];
    }
  }
}

void silu_mul(const float* g, const float* u, long n, float* out) {
  for (long i = 0; i < n; i++) {
    float gv = g[i];
    out[i] = gv / (1.f + std::exp(-gv)) * u[i];
  }
}

void add(float* dst, const float* src, long n) {
  for (long i = 0; i < n; i++) dst[i] += src[i];
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

// Logit row statistics (logit_stats_generic.h) on 8 plain float lanes (the compiler may vectorise the lane loops);
// exp and log are std::exp and std::log, as in the reference.
struct LogitLanes {
  static constexpr int W = 8, S = 4;
  struct F { float v[8]; };
  struct I { int32_t v[8]; };
  struct M { bool v[8]; };
  struct D { double v[4]; };
  struct Ctx {};
  static F ninf() {
    F f;
    for (float& x : f.v) x = -INFINITY;
    return f;
  }
  static F load(const float* p) {
    F f;
    for (int i = 0; i < 8; i++) f.v[i] = p[i];
    return f;
  }
  static F load_tail(const float* p, long n) {
    F f;
    for (int i = 0; i < 8; i++) f.v[i] = i < n ? p[i] : -INFINITY;
    return f;
  }
  static M gt(F a, F b) {
    M m;
    for (int i = 0; i < 8; i++) m.v[i] = a.v[i] > b.v[i];
    return m;
  }
  static F sel(M m, F a, F b) {
    for (int i = 0; i < 8; i++) a.v[i] = m.v[i] ? b.v[i] : a.v[i];
    return a;
  }
  static I seli(M m, I a, I b) {
    for (int i = 0; i < 8; i++) a.v[i] = m.v[i] ? b.v[i] : a.v[i];
    return a;
  }
  static I izero() { return I{}; }
  static I iinc(I c) {
    for (int32_t& x : c.v) x++;
    return c;
  }
  static void store(float* p, F x) { std::memcpy(p, x.v, sizeof x.v); }
  static void storei(int32_t* p, I x) { std::memcpy(p, x.v, sizeof x.v); }
  static void load_sub(const float* r, long n, D mx, D* lo, D* hi) {
    for (int i = 0; i < 4; i++) {
      lo->v[i] = double(i < n ? r[i] : -INFINITY) - mx.v[i];
      hi->v[i] = double(i + 4 < n ? r[i + 4] : -INFINITY) - mx.v[i];
    }
  }
  static D dset(double x) { return D{{x, x, x, x}}; }
  static D dadd(D a, D b) {
    for (int i = 0; i < 4; i++) a.v[i] += b.v[i];
    return a;
  }
  static D dmul(D a, D b) {
    for (int i = 0; i < 4; i++) a.v[i] *= b.v[i];
    return a;
  }
  static D dfma(D a, D b, D c) {
    for (int i = 0; i < 4; i++) c.v[i] += a.v[i] * b.v[i];
    return c;
  }
  static double reduce(D a) { return (a.v[0] + a.v[1]) + (a.v[2] + a.v[3]); }
  static D exp_le0(D d, const Ctx&) {
    for (double& x : d.v) x = std::exp(x);
    return d;
  }
  static D log(D y, const Ctx&) {
    for (double& x : y.v) x = std::log(x);
    return y;
  }
};

#include "logit_stats_generic.h"
#include "delta_cols_generic.h"

// ---- quantised weights (layouts in kernels.h, rounding in src/kernels/quant.ts) ----

constexpr int MRQ = 4;

void quant_row(const float* x, long lead, long n, long G, int8_t* q, float* d, int32_t* qsum) {
  for (long g = 0; g < G; g++) {
    float v[QK];
    float amax = 0.f;
    bool bad = false;
    for (int t = 0; t < QK; t++) {
      const long j = g * QK + t - lead;
      v[t] = j >= 0 && j < n ? x[j] : 0.f;
      const float a = std::fabs(v[t]);
      if (!(a <= 3.40282347e38f)) bad = true;
      else if (a > amax) amax = a;
    }
    int8_t* qg = q + g * QK;
    const float id = 127.f / amax;
    if (bad || std::isinf(id)) {
      d[g] = bad ? NAN : 0.f;
      qsum[g] = 0;
      for (int t = 0; t < QK; t++) qg[t] = 0;
      continue;
    }
    d[g] = amax / 127.f;
    int32_t s = 0;
    for (int t = 0; t < QK; t++) {
      long r = std::lrint(v[t] * id);  // round half to even (the default rounding mode)
      r = r < -127 ? -127 : r > 127 ? 127 : r;
      qg[t] = int8_t(r);
      s += int32_t(r);
    }
    qsum[g] = s;
  }
}

void store_q(float (*acc)[NR], int rows, const float* cs, float* C, long ldc, int ncols, int accumulate, const float* bias) {
  for (int r = 0; r < rows; r++) {
    float* cr = C + r * ldc;
    for (int c = 0; c < ncols; c++) {
      float v = cs ? acc[r][c] * cs[c] : acc[r][c];
      if (bias) v += bias[c];
      if (accumulate) v += cr[c];
      cr[c] = v;
    }
  }
}

// Activations are signed here (q8_act_u8 = 0): the int8 sums need no correction.
void gemm_q8(int rows, long G, const uint32_t* A, const uint8_t* B, const float* cs, float* C, long ldc, int ncols,
             int accumulate, const float* bias) {
  float acc[MRQ][NR] = {};
  for (long g = 0; g < G; g++) {
    const int8_t* w = reinterpret_cast<const int8_t*>(B + g * Q8_GROUP_BYTES);
    const uint32_t* a = A + g * QA_UNITS * MRQ;
    const float* ad = reinterpret_cast<const float*>(a + 8 * MRQ);
    for (int r = 0; r < rows; r++) {
      int32_t is[NR] = {};
      for (int kq = 0; kq < 8; kq++) {
        int8_t xv[4];
        std::memcpy(xv, a + kq * MRQ + r, 4);
        const int8_t* wk = w + kq * 4 * NR;
        for (int c = 0; c < NR; c++)
          is[c] += xv[0] * wk[4 * c] + xv[1] * wk[4 * c + 1] + xv[2] * wk[4 * c + 2] + xv[3] * wk[4 * c + 3];
      }
      for (int c = 0; c < NR; c++) acc[r][c] += float(is[c]) * ad[r];
    }
  }
  store_q(acc, rows, cs, C, ldc, ncols, accumulate, bias);
}

void gemm_q4(int rows, long G, const uint32_t* A, const uint8_t* B, float* C, long ldc, int ncols, int accumulate,
             const float* bias) {
  float acc[MRQ][NR] = {};
  for (long g = 0; g < G; g++) {
    const uint8_t* w = B + g * Q4_GROUP_BYTES;
    const uint16_t* ds = reinterpret_cast<const uint16_t*>(w + 512);
    const uint32_t* a = A + g * QA_UNITS * MRQ;
    const float* ad = reinterpret_cast<const float*>(a + 8 * MRQ);
    const int32_t* as = reinterpret_cast<const int32_t*>(a + 9 * MRQ);
    for (int r = 0; r < rows; r++) {
      int32_t is[NR];
      for (int c = 0; c < NR; c++) is[c] = as[r];
      for (int j = 0; j < 4; j++) {
        int8_t xl[4], xh[4];
        std::memcpy(xl, a + j * MRQ + r, 4);
        std::memcpy(xh, a + (j + 4) * MRQ + r, 4);
        for (int c = 0; c < NR; c++) {
          const uint8_t* by = w + (2 * j + (c >> 4)) * 64 + (c & 15) * 4;
          for (int b = 0; b < 4; b++) is[c] += xl[b] * (by[b] & 15) + xh[b] * (by[b] >> 4);
        }
      }
      for (int c = 0; c < NR; c++) acc[r][c] += float(is[c]) * (bf16_to_f32(ds[c]) * ad[r]);
    }
  }
  store_q(acc, rows, nullptr, C, ldc, ncols, accumulate, bias);
}

}  // namespace

const TierOps tier_portable = {
    "portable", MR, gemm_bf16, gemm_f32, attn_row, rmsnorm_row, rope_row, silu_mul, add, nullptr, nullptr, nullptr, nullptr, score_row, nullptr, nullptr, logit_row_stats, delta_cols,
    MRQ, 0, quant_row, gemm_q8, gemm_q4,
};

}  // namespace dyllm

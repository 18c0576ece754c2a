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

// The scalar definition, line for line the reference's: four passes, exp/log in double.
void logit_row_stats(const float* r, long V, int want_entropy, int32_t* argmax, double* p1, double* p2, double* ne) {
  long best = 0;
  float mx = -INFINITY;
  for (long v = 0; v < V; v++)
    if (r[v] > mx) mx = r[v], best = v;
  float second = -INFINITY;
  for (long v = 0; v < V; v++)
    if (v != best && r[v] > second) second = r[v];
  double z = 0;
  for (long v = 0; v < V; v++) z += std::exp(double(r[v]) - double(mx));
  *argmax = int32_t(best);
  *p1 = 1.0 / z;
  *p2 = second == -INFINITY ? 0.0 : std::exp(double(second) - double(mx)) / z;
  if (want_entropy) {
    double h = 0;
    for (long v = 0; v < V; v++) {
      const double p = std::exp(double(r[v]) - double(mx)) / z;
      h += p * std::log(p + 1e-10);
    }
    *ne = h;
  }
}


#include "delta_cols_generic.h"

}  // namespace

const TierOps tier_portable = {
    "portable", MR, gemm_bf16, gemm_f32, attn_row, rmsnorm_row, rope_row, silu_mul, add, nullptr, nullptr, nullptr, nullptr, score_row, nullptr, nullptr, logit_row_stats, delta_cols,
};

}  // namespace dyllm

// qgemm.cc — quantised weights: packing host int8 / q4 weights into panels (prepare's quantised dtypes), the GEMM
// driver behind matmul / matmulCols for them, and two exports the conformance tests compare bit for bit with the
// TypeScript definitions (src/kernels/quant.ts): quantize (a dense weight into int8 or q4 host arrays; also what
// loading with --quant and `dyllm quantize` run) and the tier's quantizeRows (activation quantisation).
#include <algorithm>
#include <cfloat>
#include <cmath>

#include "glue.h"

namespace dyllm {

namespace {

// Groups per K-block of the driver when several row tiles share a panel (4096 input features, as for bf16).
constexpr int64_t kKcGroups = 128;
// Packed activation elements per driver call (as gemm.cc): larger calls run in row blocks.
constexpr int64_t kMaxPackedElems = int64_t(1) << 26;

thread_local Scratch tl_qpack;  // packed activation tiles
thread_local Scratch tl_qrow;   // one quantised row (values, scales, sums)

inline int64_t qgroups(int64_t K) { return (K + QK - 1) / QK; }

// One nibble of a host q4 weight (row n, feature k < Kp): element 2j in the low nibble of byte j.
inline uint8_t nib(const uint8_t* q, int64_t rowBytes, int64_t n, int64_t k) {
  const uint8_t b = q[n * rowBytes + (k >> 1)];
  return (k & 1) ? uint8_t(b >> 4) : uint8_t(b & 15);
}

inline long lrint_rne(float v) { return std::lrint(v); }  // the default rounding mode: ties to even

}  // namespace

bool quant_packed_bytes(bool q4, int64_t N, int64_t K, int64_t* bytes) {
  const int64_t panels = (N + NR - 1) / NR, G = qgroups(K);
  int64_t per;
  if (q4) {
    if (!checked_product({G, Q4_GROUP_BYTES}, &per)) return false;
  } else {
    if (!checked_product({G, Q8_GROUP_BYTES}, &per) || !checked_sum(per, Q8_SCALE_BYTES, &per)) return false;
  }
  if (panels == 0) return *bytes = 0, true;
  return checked_product({panels, per}, bytes);
}

void pack_quant(bool q4, const void* qv, const void* sv, int64_t N, int64_t K, uint8_t* dst) {
  const int64_t panels = (N + NR - 1) / NR, G = qgroups(K);
  if (q4) {
    const uint8_t* q = static_cast<const uint8_t*>(qv);
    const uint16_t* s = static_cast<const uint16_t*>(sv);
    const int64_t rb = G * (QK / 2), pb = G * Q4_GROUP_BYTES;
    parallel_for(panels, N * K > (1 << 20), [&](int64_t p) {
      for (int64_t g = 0; g < G; g++) {
        uint8_t* d = dst + p * pb + g * Q4_GROUP_BYTES;
        for (int c8 = 0; c8 < 8; c8++) {
          const int j = c8 >> 1, h = c8 & 1;
          for (int i = 0; i < 16; i++) {
            const int64_t n = p * NR + 16 * h + i;
            for (int b = 0; b < 4; b++) {
              const uint8_t lo = n < N ? nib(q, rb, n, g * QK + 4 * j + b) : 8;
              const uint8_t hi = n < N ? nib(q, rb, n, g * QK + 4 * (j + 4) + b) : 8;
              d[c8 * 64 + i * 4 + b] = uint8_t(lo | (hi << 4));
            }
          }
        }
        uint16_t* ds = reinterpret_cast<uint16_t*>(d + 512);
        for (int c = 0; c < NR; c++) {
          const int64_t n = p * NR + c;
          ds[c] = n < N ? s[n * G + g] : 0;
        }
      }
    });
    return;
  }
  const int8_t* q = static_cast<const int8_t*>(qv);
  const float* s = static_cast<const float*>(sv);
  const int64_t pb = G * Q8_GROUP_BYTES + Q8_SCALE_BYTES;
  parallel_for(panels, N * K > (1 << 20), [&](int64_t p) {
    for (int64_t g = 0; g < G; g++) {
      int8_t* d = reinterpret_cast<int8_t*>(dst + p * pb + g * Q8_GROUP_BYTES);
      int16_t* ws = reinterpret_cast<int16_t*>(d + 1024);
      for (int c = 0; c < NR; c++) {
        const int64_t n = p * NR + c;
        int sum = 0;
        for (int kq = 0; kq < 8; kq++)
          for (int b = 0; b < 4; b++) {
            const int64_t k = g * QK + 4 * kq + b;
            const int8_t v = n < N && k < K ? q[n * K + k] : 0;
            d[kq * 4 * NR + 4 * c + b] = v;
            sum += v;
          }
        ws[c] = int16_t(-sum);
      }
    }
    float* cs = reinterpret_cast<float*>(dst + p * pb + G * Q8_GROUP_BYTES);
    for (int c = 0; c < NR; c++) {
      const int64_t n = p * NR + c;
      cs[c] = n < N ? s[n] : 0.f;
    }
  });
}

namespace {

// out[M, N] = the quantised product of logical activation rows (lead zeros, n values of x row xRows[m] or m at
// stride xK, zeros) with the weight groups [g0, g0 + G) of a panel-packed weight of Kw input features.
bool qgemm_driver(const TierOps& t, bool q4, const float* x, int64_t M, const int32_t* xRows, int64_t xK, int64_t lead,
                  int64_t n, const uint8_t* W, int64_t N, int64_t Kw, int64_t g0, int64_t G, float* out,
                  const float* bias) {
  const int mr = t.mrq;
  const int64_t ntiles = (M + mr - 1) / mr;
  const int64_t mre = (M + ntiles - 1) / ntiles;  // balanced rows per tile
  const int64_t panels = (N + NR - 1) / NR;
  const int64_t Gw = qgroups(Kw);
  const int64_t group_bytes = q4 ? Q4_GROUP_BYTES : Q8_GROUP_BYTES;
  const int64_t panel_bytes = q4 ? Gw * Q4_GROUP_BYTES : Gw * Q8_GROUP_BYTES + Q8_SCALE_BYTES;
  const int64_t tile_units = G * QA_UNITS * mr;
  uint32_t* A = static_cast<uint32_t*>(tl_qpack.get(size_t(ntiles * tile_units) * sizeof(uint32_t)));
  if (!A) return false;
  const uint32_t flip = !q4 && t.q8_act_u8 ? 0x80808080u : 0u;
  const int64_t kc = ntiles == 1 ? G : kKcGroups;
  const double flops = 2.0 * double(M) * double(N) * double(G * QK);
  const int nt = flops < 2e5 ? 1 : g_threads;
  const bool by_panels = panels >= 2 * nt || ntiles < nt;
  int64_t chunk_panels = panels, nchunks = 1;
  if (by_panels) {
    chunk_panels = std::max<int64_t>(1, std::min<int64_t>(8, (panels + 4 * nt - 1) / (4 * nt)));
    nchunks = (panels + chunk_panels - 1) / chunk_panels;
  } else {
    nchunks = ntiles;
  }
  const bool par = nt > 1;
  bool ok = true;

  // Quantise and pack the rows: tile-major, per group 8 k-quads x mr, then mr scales, then mr corrections.
  parallel_for(ntiles, par && M * G * QK > 8192, [&](int64_t ti) {
    int8_t* qrow = static_cast<int8_t*>(tl_qrow.get(size_t(G) * (QK + 8)));
    if (!qrow) {
      ok = false;  // benign race: every writer stores false
      return;
    }
    float* drow = reinterpret_cast<float*>(qrow + G * QK);
    int32_t* srow = reinterpret_cast<int32_t*>(drow + G);
    uint32_t* At = A + ti * tile_units;
    const int rows = int(std::min<int64_t>(mre, M - ti * mre));
    for (int r = 0; r < rows; r++) {
      const int64_t m = ti * mre + r;
      t.quant_row(x + int64_t(xRows ? xRows[m] : m) * xK, lead, n, G, qrow, drow, srow);
      for (int64_t g = 0; g < G; g++) {
        uint32_t* Ag = At + g * QA_UNITS * mr;
        for (int kq = 0; kq < 8; kq++) {
          uint32_t u;
          std::memcpy(&u, qrow + g * QK + 4 * kq, 4);
          Ag[kq * mr + r] = u ^ flip;
        }
        std::memcpy(Ag + 8 * mr + r, drow + g, 4);
        const int32_t corr = q4 ? -8 * srow[g] : 0;
        std::memcpy(Ag + 9 * mr + r, &corr, 4);
      }
    }
  });
  if (!ok) return false;
  parallel_for(nchunks, par, [&](int64_t ch) {
    int64_t pb = 0, pe = panels, ib = 0, ie = ntiles;
    if (by_panels) {
      pb = ch * chunk_panels;
      pe = std::min(panels, pb + chunk_panels);
    } else {
      ib = ch;
      ie = ch + 1;
    }
    for (int64_t gb = 0; gb < G; gb += kc) {
      const int64_t glen = std::min(kc, G - gb);
      const bool last = gb + glen == G;
      for (int64_t p = pb; p < pe; p++) {
        const int ncols = int(std::min<int64_t>(NR, N - p * NR));
        const uint8_t* Pp = W + p * panel_bytes;
        const uint8_t* Bp = Pp + (g0 + gb) * group_bytes;
        const float* bp = last && bias ? bias + p * NR : nullptr;
        for (int64_t ti = ib; ti < ie; ti++) {
          const int rows = int(std::min<int64_t>(mre, M - ti * mre));
          const uint32_t* Ap = A + ti * tile_units + gb * QA_UNITS * mr;
          float* C = out + ti * mre * N + p * NR;
          if (q4) t.gemm_q4(rows, glen, Ap, Bp, C, N, ncols, gb > 0, bp);
          else
            t.gemm_q8(rows, glen, Ap, Bp, reinterpret_cast<const float*>(Pp + Gw * Q8_GROUP_BYTES), C, N, ncols, gb > 0, bp);
        }
      }
    }
  });
  return true;
}

}  // namespace

bool qgemm_blocks(Args& a, const TierOps& t, bool q4, const float* x, int64_t M, const int32_t* xRows, int64_t xK,
                  int64_t lead, int64_t n, const void* W, int64_t N, int64_t Kw, int64_t g0, int64_t G, float* out,
                  const float* bias) {
  if (G == 0) {  // no input features: the bias (or zeros)
    for (int64_t m = 0; m < M; m++)
      for (int64_t c = 0; c < N; c++) out[m * N + c] = bias ? bias[c] : 0.f;
    return true;
  }
  const int64_t rows = std::max<int64_t>(1, kMaxPackedElems / (G * QK));
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const int64_t mb = std::min(rows, M - m0);
    const float* xb = xRows ? x : x + m0 * xK;
    if (!qgemm_driver(t, q4, xb, mb, xRows ? xRows + m0 : nullptr, xK, lead, n, static_cast<const uint8_t*>(W), N, Kw, g0,
                      G, out + m0 * N, bias))
      return a.range_error("cannot allocate the packed activations of %lld rows x %lld inputs", (long long)mb,
                           (long long)(G * QK));
  }
  return true;
}

// quantize(format: 'int8'|'q4', dtype: 'bf16'|'f32', data, N, K, q, scales): a dense N x K weight into the host
// arrays of the format (int8: q Int8Array N*K, scales Float32Array N; q4: q Uint8Array N*ceil(K/32)*16, scales
// Uint16Array N*ceil(K/32) of bf16 bits), by the rounding rules of src/kernels/quant.ts.
napi_value QuantizeWeight(napi_env env, napi_callback_info info) {
  Args a(env, info, "quantizeWeight");
  if (!a.ok) return nullptr;
  int fmt = 0, dt = 0;
  if (!a.choice_arg(0, "format", {"int8", "q4"}, &fmt) || !a.choice_arg(1, "dtype", {"bf16", "f32"}, &dt)) return nullptr;
  const bool q4 = fmt == 1, bf16 = dt == 0;
  const void* src;
  size_t len, ql, sl;
  if (bf16) {
    uint16_t* p;
    if (!a.ta_arg(2, "data", napi_uint16_array, &p, &len)) return nullptr;
    src = p;
  } else {
    float* p;
    if (!a.f32(2, "data", &p, &len)) return nullptr;
    src = p;
  }
  int64_t N, K, NK;
  if (!a.int_arg(3, "outFeatures", &N) || !a.int_arg(4, "inFeatures", &K) || !a.product("outFeatures*inFeatures", {N, K}, &NK))
    return nullptr;
  if (int64_t(len) != NK) {
    a.range_error("data has %zu elements, expected %lldx%lld = %lld", len, (long long)N, (long long)K, (long long)NK);
    return nullptr;
  }
  const int64_t G = qgroups(K);
  void* qv;
  void* sv;
  int64_t qn, sn;
  if (q4) {
    uint8_t* qp;
    uint16_t* sp;
    if (!a.u8(5, "q", &qp, &ql) || !a.ta_arg(6, "scales", napi_uint16_array, &sp, &sl)) return nullptr;
    qv = qp;
    sv = sp;
    if (!a.product("outFeatures*ceil(inFeatures/32)*16", {N, G, QK / 2}, &qn) || !a.product("outFeatures*ceil(inFeatures/32)", {N, G}, &sn))
      return nullptr;
  } else {
    int8_t* qp;
    float* sp;
    if (!a.ta_arg(5, "q", napi_int8_array, &qp, &ql) || !a.f32(6, "scales", &sp, &sl)) return nullptr;
    qv = qp;
    sv = sp;
    qn = NK;
    sn = N;
  }
  if (int64_t(ql) != qn) {
    a.range_error("q has %zu elements, expected %lld", ql, (long long)qn);
    return nullptr;
  }
  if (int64_t(sl) != sn) {
    a.range_error("scales has %zu elements, expected %lld", sl, (long long)sn);
    return nullptr;
  }
  if (N == 0 || K == 0) {
    if (!q4 && sn) std::fill(static_cast<float*>(sv), static_cast<float*>(sv) + sn, 0.f);
    return undefined(env);
  }
  auto w = [&](int64_t n, int64_t k) -> float {
    return bf16 ? bf16_to_f32(static_cast<const uint16_t*>(src)[n * K + k]) : static_cast<const float*>(src)[n * K + k];
  };
  parallel_for(N, NK > (1 << 16), [&](int64_t n) {
    if (!q4) {
      int8_t* q = static_cast<int8_t*>(qv) + n * K;
      float amax = 0.f;
      bool bad = false;
      for (int64_t k = 0; k < K; k++) {
        const float v = std::fabs(w(n, k));
        if (!(v <= FLT_MAX)) bad = true;
        else if (v > amax) amax = v;
      }
      const float d = bad ? NAN : amax / 127.f;
      static_cast<float*>(sv)[n] = d;
      for (int64_t k = 0; k < K; k++) {
        long v = 0;
        if (!bad && d != 0.f) {
          v = lrint_rne(w(n, k) / d);
          v = v < -127 ? -127 : v > 127 ? 127 : v;
        }
        q[k] = int8_t(v);
      }
      return;
    }
    uint8_t* q = static_cast<uint8_t*>(qv) + n * G * (QK / 2);
    uint16_t* s = static_cast<uint16_t*>(sv) + n * G;
    for (int64_t g = 0; g < G; g++) {
      const int64_t k0 = g * QK, k1 = std::min(K, k0 + QK);
      float amax = 0.f, m = 0.f;
      bool bad = false;
      for (int64_t k = k0; k < k1; k++) {
        const float v = w(n, k), av = std::fabs(v);
        if (!(av <= FLT_MAX)) bad = true;
        else if (av > amax) amax = av, m = v;
      }
      uint8_t nb[QK];
      std::fill(nb, nb + QK, uint8_t(8));
      if (bad) {
        s[g] = 0x7fc0;
      } else {
        s[g] = f32_to_bf16_rne(m / -8.f);
        const float d = bf16_to_f32(s[g]);
        if (d != 0.f)
          for (int64_t k = k0; k < k1; k++) {
            long v = lrint_rne(w(n, k) / d) + 8;
            nb[k - k0] = uint8_t(v < 0 ? 0 : v > 15 ? 15 : v);
          }
      }
      for (int j = 0; j < QK / 2; j++) q[g * (QK / 2) + j] = uint8_t(nb[2 * j] | (nb[2 * j + 1] << 4));
    }
  });
  return undefined(env);
}

// quantizeRows(x, M, K, q, d): activation rows x[M, K] quantised in groups of 32 by the bound tier (q Int8Array
// M*ceil(K/32)*32, zero padded; d Float32Array M*ceil(K/32)), as quantizeActivations in src/kernels/quant.ts.
napi_value QuantizeRows(napi_env env, napi_callback_info info) {
  Args a(env, info, "quantizeRows");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *x, *d;
  int8_t* q;
  size_t xl, ql, dl;
  int64_t M, K;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "K", &K) ||
      !a.ta_arg(3, "q", napi_int8_array, &q, &ql) || !a.f32(4, "d", &d, &dl))
    return nullptr;
  const int64_t G = qgroups(K);
  if (!a.need("x", x, xl, "M*K", {M, K}) || !a.need("q", q, ql, "M*ceil(K/32)*32", {M, G, QK}) ||
      !a.need("d", d, dl, "M*ceil(K/32)", {M, G}))
    return nullptr;
  if (M == 0 || G == 0) return undefined(env);
  Scratch sums;
  int32_t* s = static_cast<int32_t*>(sums.get(size_t(G) * 4));
  if (!s) {
    a.range_error("cannot allocate %lld sums", (long long)G);
    return nullptr;
  }
  for (int64_t m = 0; m < M; m++) t.quant_row(x + m * K, 0, K, G, q + m * G * QK, d + m * G, s);
  return undefined(env);
}

}  // namespace dyllm

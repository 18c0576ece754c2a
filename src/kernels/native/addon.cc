// dyllm_kernels: N-API glue. Compiled for the baseline target (never with AVX-512 flags): it validates arguments,
// reads typed arrays in place, packs weights and activations, splits work over OpenMP threads and calls the
// selected tier's single-threaded kernels (see kernels.h for the layouts).
#include <node_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "pool.h"

namespace dyllm {
namespace {

int g_threads = 1;
Pool* g_pool = nullptr;  // created at load with g_threads - 1 workers; intentionally never destroyed

template <class F>
inline void parallel_for(int64_t n, bool parallel, F&& f) {
  if (parallel && g_pool) g_pool->parallel_for(n, f);
  else
    for (int64_t i = 0; i < n; i++) f(i);
}

// ---------------------------------------------------------------------------------------------------------------
// N-API helpers. Every getter throws a JS error and returns false on a bad argument; callers return nullptr.

bool throw_err(napi_env env, const char* msg) {
  napi_throw_error(env, "ERR_DYLLM_KERNEL", msg);
  return false;
}

bool throw_fmt(napi_env env, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
bool throw_fmt(napi_env env, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return throw_err(env, buf);
}

struct Args {
  napi_env env;
  const char* fn;
  size_t argc = 16;
  napi_value argv[16];
  void* data = nullptr;
  bool ok = true;
  Args(napi_env e, napi_callback_info info, const char* name) : env(e), fn(name) {
    if (napi_get_cb_info(e, info, &argc, argv, nullptr, &data) != napi_ok) ok = throw_err(e, "napi_get_cb_info failed");
  }
  bool is_nullish(size_t i) {
    if (i >= argc) return true;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    return t == napi_undefined || t == napi_null;
  }
  // Non-negative integer (< 2^40).
  bool int_arg(size_t i, const char* what, int64_t* out) {
    double d;
    if (i >= argc || napi_get_value_double(env, argv[i], &d) != napi_ok)
      return throw_fmt(env, "%s: %s must be a number", fn, what);
    if (!(d >= 0) || d != std::floor(d) || d > 1099511627776.0)
      return throw_fmt(env, "%s: %s must be a non-negative integer, got %g", fn, what, d);
    *out = int64_t(d);
    return true;
  }
  bool num_arg(size_t i, const char* what, double* out) {
    if (i >= argc || napi_get_value_double(env, argv[i], out) != napi_ok)
      return throw_fmt(env, "%s: %s must be a number", fn, what);
    return true;
  }
  // Typed array of the given type; its data pointer already includes byteOffset; len is in elements.
  template <class T>
  bool ta_arg(size_t i, const char* what, napi_typedarray_type want, const char* wantName, T** ptr, size_t* len,
              bool optional = false) {
    if (optional && is_nullish(i)) {
      *ptr = nullptr;
      *len = 0;
      return true;
    }
    bool is_ta = false;
    if (i < argc) napi_is_typedarray(env, argv[i], &is_ta);
    if (!is_ta) return throw_fmt(env, "%s: %s must be a %s", fn, what, wantName);
    napi_typedarray_type type;
    void* data;
    size_t length;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, argv[i], &type, &length, &data, &ab, &off) != napi_ok)
      return throw_fmt(env, "%s: cannot read %s", fn, what);
    if (type != want) return throw_fmt(env, "%s: %s must be a %s", fn, what, wantName);
    // A zero-length typed array may report a null data pointer: keep "present" distinct from "absent".
    alignas(64) static unsigned char empty[64];
    *ptr = static_cast<T*>(data ? data : static_cast<void*>(empty));
    *len = length;
    return true;
  }
  bool f32(size_t i, const char* what, float** p, size_t* n, bool opt = false) {
    return ta_arg(i, what, napi_float32_array, "Float32Array", p, n, opt);
  }
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

const TierOps* tier_of(Args& a) { return static_cast<const TierOps*>(a.data); }

// ---------------------------------------------------------------------------------------------------------------
// Layout helpers.

inline float bf16_to_f32(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays a (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

inline size_t packed_bytes(bool bf16, int64_t N, int64_t K) {
  int64_t panels = (N + NR - 1) / NR;
  int64_t kdim = bf16 ? (K + 1) / 2 : K;  // k-units: pairs for bf16
  return size_t(panels * kdim * NR * 4);   // bf16: 2 values x 2 bytes per unit, f32: 4 bytes
}
constexpr size_t ALIGN = 64;
inline void* align_up(void* p) { return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + ALIGN - 1) & ~(ALIGN - 1)); }

struct Scratch {
  std::vector<unsigned char> buf;
  void* get(size_t bytes) {
    if (buf.size() < bytes + ALIGN) buf.resize(bytes + ALIGN);
    return align_up(buf.data());
  }
};
thread_local Scratch tl_scratch;

// Splits [0, n) into nt nearly equal contiguous parts.
inline void split(int64_t n, int nt, int t, int64_t* b, int64_t* e) {
  *b = n * t / nt;
  *e = n * (t + 1) / nt;
}

// ---------------------------------------------------------------------------------------------------------------
// prepare(dtype: 'bf16'|'f32', data, N, K) -> ArrayBuffer holding the packed panels (plus <= 64 bytes alignment slack).

napi_value Prepare(napi_env env, napi_callback_info info) {
  Args a(env, info, "prepareWeight");
  if (!a.ok) return nullptr;
  char dt[8] = {0};
  size_t dl = 0;
  if (napi_get_value_string_utf8(env, a.argv[0], dt, sizeof dt, &dl) != napi_ok) {
    throw_err(env, "prepareWeight: dtype must be 'bf16' or 'f32'");
    return nullptr;
  }
  bool bf16 = std::strcmp(dt, "bf16") == 0;
  if (!bf16 && std::strcmp(dt, "f32") != 0) {
    throw_fmt(env, "prepareWeight: unsupported dtype '%s' (expected 'bf16' or 'f32')", dt);
    return nullptr;
  }
  int64_t N, K;
  if (!a.int_arg(2, "outFeatures", &N) || !a.int_arg(3, "inFeatures", &K)) return nullptr;
  const void* src;
  size_t len;
  if (bf16) {
    uint16_t* p;
    if (!a.ta_arg(1, "data", napi_uint16_array, "Uint16Array (bf16 bits)", &p, &len)) return nullptr;
    src = p;
  } else {
    float* p;
    if (!a.f32(1, "data", &p, &len)) return nullptr;
    src = p;
  }
  if (int64_t(len) != N * K) {
    throw_fmt(env, "prepareWeight: data has %zu elements, expected %lldx%lld", len, (long long)N, (long long)K);
    return nullptr;
  }
  size_t bytes = packed_bytes(bf16, N, K);
  void* abdata;
  napi_value ab;
  if (napi_create_arraybuffer(env, bytes + ALIGN, &abdata, &ab) != napi_ok) {
    throw_fmt(env, "prepareWeight: cannot allocate %zu bytes", bytes + ALIGN);
    return nullptr;
  }
  void* dst = align_up(abdata);
  int64_t panels = (N + NR - 1) / NR;
  if (bf16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
    int64_t kp = (K + 1) / 2;
    parallel_for(panels, N * K > (1 << 20), [&](int64_t p) {
      uint16_t* dp = d + p * kp * 2 * NR;
      for (int c = 0; c < NR; c++) {
        int64_t n = p * NR + c;
        if (n >= N) {
          for (int64_t kk = 0; kk < kp; kk++) dp[kk * 2 * NR + 2 * c] = dp[kk * 2 * NR + 2 * c + 1] = 0;
          continue;
        }
        const uint16_t* row = s + n * K;
        for (int64_t kk = 0; kk < kp; kk++) {
          dp[kk * 2 * NR + 2 * c] = row[2 * kk];
          dp[kk * 2 * NR + 2 * c + 1] = 2 * kk + 1 < K ? row[2 * kk + 1] : 0;
        }
      }
    });
  } else {
    const float* s = static_cast<const float*>(src);
    float* d = static_cast<float*>(dst);
    parallel_for(panels, N * K > (1 << 20), [&](int64_t p) {
      float* dp = d + p * K * NR;
      for (int c = 0; c < NR; c++) {
        int64_t n = p * NR + c;
        const float* row = s + n * K;
        for (int64_t k = 0; k < K; k++) dp[k * NR + c] = n < N ? row[k] : 0.f;
      }
    });
  }
  return ab;
}

// ---------------------------------------------------------------------------------------------------------------
// matmul(x, M, packed: ArrayBuffer, N, K, dtype: 'bf16'|'f32', out, bias?, xRows?, split?)

// k-units per cache block (bf16: 4096 k, f32: 2048 k). Measured on Zen 5 (1 MiB L2): the whole K of a
// 4096-deep panel (256 KiB of B, 96 KiB of A per row tile) beats 16-64 KiB blocks by 10-60 % (the B panel then
// streams contiguously); deeper K is blocked. Env DYLLM_KC overrides (tuning).
int64_t KC_UNITS = 2048;
// Blocked attention (4 query rows x 64 keys against transposed keys). DYLLM_ATTN_BLOCKED=0 keeps the per-row
// kernels (for before/after measurements).
bool g_attn_blocked = true;
constexpr int64_t NC_PANELS = 8;    // panels per thread chunk (256 columns)

// x[M, K] · W[:, kOff : kOff + K]ᵀ where W is packed with Kfull input features (kOff even for bf16: pairs).
// split (bf16 weights only): activations split as hi + lo bf16 parts (two dot products sharing each weight load):
// about fp32-accurate activations for twice the arithmetic. Otherwise activations are rounded to bf16 once, as the
// released checkpoints' bf16 path does (the products are exact and accumulate in fp32).
template <bool BF16>
void gemm_driver(const TierOps& t, const float* x, int64_t M, const int32_t* xRows, int64_t K, const void* W,
                 int64_t N, float* out, const float* bias, bool split = false, int64_t Kfull = -1, int64_t kOff = 0) {
  if (Kfull < 0) Kfull = K;
  const int mr = t.mr;
  const int64_t kdim = BF16 ? (K + 1) / 2 : K;
  const int64_t koff_units = BF16 ? kOff / 2 : kOff;
  const int64_t ntiles = (M + mr - 1) / mr;
  const int64_t mre = (M + ntiles - 1) / ntiles;  // balanced rows per tile (M = 13 -> 7 + 6, not 12 + 1)
  const int64_t panels = (N + NR - 1) / NR;
  const int64_t panel_units = (BF16 ? (Kfull + 1) / 2 : Kfull) * NR * (BF16 ? 2 : 1);  // elements of B per panel
  using AT = typename std::conditional<BF16, uint32_t, float>::type;
  using BT = typename std::conditional<BF16, uint16_t, float>::type;
  const bool comp = BF16 && split;
  const size_t a_elems = size_t(ntiles * kdim * mr);
  AT* A = static_cast<AT*>(tl_scratch.get(a_elems * sizeof(AT) * (comp ? 2 : 1)));
  AT* Alo = comp ? A + a_elems : nullptr;  // residual x − bf16(x), rounded to bf16
  const BT* B = static_cast<const BT*>(W);
  const int64_t kc = ntiles == 1 ? kdim : KC_UNITS;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const int nt = flops < 2e5 ? 1 : g_threads;
  // Split over panels when there are enough of them, else over row tiles.
  const bool by_panels = panels >= 2 * nt || ntiles < nt;

  // Work is handed out in chunks claimed dynamically (pool.h), so a preempted thread delays at most one chunk.
  int64_t chunk_panels = panels, nchunks = 1;
  if (by_panels) {
    chunk_panels = std::max<int64_t>(1, std::min<int64_t>(NC_PANELS, (panels + 4 * nt - 1) / (4 * nt)));
    nchunks = (panels + chunk_panels - 1) / chunk_panels;
  } else {
    nchunks = ntiles;
  }
  const bool par = nt > 1;

  // Pack A: rows -> tiles of mr, k-units interleaved by row.
  parallel_for(ntiles, par && M * K > 8192, [&](int64_t ti) {
    AT* At = A + ti * kdim * mr;
    int rows = int(std::min<int64_t>(mre, M - ti * mre));
    for (int r = 0; r < rows; r++) {
      int64_t m = ti * mre + r;
      const float* xr = x + int64_t(xRows ? xRows[m] : m) * K;
      if (BF16) {
        for (int64_t kk = 0; kk < kdim; kk++) {
          const float x0 = xr[2 * kk], x1 = 2 * kk + 1 < K ? xr[2 * kk + 1] : 0.f;
          uint32_t lo = f32_to_bf16_rne(x0);
          uint32_t hi = f32_to_bf16_rne(x1);
          reinterpret_cast<uint32_t*>(At)[kk * mr + r] = lo | (hi << 16);
          if (comp) {
            uint32_t l2 = f32_to_bf16_rne(x0 - bf16_to_f32(uint16_t(lo)));
            uint32_t h2 = f32_to_bf16_rne(x1 - bf16_to_f32(uint16_t(hi)));
            reinterpret_cast<uint32_t*>(Alo + ti * kdim * mr)[kk * mr + r] = l2 | (h2 << 16);
          }
        }
      } else {
        for (int64_t k = 0; k < K; k++) reinterpret_cast<float*>(At)[k * mr + r] = xr[k];
      }
    }
  });
  parallel_for(nchunks, par, [&](int64_t ch) {
    int64_t pb = 0, pe = panels, ib = 0, ie = ntiles;
    if (by_panels) {
      pb = ch * chunk_panels;
      pe = std::min(panels, pb + chunk_panels);
    } else {
      ib = ch;
      ie = ch + 1;
    }
    for (int64_t pc = pb; pc < pe; pc += NC_PANELS) {
      const int64_t pce = std::min(pe, pc + NC_PANELS);
      for (int64_t k0 = 0; k0 < kdim; k0 += kc) {
        const int64_t klen = std::min(kc, kdim - k0);
        const bool last = k0 + klen == kdim;
        for (int64_t p = pc; p < pce; p++) {
          const int ncols = int(std::min<int64_t>(NR, N - p * NR));
          const BT* Bp = B + p * panel_units + (koff_units + k0) * NR * (BF16 ? 2 : 1);
          const float* bp = last && bias ? bias + p * NR : nullptr;
          for (int64_t ti = ib; ti < ie; ti++) {
            const int rows = int(std::min<int64_t>(mre, M - ti * mre));
            const AT* Ap = A + ti * kdim * mr + k0 * mr;
            float* C = out + ti * mre * N + p * NR;
            if (BF16) {
              const uint32_t* Al = comp ? reinterpret_cast<const uint32_t*>(Alo + ti * kdim * mr + k0 * mr) : nullptr;
              if (comp && t.gemm_bf16_comp) {
                t.gemm_bf16_comp(rows, klen, reinterpret_cast<const uint32_t*>(Ap), Al,
                                 reinterpret_cast<const uint16_t*>(Bp), C, N, ncols, k0 > 0, bp);
              } else {
                t.gemm_bf16(rows, klen, reinterpret_cast<const uint32_t*>(Ap), reinterpret_cast<const uint16_t*>(Bp),
                            C, N, ncols, k0 > 0, bp);
                if (comp) t.gemm_bf16(rows, klen, Al, reinterpret_cast<const uint16_t*>(Bp), C, N, ncols, 1, nullptr);
              }
            } else
              t.gemm_f32(rows, klen, reinterpret_cast<const float*>(Ap), reinterpret_cast<const float*>(Bp), C, N,
                         ncols, k0 > 0, bp);
          }
        }
      }
    }
  });
}

// The prepared-weight arguments shared by matmul and matmulCols: argv[iw] the packed ArrayBuffer, argv[iw + 3] its
// dtype; checks that it holds an N x K weight and returns its aligned start.
bool weight_args(Args& a, const char* fn, size_t iw, int64_t N, int64_t K, const void** W, bool* bf16) {
  napi_env env = a.env;
  void* abdata = nullptr;
  size_t ablen = 0;
  bool isab = false;
  napi_is_arraybuffer(env, a.argv[iw], &isab);
  if (!isab || napi_get_arraybuffer_info(env, a.argv[iw], &abdata, &ablen) != napi_ok) {
    throw_fmt(env, "%s: weight is not a weight prepared by this backend", fn);
    return false;
  }
  char dt[8] = {0};
  size_t dl;
  if (napi_get_value_string_utf8(env, a.argv[iw + 3], dt, sizeof dt, &dl) != napi_ok ||
      (std::strcmp(dt, "bf16") != 0 && std::strcmp(dt, "f32") != 0)) {
    throw_fmt(env, "%s: dtype must be 'bf16' or 'f32'", fn);
    return false;
  }
  *bf16 = std::strcmp(dt, "bf16") == 0;
  if (ablen < packed_bytes(*bf16, N, K) + ALIGN) {
    throw_fmt(env, "%s: prepared weight holds %zu bytes, %zu needed for %lldx%lld %s", fn, ablen,
              packed_bytes(*bf16, N, K) + ALIGN, (long long)N, (long long)K, dt);
    return false;
  }
  *W = align_up(abdata);
  return true;
}

// Optional boolean argv[i]: split bf16 activations (hi + lo parts).
bool split_arg(Args& a, const char* fn, size_t i, bool* split) {
  *split = false;
  if (!a.is_nullish(i) && napi_get_value_bool(a.env, a.argv[i], split) != napi_ok) {
    throw_fmt(a.env, "%s: argument %zu (split activations) must be a boolean", fn, i);
    return false;
  }
  return true;
}

napi_value Matmul(napi_env env, napi_callback_info info) {
  Args a(env, info, "matmul");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *x, *out, *bias;
  int32_t* xRows;
  size_t xl, ol, bl, rl;
  int64_t M, N, K;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(3, "N", &N) || !a.int_arg(4, "K", &K))
    return nullptr;
  const void* W;
  bool bf16;
  if (!weight_args(a, "matmul", 2, N, K, &W, &bf16)) return nullptr;
  if (!a.f32(6, "out", &out, &ol) || !a.f32(7, "bias", &bias, &bl, true) ||
      !a.ta_arg(8, "xRows", napi_int32_array, "Int32Array", &xRows, &rl, true))
    return nullptr;
  bool split;
  if (!split_arg(a, "matmul", 9, &split)) return nullptr;
  if (int64_t(ol) < M * N) {
    throw_fmt(env, "matmul: out has %zu elements, need M*N = %lld", ol, (long long)(M * N));
    return nullptr;
  }
  if (bias && int64_t(bl) < N) {
    throw_fmt(env, "matmul: bias has %zu elements, need N = %lld", bl, (long long)N);
    return nullptr;
  }
  if (xRows) {
    if (int64_t(rl) < M) {
      throw_fmt(env, "matmul: xRows has %zu elements, need M = %lld", rl, (long long)M);
      return nullptr;
    }
    int64_t xrows = K > 0 ? int64_t(xl) / K : 0;
    for (int64_t m = 0; m < M; m++)
      if (xRows[m] < 0 || (K > 0 && xRows[m] >= xrows)) {
        throw_fmt(env, "matmul: xRows[%lld] = %d is outside x's %lld rows", (long long)m, xRows[m], (long long)xrows);
        return nullptr;
      }
  } else if (int64_t(xl) < M * K) {
    throw_fmt(env, "matmul: x has %zu elements, need M*K = %lld", xl, (long long)(M * K));
    return nullptr;
  }
  if (M == 0 || N == 0) return undefined(env);
  if (K == 0) {
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) out[m * N + n] = bias ? bias[n] : 0.f;
    return undefined(env);
  }
  if (bf16) gemm_driver<true>(t, x, M, xRows, K, W, N, out, bias, split);
  else gemm_driver<false>(t, x, M, xRows, K, W, N, out, bias);
  return undefined(env);
}

// matmulCols(x, M, packed, N, K, dtype, k0, kLen, out, split?): out[M, N] = x[M, kLen] · W[:, k0 : k0 + kLen]ᵀ — one slice of
// a prepared weight's input features (DyLLM's per-head output projection of ΔV), streamed straight from the panels.
napi_value MatmulCols(napi_env env, napi_callback_info info) {
  Args a(env, info, "matmulCols");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *x, *out;
  size_t xl, ol;
  int64_t M, N, K, k0, kLen;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(3, "N", &N) || !a.int_arg(4, "K", &K) ||
      !a.int_arg(6, "k0", &k0) || !a.int_arg(7, "kLen", &kLen) || !a.f32(8, "out", &out, &ol))
    return nullptr;
  bool split, bf16;
  const void* W;
  if (!split_arg(a, "matmulCols", 9, &split) || !weight_args(a, "matmulCols", 2, N, K, &W, &bf16)) return nullptr;
  if (k0 < 0 || kLen < 0 || k0 + kLen > K) {
    throw_fmt(env, "matmulCols: columns [%lld, %lld) are outside the weight's %lld input features", (long long)k0,
              (long long)(k0 + kLen), (long long)K);
    return nullptr;
  }
  if (bf16 && (k0 % 2 != 0 || (kLen % 2 != 0 && k0 + kLen != K))) {
    throw_fmt(env, "matmulCols: bf16 weights are packed in input pairs; k0 (%lld) and kLen (%lld) must be even",
              (long long)k0, (long long)kLen);
    return nullptr;
  }
  if (int64_t(xl) < M * kLen || int64_t(ol) < M * N) {
    throw_fmt(env, "matmulCols: x/out have %zu/%zu elements, need %lld/%lld", xl, ol, (long long)(M * kLen),
              (long long)(M * N));
    return nullptr;
  }
  if (M == 0 || N == 0) return undefined(env);
  if (kLen == 0) {
    std::fill(out, out + M * N, 0.f);
    return undefined(env);
  }
  if (bf16) gemm_driver<true>(t, x, M, nullptr, kLen, W, N, out, nullptr, split, K, k0);
  else gemm_driver<false>(t, x, M, nullptr, kLen, W, N, out, nullptr, false, K, k0);
  return undefined(env);
}

// gemm(a, M, K, b, N, out): out[M, N] = a[M, K] · b[K, N], fp32, both operands row-major and computed at run time
// (b is packed into 32-column panels here, then the f32 GEMM kernel runs as for a prepared weight).
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "gemm");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *x, *b, *out;
  size_t xl, bl, ol;
  int64_t M, K, N;
  if (!a.f32(0, "a", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "K", &K) || !a.f32(3, "b", &b, &bl) ||
      !a.int_arg(4, "N", &N) || !a.f32(5, "out", &out, &ol))
    return nullptr;
  if (int64_t(xl) < M * K || int64_t(bl) < K * N || int64_t(ol) < M * N) {
    throw_fmt(env, "gemm: a/b/out have %zu/%zu/%zu elements, need %lld/%lld/%lld", xl, bl, ol, (long long)(M * K),
              (long long)(K * N), (long long)(M * N));
    return nullptr;
  }
  if (M == 0 || N == 0) return undefined(env);
  if (K == 0) {
    std::fill(out, out + M * N, 0.f);
    return undefined(env);
  }
  const int64_t panels = (N + NR - 1) / NR;
  thread_local std::vector<float> packed;
  const size_t need = size_t(panels * K * NR) + ALIGN / sizeof(float);
  if (packed.size() < need) packed.resize(need);
  float* B = static_cast<float*>(align_up(packed.data()));
  parallel_for(panels, K * N > (1 << 16), [&](int64_t p) {
    float* dp = B + p * K * NR;
    const int64_t n0 = p * NR, nc = std::min<int64_t>(NR, N - n0);
    for (int64_t k = 0; k < K; k++) {
      const float* src = b + k * N + n0;
      float* dst = dp + k * NR;
      int64_t c = 0;
      for (; c < nc; c++) dst[c] = src[c];
      for (; c < NR; c++) dst[c] = 0.f;
    }
  });
  gemm_driver<false>(t, x, M, nullptr, K, B, N, out, nullptr);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------------------------
// attention(q, Mq, k, v, Mk, H, Hkv, Dh, keyMask?, out, lse?)

// Keys transposed per KV head for the blocked score kernels: KT[kvh][d][j], ldk = Mk rounded up to 64, zero padded.
// Returns a buffer owned by the calling thread, valid until its next call. Tiles of 16 keys x 16 dims keep both
// the strided reads and the strided writes inside a few cache lines.
const float* transpose_keys(const float* k, int64_t Mk, int64_t Hkv, int64_t Dh, int64_t ldk, bool par) {
  thread_local std::vector<float> KT;
  const size_t need = size_t(Hkv * Dh * ldk);
  if (KT.size() < need) KT.resize(need);
  float* base = KT.data();
  const int64_t kvs = Hkv * Dh, dblocks = (Dh + 15) / 16;
  parallel_for(Hkv * dblocks, par, [&](int64_t w) {
    const int64_t kvh = w / dblocks, d0 = (w % dblocks) * 16, d1 = std::min<int64_t>(Dh, d0 + 16);
    float* dst = base + kvh * Dh * ldk;
    for (int64_t j0 = 0; j0 < Mk; j0 += 16) {
      const int64_t j1 = std::min<int64_t>(Mk, j0 + 16);
      for (int64_t j = j0; j < j1; j++) {
        const float* kr = k + j * kvs + kvh * Dh;
        for (int64_t d = d0; d < d1; d++) dst[d * ldk + j] = kr[d];
      }
    }
    for (int64_t d = d0; d < d1; d++) std::fill(dst + d * ldk + Mk, dst + (d + 1) * ldk, 0.f);
  });
  return base;
}

// Runs `fn(r, item, kvh, scores_of_row, m, z)` for every (query row, head) with scores from score_block4 over
// transposed keys (4 query rows per call); item = row * H + head, as the per-row kernels index q and ctx.
template <typename Fn>
void for_each_scored_row(const TierOps& t, const float* q, int64_t Mq, const float* k, int64_t Mk, int64_t H, int64_t Hkv,
                         int64_t Dh, const uint8_t* mask, float scale, bool par, Fn fn) {
  const int64_t ldk = (Mk + 63) / 64 * 64, group = H / Hkv;
  const float* KT = transpose_keys(k, Mk, Hkv, Dh, ldk, par);
  // Head-major work order: consecutive items reuse one head's transposed keys from L2 (all heads' keys exceed it).
  const int64_t rblocks = (Mq + 3) / 4;
  parallel_for(H * rblocks, par, [&](int64_t w) {
    thread_local std::vector<float> sbuf;
    if (int64_t(sbuf.size()) < 4 * ldk) sbuf.resize(size_t(4 * ldk));
    const int64_t h = w / rblocks, r0 = (w % rblocks) * 4, kvh = h / group;
    const int nq = int(std::min<int64_t>(4, Mq - r0));
    float m[4], z[4];
    t.score_block4(q + (r0 * H + h) * Dh, long(H * Dh), nq, KT + kvh * Dh * ldk, long(ldk), long(Mk), int(Dh), mask,
                   scale, sbuf.data(), m, z);
    for (int r = 0; r < nq; r++) fn(r0 + r, (r0 + r) * H + h, kvh, sbuf.data() + r * ldk, m[r], z[r]);
  });
}

napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info, "attention");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *q, *k, *v, *out, *lse;
  uint8_t* mask;
  size_t ql, kl, vl, ol, ll, ml;
  int64_t Mq, Mk, H, Hkv, Dh;
  if (!a.f32(0, "q", &q, &ql) || !a.int_arg(1, "Mq", &Mq) || !a.f32(2, "k", &k, &kl) || !a.f32(3, "v", &v, &vl) ||
      !a.int_arg(4, "Mk", &Mk) || !a.int_arg(5, "H", &H) || !a.int_arg(6, "Hkv", &Hkv) || !a.int_arg(7, "Dh", &Dh) ||
      !a.ta_arg(8, "keyMask", napi_uint8_array, "Uint8Array", &mask, &ml, true) || !a.f32(9, "out", &out, &ol) ||
      !a.f32(10, "lse", &lse, &ll, true))
    return nullptr;
  if (H == 0 || Hkv == 0 || H % Hkv != 0) {
    throw_fmt(env, "attention: H (%lld) must be a positive multiple of Hkv (%lld)", (long long)H, (long long)Hkv);
    return nullptr;
  }
  if (Dh == 0 || Dh > 65536) {
    throw_fmt(env, "attention: bad head dim %lld", (long long)Dh);
    return nullptr;
  }
  const int64_t qn = Mq * H * Dh, kvn = Mk * Hkv * Dh;
  if (int64_t(ql) < qn || int64_t(ol) < qn) {
    throw_fmt(env, "attention: q/out have %zu/%zu elements, need Mq*H*Dh = %lld", ql, ol, (long long)qn);
    return nullptr;
  }
  if (int64_t(kl) < kvn || int64_t(vl) < kvn) {
    throw_fmt(env, "attention: k/v have %zu/%zu elements, need Mk*Hkv*Dh = %lld", kl, vl, (long long)kvn);
    return nullptr;
  }
  if (mask && int64_t(ml) < Mk) {
    throw_fmt(env, "attention: keyMask has %zu elements, need Mk = %lld", ml, (long long)Mk);
    return nullptr;
  }
  if (lse && int64_t(ll) < Mq * H) {
    throw_fmt(env, "attention: lse has %zu elements, need Mq*H = %lld", ll, (long long)(Mq * H));
    return nullptr;
  }
  const int64_t items = Mq * H, group = H / Hkv;
  const float scale = float(1.0 / std::sqrt(double(Dh)));
  const bool par = double(items) * double(Mk) * double(Dh) >= 1e5;
  if (g_attn_blocked && t.attn_block4 && Dh % 16 == 0 && Mq >= 2) {
    // K transposed once per KV head ([Hkv][Dh][ldk], zero padded), then blocks of 4 query rows per head.
    const int64_t ldk = (Mk + 63) / 64 * 64, kvs = Hkv * Dh;
    const float* KT = transpose_keys(k, Mk, Hkv, Dh, ldk, par);
    const int64_t rblocks = (Mq + 3) / 4, work = H * rblocks;
    parallel_for(work, par, [&](int64_t w) {
      thread_local std::vector<float> sbuf;
      if (int64_t(sbuf.size()) < 4 * ldk) sbuf.resize(size_t(4 * ldk));
      const int64_t h = w / rblocks, rb = w % rblocks, kvh = h / group, r0 = rb * 4;  // head-major, as above
      const int nq = int(std::min<int64_t>(4, Mq - r0));
      t.attn_block4(q + (r0 * H + h) * Dh, long(H * Dh), nq, KT + kvh * Dh * ldk, long(ldk), v + kvh * Dh,
                    long(kvs), long(Mk), int(Dh), mask, scale, out + (r0 * H + h) * Dh, long(H * Dh),
                    lse ? lse + r0 * H + h : nullptr, long(H), sbuf.data());
    });
    return undefined(env);
  }
  const int64_t per = std::max<int64_t>(1, items / (8 * int64_t(g_threads)));  // ~8 chunks per thread
  parallel_for((items + per - 1) / per, par, [&](int64_t ch) {
    float scratch[ATTN_BLOCK];
    for (int64_t it = ch * per; it < std::min(items, (ch + 1) * per); it++) {
      const int64_t i = it / H, h = it % H, kvh = h / group;
      t.attn_row(q + it * Dh, k + kvh * Dh, v + kvh * Dh, Hkv * Dh, Mk, int(Dh), mask, scale, out + it * Dh,
                 lse ? lse + i * H + h : nullptr, scratch);
    }
  });
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------------------------
// attentionDelta(q, Mq, k, Mk, H, Hkv, Dh, keyMask?, cols, dv, ctx) and cosineRows(a, b, M, D, out).
// Portable C++ in the glue (not tier-specialised): two streaming passes per (row, head) — (max, Σexp) over all
// keys with online rescaling, then the listed columns' scores recomputed — so no Mk-sized buffer is needed.

inline float dotf(const float* a, const float* b, int64_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t d = 0;
  for (; d + 4 <= n; d += 4) {
    s0 += a[d] * b[d];
    s1 += a[d + 1] * b[d + 1];
    s2 += a[d + 2] * b[d + 2];
    s3 += a[d + 3] * b[d + 3];
  }
  for (; d < n; d++) s0 += a[d] * b[d];
  return (s0 + s1) + (s2 + s3);
}

napi_value AttentionDelta(napi_env env, napi_callback_info info) {
  Args a(env, info, "attentionDelta");
  if (!a.ok) return nullptr;
  float *q, *k, *dv, *ctx, *probs;
  uint8_t* mask;
  int32_t* cols;
  size_t ql, kl, ml, cl, dl, xl, pl;
  int64_t Mq, Mk, H, Hkv, Dh;
  if (!a.f32(0, "q", &q, &ql) || !a.int_arg(1, "Mq", &Mq) || !a.f32(2, "k", &k, &kl) || !a.int_arg(3, "Mk", &Mk) ||
      !a.int_arg(4, "H", &H) || !a.int_arg(5, "Hkv", &Hkv) || !a.int_arg(6, "Dh", &Dh) ||
      !a.ta_arg(7, "keyMask", napi_uint8_array, "Uint8Array", &mask, &ml, true) ||
      !a.ta_arg(8, "cols", napi_int32_array, "Int32Array", &cols, &cl) || !a.f32(9, "dv", &dv, &dl) ||
      !a.f32(10, "ctx", &ctx, &xl) || !a.f32(11, "probs", &probs, &pl, true))
    return nullptr;
  if (H == 0 || Hkv == 0 || H % Hkv != 0) {
    throw_fmt(env, "attentionDelta: H (%lld) must be a positive multiple of Hkv (%lld)", (long long)H, (long long)Hkv);
    return nullptr;
  }
  const int64_t nc = int64_t(cl), qn = Mq * H * Dh;
  if (int64_t(ql) < qn || int64_t(xl) < qn || int64_t(kl) < Mk * Hkv * Dh || int64_t(dl) < nc * Hkv * Dh) {
    throw_fmt(env, "attentionDelta: q/ctx/k/dv have %zu/%zu/%zu/%zu elements, need %lld/%lld/%lld/%lld", ql, xl, kl, dl,
              (long long)qn, (long long)qn, (long long)(Mk * Hkv * Dh), (long long)(nc * Hkv * Dh));
    return nullptr;
  }
  if (mask && int64_t(ml) < Mk) {
    throw_fmt(env, "attentionDelta: keyMask has %zu elements, need Mk = %lld", ml, (long long)Mk);
    return nullptr;
  }
  if (probs && int64_t(pl) < Mq * H * nc) {
    throw_fmt(env, "attentionDelta: probs has %zu elements, need Mq*H*cols = %lld", pl, (long long)(Mq * H * nc));
    return nullptr;
  }
  for (int64_t c = 0; c < nc; c++)
    if (cols[c] < 0 || cols[c] >= Mk) {
      throw_fmt(env, "attentionDelta: cols[%lld] = %d is outside [0, %lld)", (long long)c, cols[c], (long long)Mk);
      return nullptr;
    }
  const TierOps& t = *tier_of(a);
  const int64_t items = Mq * H, group = H / Hkv, kvs = Hkv * Dh;
  const float scale = float(1.0 / std::sqrt(double(Dh)));
  const bool par = double(items) * double(Mk + nc) * double(Dh) >= 1e5;
  if (g_attn_blocked && t.score_block4 && Dh % 16 == 0 && Mq >= 2) {
    // Scores of 4 query rows at a time against transposed keys; only the listed columns feed the update.
    for_each_scored_row(t, q, Mq, k, Mk, H, Hkv, Dh, mask, scale, par, [&](int64_t, int64_t it, int64_t kvh, const float* sr, float m, float z) {
      t.delta_cols(ctx + it * Dh, sr, m, z, cols, long(nc), dv + kvh * Dh, long(kvs), int(Dh), probs ? probs + it * nc : nullptr);
    });
    return undefined(env);
  }
  const int64_t per = std::max<int64_t>(1, items / (8 * int64_t(g_threads)));
  parallel_for((items + per - 1) / per, par, [&](int64_t ch) {
    thread_local std::vector<float> sbuf;
    if (int64_t(sbuf.size()) < Mk) sbuf.resize(size_t(Mk));
    float* sc = sbuf.data();
    for (int64_t it = ch * per; it < std::min(items, (ch + 1) * per); it++) {
      const int64_t kvh = (it % H) / group;
      float m, z;
      t.score_row(q + it * Dh, k + kvh * Dh, long(kvs), long(Mk), int(Dh), mask, scale, sc, &m, &z);
      t.delta_cols(ctx + it * Dh, sc, m, z, cols, long(nc), dv + kvh * Dh, long(kvs), int(Dh), probs ? probs + it * nc : nullptr);
    }
  });
  return undefined(env);
}

// attentionRescale(q, Mq, k, Mk, H, Hkv, Dh, keyMask, cols, kOld, vOld, vNew, lse, ctx, incremental)
napi_value AttentionRescale(napi_env env, napi_callback_info info) {
  Args a(env, info, "attentionRescale");
  if (!a.ok) return nullptr;
  float *q, *k, *kOld, *vOld, *vNew, *lse, *ctx;
  uint8_t* mask;
  int32_t* cols;
  size_t ql, kl, ml, cl, kol, vol, vnl, ll, xl;
  int64_t Mq, Mk, H, Hkv, Dh;
  if (!a.f32(0, "q", &q, &ql) || !a.int_arg(1, "Mq", &Mq) || !a.f32(2, "k", &k, &kl) || !a.int_arg(3, "Mk", &Mk) ||
      !a.int_arg(4, "H", &H) || !a.int_arg(5, "Hkv", &Hkv) || !a.int_arg(6, "Dh", &Dh) ||
      !a.ta_arg(7, "keyMask", napi_uint8_array, "Uint8Array", &mask, &ml, true) ||
      !a.ta_arg(8, "cols", napi_int32_array, "Int32Array", &cols, &cl) || !a.f32(9, "kOld", &kOld, &kol) ||
      !a.f32(10, "vOld", &vOld, &vol) || !a.f32(11, "vNew", &vNew, &vnl) || !a.f32(12, "lse", &lse, &ll) ||
      !a.f32(13, "ctx", &ctx, &xl))
    return nullptr;
  bool incremental = false;
  if (napi_get_value_bool(env, a.argv[14], &incremental) != napi_ok) {
    throw_fmt(env, "attentionRescale: argument 14 (incremental) must be a boolean");
    return nullptr;
  }
  if (H == 0 || Hkv == 0 || H % Hkv != 0) {
    throw_fmt(env, "attentionRescale: H (%lld) must be a positive multiple of Hkv (%lld)", (long long)H, (long long)Hkv);
    return nullptr;
  }
  const int64_t nc = int64_t(cl), qn = Mq * H * Dh, kvs = Hkv * Dh;
  if (int64_t(ql) < qn || int64_t(xl) < qn || int64_t(kl) < Mk * kvs || int64_t(ll) < Mq * H ||
      int64_t(kol) < nc * kvs || int64_t(vol) < nc * kvs || int64_t(vnl) < nc * kvs || (mask && int64_t(ml) < Mk)) {
    throw_fmt(env, "attentionRescale: an array is too short for Mq=%lld Mk=%lld H=%lld Hkv=%lld Dh=%lld nc=%lld",
              (long long)Mq, (long long)Mk, (long long)H, (long long)Hkv, (long long)Dh, (long long)nc);
    return nullptr;
  }
  for (int64_t c = 0; c < nc; c++)
    if (cols[c] < 0 || cols[c] >= Mk) {
      throw_fmt(env, "attentionRescale: cols[%lld] = %d is outside [0, %lld)", (long long)c, cols[c], (long long)Mk);
      return nullptr;
    }
  const TierOps& t = *tier_of(a);
  const int64_t items = Mq * H, group = H / Hkv;
  const float scale = float(1.0 / std::sqrt(double(Dh)));
  const bool par = double(items) * double((incremental ? 0 : Mk) + 2 * nc) * double(Dh) >= 1e5;
  if (!incremental && g_attn_blocked && t.score_block4 && Dh % 16 == 0 && Mq >= 2) {
    const int64_t kvs = Hkv * Dh;
    for_each_scored_row(t, q, Mq, k, Mk, H, Hkv, Dh, mask, scale, par, [&](int64_t, int64_t it, int64_t kvh, const float* sr, float m, float z) {
      if (lse[it] == -INFINITY || m == -INFINITY || z <= 0.f) return;
      const float* qi = q + it * Dh;
      thread_local std::vector<float> lold;
      if (int64_t(lold.size()) < nc) lold.resize(size_t(nc));
      // Z_old under the current query: Z_new minus the changed columns' new terms plus their old ones.
      double zold = z;
      for (int64_t c = 0; c < nc; c++) {
        const float ln = sr[cols[c]];
        if (ln == -INFINITY) continue;
        lold[c] = dotf(qi, kOld + c * kvs + kvh * Dh, Dh) * scale;
        zold += std::exp(double(lold[c]) - m) - std::exp(double(ln) - m);
      }
      const double lse_new = double(m) + std::log(double(z));
      const float ratio = float(zold / double(z));
      float* o = ctx + it * Dh;
      for (int64_t d = 0; d < Dh; d++) o[d] *= ratio;
      for (int64_t c = 0; c < nc; c++) {
        const float ln = sr[cols[c]];
        if (ln == -INFINITY) continue;
        const float lo = lold[c];
        const float pn = float(std::exp(double(ln) - lse_new)), po = float(std::exp(double(lo) - lse_new));
        const float* vn = vNew + c * kvs + kvh * Dh;
        const float* vo = vOld + c * kvs + kvh * Dh;
        for (int64_t d = 0; d < Dh; d++) o[d] += pn * vn[d] - po * vo[d];
      }
      lse[it] = float(lse_new);
    });
    return undefined(env);
  }
  const int64_t per = std::max<int64_t>(1, items / (8 * int64_t(g_threads)));
  parallel_for((items + per - 1) / per, par, [&](int64_t ch) {
    thread_local std::vector<float> sbuf, lnew, lold;
    if (int64_t(sbuf.size()) < Mk) sbuf.resize(size_t(Mk));
    if (int64_t(lnew.size()) < nc) lnew.resize(size_t(nc)), lold.resize(size_t(nc));
    for (int64_t it = ch * per; it < std::min(items, (ch + 1) * per); it++) {
      const int64_t kvh = (it % H) / group;
      const float lse_old = lse[it];
      if (lse_old == -INFINITY) continue;
      const float* qi = q + it * Dh;
      for (int64_t c = 0; c < nc; c++) {
        const bool live = !mask || mask[cols[c]];
        lnew[c] = live ? dotf(qi, k + cols[c] * kvs + kvh * Dh, Dh) * scale : -INFINITY;
        lold[c] = live ? dotf(qi, kOld + c * kvs + kvh * Dh, Dh) * scale : -INFINITY;
      }
      double lse_new, ratio;
      if (incremental) {
        double z = 1.0;
        for (int64_t c = 0; c < nc; c++) z += std::exp(double(lnew[c]) - lse_old) - std::exp(double(lold[c]) - lse_old);
        lse_new = double(lse_old) + std::log(std::max(z, 1e-30));
        ratio = std::exp(double(lse_old) - lse_new);
      } else {
        // Z_old under the current query: Z_new minus the changed columns' new terms plus their old ones.
        float m, z;
        t.score_row(qi, k + kvh * Dh, long(kvs), long(Mk), int(Dh), mask, scale, sbuf.data(), &m, &z);
        double zold = z;
        for (int64_t c = 0; c < nc; c++) zold += std::exp(double(lold[c]) - m) - std::exp(double(lnew[c]) - m);
        lse_new = double(m) + std::log(double(z));
        ratio = zold / double(z);
      }
      const float r = float(ratio);
      float* o = ctx + it * Dh;
      for (int64_t d = 0; d < Dh; d++) o[d] *= r;
      for (int64_t c = 0; c < nc; c++) {
        if (lnew[c] == -INFINITY) continue;
        const float pn = float(std::exp(double(lnew[c]) - lse_new)), po = float(std::exp(double(lold[c]) - lse_new));
        const float* vn = vNew + c * kvs + kvh * Dh;
        const float* vo = vOld + c * kvs + kvh * Dh;
        for (int64_t d = 0; d < Dh; d++) o[d] += pn * vn[d] - po * vo[d];
      }
      lse[it] = float(lse_new);
    }
  });
  return undefined(env);
}

// logitStats(logits, M, V, argmax: Int32Array, p1: Float64Array, p2: Float64Array, negEntropy?: Float64Array)
// One row per task, in parallel; the tier's logit_row_stats evaluates exp/log in double so the statistics match the
// float64 reference.
napi_value LogitStats(napi_env env, napi_callback_info info) {
  Args a(env, info, "logitStats");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float* x;
  int32_t* am;
  double *p1, *p2, *ne;
  size_t xl, aml, p1l, p2l, nel;
  int64_t M, V;
  if (!a.f32(0, "logits", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "V", &V) ||
      !a.ta_arg(3, "argmax", napi_int32_array, "Int32Array", &am, &aml) ||
      !a.ta_arg(4, "p1", napi_float64_array, "Float64Array", &p1, &p1l) ||
      !a.ta_arg(5, "p2", napi_float64_array, "Float64Array", &p2, &p2l) ||
      !a.ta_arg(6, "negEntropy", napi_float64_array, "Float64Array", &ne, &nel, true))
    return nullptr;
  if (V <= 0 || int64_t(xl) < M * V || int64_t(aml) < M || int64_t(p1l) < M || int64_t(p2l) < M || (ne && int64_t(nel) < M)) {
    throw_fmt(env, "logitStats: arrays too short for M=%lld V=%lld", (long long)M, (long long)V);
    return nullptr;
  }
  if (V > INT32_MAX) {
    throw_fmt(env, "logitStats: V=%lld does not fit the Int32Array argmax", (long long)V);
    return nullptr;
  }
  parallel_for(M, double(M) * double(V) >= 2e5, [&](int64_t m) {
    t.logit_row_stats(x + m * V, long(V), ne != nullptr, am + m, p1 + m, p2 + m, ne ? ne + m : nullptr);
  });
  return undefined(env);
}

napi_value CosineRows(napi_env env, napi_callback_info info) {
  Args a(env, info, "cosineRows");
  if (!a.ok) return nullptr;
  float *x, *y, *out;
  size_t xl, yl, ol;
  int64_t M, D;
  if (!a.f32(0, "a", &x, &xl) || !a.f32(1, "b", &y, &yl) || !a.int_arg(2, "M", &M) || !a.int_arg(3, "D", &D) ||
      !a.f32(4, "out", &out, &ol))
    return nullptr;
  if (int64_t(xl) < M * D || int64_t(yl) < M * D || int64_t(ol) < M) {
    throw_fmt(env, "cosineRows: a/b/out have %zu/%zu/%zu elements, need %lld/%lld/%lld", xl, yl, ol, (long long)(M * D),
              (long long)(M * D), (long long)M);
    return nullptr;
  }
  parallel_for(M, M * D >= (1 << 16), [&](int64_t m) {
    const float* ar = x + m * D;
    const float* br = y + m * D;
    double dot = 0, aa = 0, bb = 0;
    for (int64_t d = 0; d < D; d++) {
      dot += double(ar[d]) * br[d];
      aa += double(ar[d]) * ar[d];
      bb += double(br[d]) * br[d];
    }
    out[m] = float(dot / std::sqrt(std::max(aa, 1e-8)) / std::sqrt(std::max(bb, 1e-8)));
  });
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------------------------
// rmsnorm(x, M, D, weight, eps, out) ; rope(x, M, nHeads, Dh, positions, cos, sin) ; siluMul(g, u, n, out) ; add(dst, src, n)

napi_value Rmsnorm(napi_env env, napi_callback_info info) {
  Args a(env, info, "rmsnorm");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *x, *w, *out;
  size_t xl, wl, ol;
  int64_t M, D;
  double eps;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "D", &D) || !a.f32(3, "weight", &w, &wl) ||
      !a.num_arg(4, "eps", &eps) || !a.f32(5, "out", &out, &ol))
    return nullptr;
  if (int64_t(xl) < M * D || int64_t(ol) < M * D || int64_t(wl) < D) {
    throw_fmt(env, "rmsnorm: x/out/weight have %zu/%zu/%zu elements, need %lld/%lld/%lld", xl, ol, wl,
              (long long)(M * D), (long long)(M * D), (long long)D);
    return nullptr;
  }
  if (D == 0) return undefined(env);
  parallel_for(M, M * D >= (1 << 16), [&](int64_t m) { t.rmsnorm_row(x + m * D, D, w, float(eps), out + m * D); });
  return undefined(env);
}

napi_value Rope(napi_env env, napi_callback_info info) {
  Args a(env, info, "rope");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *x, *c, *s;
  int32_t* pos;
  size_t xl, cl, sl, pl;
  int64_t M, nH, Dh;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "nHeads", &nH) || !a.int_arg(3, "Dh", &Dh) ||
      !a.ta_arg(4, "positions", napi_int32_array, "Int32Array", &pos, &pl) || !a.f32(5, "cos", &c, &cl) ||
      !a.f32(6, "sin", &s, &sl))
    return nullptr;
  if (Dh % 2 != 0) {
    throw_fmt(env, "rope: Dh (%lld) must be even", (long long)Dh);
    return nullptr;
  }
  if (int64_t(xl) < M * nH * Dh || int64_t(pl) < M) {
    throw_fmt(env, "rope: x/positions have %zu/%zu elements, need %lld/%lld", xl, pl, (long long)(M * nH * Dh),
              (long long)M);
    return nullptr;
  }
  const int64_t h = Dh / 2;
  for (int64_t m = 0; m < M; m++)
    if (pos[m] < 0 || (pos[m] + 1) * h > int64_t(std::min(cl, sl))) {
      throw_fmt(env, "rope: positions[%lld] = %d is outside the cos/sin tables (%zu/%zu entries, %lld per position)",
                (long long)m, pos[m], cl, sl, (long long)h);
      return nullptr;
    }
  parallel_for(M, M * nH * Dh >= (1 << 16),
               [&](int64_t m) { t.rope_row(x + m * nH * Dh, int(nH), int(Dh), c + pos[m] * h, s + pos[m] * h); });
  return undefined(env);
}

napi_value SiluMul(napi_env env, napi_callback_info info) {
  Args a(env, info, "siluMul");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *g, *u, *o;
  size_t gl, ul, ol;
  int64_t n;
  if (!a.f32(0, "gate", &g, &gl) || !a.f32(1, "up", &u, &ul) || !a.int_arg(2, "n", &n) || !a.f32(3, "out", &o, &ol))
    return nullptr;
  if (int64_t(gl) < n || int64_t(ul) < n || int64_t(ol) < n) {
    throw_fmt(env, "siluMul: gate/up/out have %zu/%zu/%zu elements, need n = %lld", gl, ul, ol, (long long)n);
    return nullptr;
  }
  constexpr int64_t CH = 1 << 15;  // elements per chunk (multiple of 16)
  parallel_for((n + CH - 1) / CH, n >= (1 << 17), [&](int64_t c) {
    const int64_t b = c * CH, e = std::min(n, b + CH);
    t.silu_mul(g + b, u + b, e - b, o + b);
  });
  return undefined(env);
}

napi_value Add(napi_env env, napi_callback_info info) {
  Args a(env, info, "add");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  float *d, *s;
  size_t dl, sl;
  int64_t n;
  if (!a.f32(0, "dst", &d, &dl) || !a.f32(1, "src", &s, &sl) || !a.int_arg(2, "n", &n)) return nullptr;
  if (int64_t(dl) < n || int64_t(sl) < n) {
    throw_fmt(env, "add: dst/src have %zu/%zu elements, need n = %lld", dl, sl, (long long)n);
    return nullptr;
  }
  constexpr int64_t CH = 1 << 15;  // elements per chunk (multiple of 16)
  parallel_for((n + CH - 1) / CH, n >= (1 << 17), [&](int64_t c) {
    const int64_t b = c * CH, e = std::min(n, b + CH);
    t.add(d + b, s + b, e - b);
  });
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------------------------
// Microbenchmarks: peak(kind: 'bf16'|'fma', threads, iters) -> GFLOP/s ; streamRead(bytes, threads, reps) -> GB/s[]

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs f(0..n-1) on n threads at once (fresh threads: the microbenchmarks need exactly n concurrent workers).
template <class F>
void run_on_threads(int n, F&& f) {
  std::vector<std::thread> ts;
  for (int i = 1; i < n; i++) ts.emplace_back([&f, i] { f(i); });
  f(0);
  for (auto& th : ts) th.join();
}

napi_value Peak(napi_env env, napi_callback_info info) {
  Args a(env, info, "peak");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  char kind[8] = {0};
  size_t kl;
  napi_get_value_string_utf8(env, a.argv[0], kind, sizeof kind, &kl);
  int64_t nt, iters;
  if (!a.int_arg(1, "threads", &nt) || !a.int_arg(2, "iters", &iters)) return nullptr;
  double (*fn)(long) = std::strcmp(kind, "bf16") == 0 ? t.peak_bf16 : t.peak_fma;
  if (!fn) {
    throw_fmt(env, "peak: tier %s has no '%s' unit", t.name, kind);
    return nullptr;
  }
  nt = std::max<int64_t>(1, nt);
  std::vector<double> work(size_t(nt), 0.0);
  double t0 = now_s();
  run_on_threads(int(nt), [&](int i) { work[size_t(i)] = fn(long(iters)); });
  double dt = now_s() - t0;
  double total = 0;
  for (double w : work) total += w;
  napi_value r;
  napi_create_double(env, total / dt * 1e-9, &r);
  return r;
}

napi_value StreamRead(napi_env env, napi_callback_info info) {
  Args a(env, info, "streamRead");
  if (!a.ok) return nullptr;
  const TierOps& t = *tier_of(a);
  int64_t bytes, nt, reps;
  if (!a.int_arg(0, "bytes", &bytes) || !a.int_arg(1, "threads", &nt) || !a.int_arg(2, "reps", &reps)) return nullptr;
  if (!t.stream_read) {
    throw_fmt(env, "streamRead: tier %s has no stream kernel", t.name);
    return nullptr;
  }
  nt = std::max<int64_t>(1, nt);
  int64_t n = bytes / 4 / 1024 * 1024;
  float* buf = static_cast<float*>(std::aligned_alloc(4096, size_t(n) * 4));
  if (!buf) {
    throw_err(env, "streamRead: allocation failed");
    return nullptr;
  }
  std::vector<float> sinks(size_t(nt) * 16);
  run_on_threads(int(nt), [&](int ti) {
    int64_t b, e;
    split(n, int(nt), ti, &b, &e);
    for (int64_t i = b; i < e; i++) buf[i] = float(i & 1023) * 1e-3f;
  });
  napi_value arr;
  napi_create_array(env, &arr);
  for (int64_t r = 0; r < reps; r++) {
    double t0 = now_s();
    // 4 MiB chunks claimed dynamically, like the GEMV's panels, so a preempted thread does not stall the pass.
    constexpr int64_t CHF = 1 << 20;
    std::atomic<int64_t> next{0};
    run_on_threads(int(nt), [&](int ti) {
      for (int64_t c; (c = next.fetch_add(1)) * CHF < n;)
        t.stream_read(buf + c * CHF, long(std::min(CHF, n - c * CHF)), &sinks[size_t(ti) * 16]);
    });
    double dt = now_s() - t0;
    napi_value v;
    napi_create_double(env, double(n) * 4 / dt * 1e-9, &v);
    napi_set_element(env, arr, uint32_t(r), v);
  }
  std::free(buf);
  return arr;
}

// ---------------------------------------------------------------------------------------------------------------
// Module: tiers() -> names this CPU can run (best first); bind(name) -> object of kernels for that tier.

std::vector<const TierOps*> supported_tiers() {
  std::vector<const TierOps*> v;
#ifdef DYLLM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("fma"))
    v.push_back(&tier_avx512);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) v.push_back(&tier_avx2);
#endif
  v.push_back(&tier_portable);
  return v;
}

napi_value Tiers(napi_env env, napi_callback_info) {
  napi_value arr;
  napi_create_array(env, &arr);
  auto v = supported_tiers();
  for (size_t i = 0; i < v.size(); i++) {
    napi_value s;
    napi_create_string_utf8(env, v[i]->name, NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, uint32_t(i), s);
  }
  return arr;
}

napi_value Threads(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_int32(env, g_threads, &r);
  return r;
}

napi_value Bind(napi_env env, napi_callback_info info) {
  Args a(env, info, "bind");
  if (!a.ok) return nullptr;
  char name[32] = {0};
  size_t nl;
  if (a.argc < 1 || napi_get_value_string_utf8(env, a.argv[0], name, sizeof name, &nl) != napi_ok) {
    throw_err(env, "bind: tier name must be a string");
    return nullptr;
  }
  const TierOps* tier = nullptr;
  for (const TierOps* t : supported_tiers())
    if (std::strcmp(t->name, name) == 0) tier = t;
  if (!tier) {
    std::string list;
    for (const TierOps* t : supported_tiers()) list += std::string(list.empty() ? "" : ", ") + t->name;
    throw_fmt(env, "ISA tier '%s' is unknown or not supported by this CPU (supported: %s)", name, list.c_str());
    return nullptr;
  }
  void* d = const_cast<TierOps*>(tier);
  napi_property_descriptor props[] = {
      {"matmul", nullptr, Matmul, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"attention", nullptr, Attention, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"attentionDelta", nullptr, AttentionDelta, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"cosineRows", nullptr, CosineRows, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"attentionRescale", nullptr, AttentionRescale, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"logitStats", nullptr, LogitStats, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"matmulCols", nullptr, MatmulCols, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"gemm", nullptr, Gemm, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"rmsnorm", nullptr, Rmsnorm, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"rope", nullptr, Rope, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"siluMul", nullptr, SiluMul, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"add", nullptr, Add, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"peak", nullptr, Peak, nullptr, nullptr, nullptr, napi_enumerable, d},
      {"streamRead", nullptr, StreamRead, nullptr, nullptr, nullptr, napi_enumerable, d},
  };
  napi_value obj, nm;
  napi_create_object(env, &obj);
  napi_define_properties(env, obj, sizeof props / sizeof props[0], props);
  napi_create_string_utf8(env, tier->name, NAPI_AUTO_LENGTH, &nm);
  napi_set_named_property(env, obj, "isa", nm);
  return obj;
}

napi_value Init(napi_env env, napi_value exports) {
  int nt = int(std::thread::hardware_concurrency());
  if (nt <= 0) nt = 1;
  if (const char* e = std::getenv("DYLLM_THREADS")) {
    int v = std::atoi(e);
    if (v > 0) nt = v;
  }
  if (const char* e = std::getenv("DYLLM_ATTN_BLOCKED")) g_attn_blocked = std::string(e) != "0";
  if (const char* e = std::getenv("DYLLM_KC")) {
    long v = std::atol(e);
    if (v >= 8) KC_UNITS = v;
  }
  if (!g_pool) {  // first load in this process (worker_threads share the pool)
    g_threads = std::max(1, std::min(nt, 256));
    g_pool = new Pool(g_threads - 1);
  }
  napi_property_descriptor props[] = {
      {"tiers", nullptr, Tiers, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"bind", nullptr, Bind, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"threads", nullptr, Threads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"prepare", nullptr, Prepare, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

}  // namespace
}  // namespace dyllm

NAPI_MODULE(NODE_GYP_MODULE_NAME, dyllm::Init)

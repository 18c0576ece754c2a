// gemm.cc — weight packing and the GEMM bindings: prepare (weights into 32-column panels), matmul (x · Wᵀ with an
// optional bias and gathered rows), matmulCols (a slice of W's input features) and gemm (two run-time fp32
// operands). gemm_driver packs activations per call, splits the work over the pool and runs the tier's register
// tiles (layouts in kernels.h).
#include <algorithm>
#include <type_traits>

#include "glue.h"

namespace dyllm {

// k-units per cache block (bf16: 4096 k, f32: 2048 k). Measured on Zen 5 (1 MiB L2): the whole K of a
// 4096-deep panel (256 KiB of B, 96 KiB of A per row tile) beats 16-64 KiB blocks by 10-60 % (the B panel then
// streams contiguously); deeper K is blocked. Env DYLLM_KC overrides (tuning).
int64_t g_kc_units = 2048;

namespace {

constexpr int64_t NC_PANELS = 8;  // panels per thread chunk (256 columns)
// Rows of x packed per driver call: gathered rows (xRows) may repeat, so M·K is not bounded by x; larger calls run
// in row blocks of at most this many packed elements (256 MiB of fp32) instead of one unbounded buffer.
constexpr int64_t kMaxPackedElems = int64_t(1) << 26;

thread_local Scratch tl_pack;  // packed activations (gemm_driver)
thread_local Scratch tl_panels;  // gemm's packed right operand

// x[M, K] · W[:, kOff : kOff + K]ᵀ where W is packed with Kfull input features (kOff even for bf16: pairs).
// split (bf16 weights only): activations split as hi + lo bf16 parts (two dot products sharing each weight load):
// about fp32-accurate activations for twice the arithmetic. Otherwise activations are rounded to bf16 once, as the
// released checkpoints' bf16 path does (the products are exact and accumulate in fp32).
// Returns false (nothing written) when the activation packing buffer cannot be allocated.
template <bool BF16>
bool gemm_driver(const TierOps& t, const float* x, int64_t M, const int32_t* xRows, int64_t K, const void* W,
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
  AT* A = static_cast<AT*>(tl_pack.get(a_elems * sizeof(AT) * (comp ? 2 : 1)));
  if (!A) return false;
  AT* Alo = comp ? A + a_elems : nullptr;  // residual x − bf16(x), rounded to bf16
  const BT* B = static_cast<const BT*>(W);
  const int64_t kc = ntiles == 1 ? kdim : g_kc_units;
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
  return true;
}

// The prepared-weight arguments shared by matmul and matmulCols: argv[iw] the packed ArrayBuffer, then N, K and the
// dtype at iw + 1..3 (0 bf16, 1 f32, 2 int8, 3 q4). Checks that the buffer holds an N x K weight and returns its
// aligned start.
bool weight_args(Args& a, size_t iw, int64_t* N, int64_t* K, const void** W, int* dt) {
  static const char* const names[] = {"bf16", "f32", "int8", "q4"};
  bool isab = false;
  if (iw < a.argc) napi_is_arraybuffer(a.env, a.argv[iw], &isab);
  if (!isab) return a.type_error("weight must be an ArrayBuffer from prepare(), found %s", a.describe(iw));
  if (!a.int_arg(iw + 1, "N", N) || !a.int_arg(iw + 2, "K", K) || !a.choice_arg(iw + 3, "dtype", {"bf16", "f32", "int8", "q4"}, dt))
    return false;
  void* abdata = nullptr;
  size_t ablen = 0;
  napi_get_arraybuffer_info(a.env, a.argv[iw], &abdata, &ablen);
  int64_t bytes;
  const bool fits = *dt < 2 ? packed_bytes(*dt == 0, *N, *K, &bytes) : quant_packed_bytes(*dt == 3, *N, *K, &bytes);
  if (!fits) return a.range_error("a %lldx%lld weight is too large", (long long)*N, (long long)*K);
  if (int64_t(ablen) < bytes + int64_t(ALIGN))
    return a.range_error("weight holds %zu bytes, %lld needed for a prepared %lldx%lld %s weight", ablen,
                         (long long)(bytes + int64_t(ALIGN)), (long long)*N, (long long)*K, names[*dt]);
  *W = align_up(abdata);
  return true;
}

// gemm_driver over row blocks of at most kMaxPackedElems packed activations (one block in every ordinary call).
template <bool BF16>
bool gemm_blocks(Args& a, const TierOps& t, const float* x, int64_t M, const int32_t* xRows, int64_t K, const void* W,
                 int64_t N, float* out, const float* bias, bool split, int64_t Kfull = -1, int64_t kOff = 0) {
  const int64_t rows = std::max<int64_t>(1, kMaxPackedElems / std::max<int64_t>(K, 1));
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const int64_t mb = std::min(rows, M - m0);
    const float* xb = xRows ? x : x + m0 * K;
    if (!gemm_driver<BF16>(t, xb, mb, xRows ? xRows + m0 : nullptr, K, W, N, out + m0 * N, bias, split, Kfull, kOff))
      return a.range_error("cannot allocate the packed activations of %lld rows x %lld inputs", (long long)mb, (long long)K);
  }
  return true;
}

}  // namespace

// prepare(dtype: 'bf16'|'f32'|'int8'|'q4', data, N, K, scales?) -> ArrayBuffer holding the packed panels (plus 64
// bytes alignment slack). Quantised dtypes take the host arrays of src/kernels/quant.ts: int8 data Int8Array [N*K]
// with scales Float32Array [N]; q4 data Uint8Array [N*ceil(K/32)*16] with scales Uint16Array [N*ceil(K/32)] (bf16).
// The checks run in the order of checkPrepareWeight (src/kernels/args.ts), with its messages.
napi_value Prepare(napi_env env, napi_callback_info info) {
  Args a(env, info, "prepareWeight");
  if (!a.ok) return nullptr;
  int dt = 0;
  if (!a.choice_arg(0, "dtype", {"bf16", "f32", "int8", "q4"}, &dt)) return nullptr;
  const bool bf16 = dt == 0, quant = dt >= 2, q4 = dt == 3;
  static const napi_typedarray_type kinds[] = {napi_uint16_array, napi_float32_array, napi_int8_array, napi_uint8_array};
  void* src;
  size_t len;
  if (!a.ta_arg(1, "data", kinds[dt], &src, &len)) return nullptr;
  int64_t N, K, NK;
  if (!a.int_arg(2, "outFeatures", &N) || !a.int_arg(3, "inFeatures", &K) ||
      !a.product("outFeatures*inFeatures", {N, K}, &NK))
    return nullptr;
  const int64_t G = (K + QK - 1) / QK;
  if (!q4 && int64_t(len) != NK) {
    a.range_error("data has %zu elements, expected %lldx%lld = %lld", len, (long long)N, (long long)K, (long long)NK);
    return nullptr;
  }
  if (q4) {
    int64_t qb;
    if (!a.product("outFeatures*ceil(inFeatures/32)*16", {N, G, QK / 2}, &qb)) return nullptr;
    if (int64_t(len) != qb) {
      a.range_error("data has %zu elements, expected %lldx%lld = %lld (two 4-bit values per byte, inFeatures padded to a multiple of 32)",
                    len, (long long)N, (long long)(G * (QK / 2)), (long long)qb);
      return nullptr;
    }
  }
  void* scales = nullptr;
  if (quant) {
    size_t sl;
    if (!a.ta_arg(4, "scales", q4 ? napi_uint16_array : napi_float32_array, &scales, &sl)) return nullptr;
    const int64_t ns = q4 ? N * G : N;  // N*G <= N*G*16, checked above
    if (int64_t(sl) != ns) {
      if (q4) a.range_error("scales has %zu elements, expected %lldx%lld = %lld (one per 32 input features)", sl, (long long)N, (long long)G, (long long)ns);
      else a.range_error("scales has %zu elements, expected outFeatures = %lld", sl, (long long)N);
      return nullptr;
    }
  }
  int64_t bytes;
  if (!(quant ? quant_packed_bytes(q4, N, K, &bytes) : packed_bytes(bf16, N, K, &bytes))) {
    a.range_error("a %lldx%lld weight is too large to pack", (long long)N, (long long)K);
    return nullptr;
  }
  void* abdata;
  napi_value ab;
  if (!new_weight_buffer(a, bytes + int64_t(ALIGN), &ab, &abdata)) return nullptr;
  if (bytes == 0) return ab;  // N or K is 0: nothing to pack (and no panel loop over a huge empty dimension)
  void* dst = align_up(abdata);
  if (quant) {
    pack_quant(q4, src, scales, N, K, static_cast<uint8_t*>(dst));
    return ab;
  }
  int64_t panels = (N + NR - 1) / NR;
  // Each panel is written front to back, one k-unit (32 columns) at a time, reading its 32 source rows side by side:
  // the destination streams and the 32 row cursors stay in cache. The buffer is zeroed, so padding (columns past N,
  // the odd last k of a bf16 row) is left as it is. Panels are split over the pool (≥ 1 MiB of work each call).
  if (bf16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    uint16_t* d = static_cast<uint16_t*>(dst);
    const int64_t kp = (K + 1) / 2, kfull = K / 2;
    // k-pairs as one 32-bit load where the rows are 4-byte aligned (K even and an aligned source)
    const bool words = K % 2 == 0 && reinterpret_cast<uintptr_t>(s) % 4 == 0;
    parallel_for(panels, NK > (1 << 19), [&](int64_t p) {
      uint16_t* dp = d + p * kp * 2 * NR;
      const int nc = int(std::min<int64_t>(NR, N - p * NR));
      const uint16_t* rows[NR];
      for (int c = 0; c < nc; c++) rows[c] = s + (p * NR + c) * K;
      if (words) {
        // 16 k-pairs (one 64-byte line of each source row) at a time: 32 rows x 16 pairs transposed into 16 k-units
        uint32_t* dw = reinterpret_cast<uint32_t*>(dp);
        constexpr int64_t KB = 16;
        for (int64_t k0 = 0; k0 < kp; k0 += KB) {
          const int64_t kn = std::min<int64_t>(KB, kp - k0);
          for (int c = 0; c < nc; c++) {
            const uint32_t* r = reinterpret_cast<const uint32_t*>(rows[c]) + k0;
            uint32_t* o = dw + k0 * NR + c;
            for (int64_t j = 0; j < kn; j++) o[j * NR] = r[j];
          }
        }
      } else {
        for (int64_t kk = 0; kk < kp; kk++)
          for (int c = 0; c < nc; c++) {
            dp[kk * 2 * NR + 2 * c] = rows[c][2 * kk];
            if (kk < kfull) dp[kk * 2 * NR + 2 * c + 1] = rows[c][2 * kk + 1];
          }
      }
    });
  } else {
    const float* s = static_cast<const float*>(src);
    float* d = static_cast<float*>(dst);
    parallel_for(panels, NK > (1 << 18), [&](int64_t p) {
      float* dp = d + p * K * NR;
      const int nc = int(std::min<int64_t>(NR, N - p * NR));
      const float* rows[NR];
      for (int c = 0; c < nc; c++) rows[c] = s + (p * NR + c) * K;
      for (int64_t k = 0; k < K; k++, dp += NR)
        for (int c = 0; c < nc; c++) dp[c] = rows[c][k];
    });
  }
  return ab;
}

// matmul(x, M, packed, N, K, dtype, out, bias?, xRows?, split?): out[M, N] = x[M, K] · Wᵀ (+ bias); with xRows,
// row m of the product uses row xRows[m] of x. split: bf16 activations as hi + lo parts.
napi_value Matmul(napi_env env, napi_callback_info info) {
  Args a(env, info, "matmul");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *x, *out, *bias;
  int32_t* xRows;
  size_t xl, ol, bl, rl;
  int64_t M, N, K;
  const void* W;
  int dt;
  bool split;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !weight_args(a, 2, &N, &K, &W, &dt) ||
      !a.f32(6, "out", &out, &ol) || !a.f32(7, "bias", &bias, &bl, true) || !a.i32(8, "xRows", &xRows, &rl, true) ||
      !a.bool_arg(9, "split", &split, true))
    return nullptr;
  if (!a.need("out", out, ol, "M*N", {M, N}) || !a.need("bias", bias, bl, "N", {N})) return nullptr;
  if (xRows) {
    if (!a.need("xRows", xRows, rl, "M", {M})) return nullptr;
    if (!a.indices("xRows", xRows, M, K > 0 ? int64_t(xl) / K : INT32_MAX + int64_t(1), "x.length/K")) return nullptr;
  } else if (!a.need("x", x, xl, "M*K", {M, K})) {
    return nullptr;
  }
  if (M == 0 || N == 0) return undefined(env);
  if (K == 0) {
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) out[m * N + n] = bias ? bias[n] : 0.f;
    return undefined(env);
  }
  const bool ok = dt >= 2 ? qgemm_blocks(a, t, dt == 3, x, M, xRows, K, 0, K, W, N, K, 0, (K + QK - 1) / QK, out, bias)
                 : dt == 0 ? gemm_blocks<true>(a, t, x, M, xRows, K, W, N, out, bias, split)
                           : gemm_blocks<false>(a, t, x, M, xRows, K, W, N, out, bias, false);
  return ok ? undefined(env) : nullptr;
}

// matmulCols(x, M, packed, N, K, dtype, k0, kLen, out, split?): out[M, N] = x[M, kLen] · W[:, k0 : k0 + kLen]ᵀ — one
// slice of a prepared weight's input features (DyLLM's per-head output projection of ΔV), read from the panels.
napi_value MatmulCols(napi_env env, napi_callback_info info) {
  Args a(env, info, "matmulCols");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *x, *out;
  size_t xl, ol;
  int64_t M, N, K, k0, kLen, kEnd;
  const void* W;
  int dt;
  bool split;
  if (!a.f32(0, "x", &x, &xl) || !a.int_arg(1, "M", &M) || !weight_args(a, 2, &N, &K, &W, &dt) ||
      !a.int_arg(6, "k0", &k0) || !a.int_arg(7, "kLen", &kLen) || !a.f32(8, "out", &out, &ol) ||
      !a.bool_arg(9, "split", &split, true))
    return nullptr;
  if (!checked_sum(k0, kLen, &kEnd) || kEnd > K) {
    a.range_error("columns [%lld, %lld + %lld) are outside the weight's %lld input features", (long long)k0,
                  (long long)k0, (long long)kLen, (long long)K);
    return nullptr;
  }
  if (dt == 0 && (k0 % 2 != 0 || (kLen % 2 != 0 && kEnd != K))) {
    a.range_error("bf16 weights are packed in input pairs; k0 (%lld) and kLen (%lld) must be even", (long long)k0,
                  (long long)kLen);
    return nullptr;
  }
  if (!a.need("x", x, xl, "M*kLen", {M, kLen}) || !a.need("out", out, ol, "M*N", {M, N})) return nullptr;
  if (M == 0 || N == 0) return undefined(env);
  if (kLen == 0) {
    std::fill(out, out + M * N, 0.f);
    return undefined(env);
  }
  if (dt >= 2) {  // the slice placed at column k0 of a zero row, quantised in the weight's groups [g0, g1)
    const int64_t g0 = k0 / QK, g1 = (kEnd + QK - 1) / QK;
    return qgemm_blocks(a, t, dt == 3, x, M, nullptr, kLen, k0 - g0 * QK, kLen, W, N, K, g0, g1 - g0, out, nullptr)
               ? undefined(env)
               : nullptr;
  }
  const bool ok = dt == 0 ? gemm_blocks<true>(a, t, x, M, nullptr, kLen, W, N, out, nullptr, split, K, k0)
                          : gemm_blocks<false>(a, t, x, M, nullptr, kLen, W, N, out, nullptr, false, K, k0);
  return ok ? undefined(env) : nullptr;
}

// gemm(a, M, K, b, N, out): out[M, N] = a[M, K] · b[K, N], fp32, both operands row-major and computed at run time
// (b is packed into 32-column panels here, then the f32 GEMM kernel runs as for a prepared weight).
napi_value Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "gemm");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float *x, *b, *out;
  size_t xl, bl, ol;
  int64_t M, K, N;
  if (!a.f32(0, "a", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "K", &K) || !a.f32(3, "b", &b, &bl) ||
      !a.int_arg(4, "N", &N) || !a.f32(5, "out", &out, &ol))
    return nullptr;
  if (!a.need("a", x, xl, "M*K", {M, K}) || !a.need("b", b, bl, "K*N", {K, N}) || !a.need("out", out, ol, "M*N", {M, N}))
    return nullptr;
  if (M == 0 || N == 0) return undefined(env);
  if (K == 0) {
    std::fill(out, out + M * N, 0.f);
    return undefined(env);
  }
  const int64_t panels = (N + NR - 1) / NR;  // K·N <= b.length, so the panels fit in size_t
  float* B = static_cast<float*>(tl_panels.get(size_t(panels * K * NR) * sizeof(float)));
  if (!B) {
    a.range_error("cannot allocate the packed %lldx%lld operand b", (long long)K, (long long)N);
    return nullptr;
  }
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
  return gemm_blocks<false>(a, t, x, M, nullptr, K, B, N, out, nullptr, false) ? undefined(env) : nullptr;
}

}  // namespace dyllm

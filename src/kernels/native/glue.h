// glue.h — what the N-API bindings share: the thread pool, run-time settings, the tier a binding is bound to,
// checked scratch memory, bf16 rounding and the weight panel size. The bindings (gemm.cc, attention.cc,
// dyllm_update.cc, stats.cc, rowwise.cc, bench.cc) are compiled for the baseline target, never with a tier's flags;
// they validate arguments (napi_args.h), split work over the pool and call the bound tier's single-threaded kernels.
#pragma once
#include <node_api.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels.h"
#include "napi_args.h"
#include "pool.h"

namespace dyllm {

// Set once by module.cc's Init (first load in the process).
extern int g_threads;
extern Pool* g_pool;         // g_threads - 1 workers; intentionally never destroyed
extern int64_t g_kc_units;   // k-units per GEMM cache block (env DYLLM_KC)
extern bool g_attn_blocked;  // blocked attention kernels (env DYLLM_ATTN_BLOCKED=0 turns them off)

template <class F>
inline void parallel_for(int64_t n, bool parallel, F&& f) {
  if (parallel && g_pool) g_pool->parallel_for(n, f);
  else
    for (int64_t i = 0; i < n; i++) f(i);
}

inline napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// The tier a binding was created for (Bind passes it as the callback data).
inline const TierOps& tier_of(const Args& a) { return *static_cast<const TierOps*>(a.data); }

constexpr size_t ALIGN = 64;
inline void* align_up(void* p) {
  return reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(p) + ALIGN - 1) & ~uintptr_t(ALIGN - 1));
}

// A growable 64-byte-aligned buffer; get() returns nullptr when the memory cannot be had (the binding then throws
// instead of aborting, as a failed std::vector growth would without exceptions). Use one per thread (thread_local).
struct Scratch {
  void* base = nullptr;
  size_t cap = 0;
  void* get(size_t bytes) {
    if (bytes > SIZE_MAX - ALIGN) return nullptr;
    if (cap < bytes + ALIGN) {
      std::free(base);
      base = std::malloc(bytes + ALIGN);
      cap = base ? bytes + ALIGN : 0;
      if (!base) return nullptr;
    }
    return align_up(base);
  }
  ~Scratch() { std::free(base); }
};

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

// Bytes of an N x K weight packed into 32-column panels (kernels.h); false when that exceeds 2^53 − 1.
inline bool packed_bytes(bool bf16, int64_t N, int64_t K, int64_t* bytes) {
  const int64_t panels = (N + NR - 1) / NR;
  const int64_t kdim = bf16 ? (K + 1) / 2 : K;  // k-units: pairs for bf16
  return checked_product({panels, kdim, NR, 4}, bytes);  // bf16: 2 values x 2 bytes per unit, f32: 4 bytes
}

// The version of the packed layouts prepare() writes (packed_bytes, pack_quant, Prepare in gemm.cc, kernels.h).
// Packed-weight cache files (src/load/pack-cache.ts) record it and are ignored when it differs: bump it with any
// change to the bytes prepare() returns for a given weight.
constexpr int kPackLayoutVersion = 1;

// Quantised weights (qgemm.cc; layouts in kernels.h). Bytes of a panel-packed int8 (q4 = false) or q4 weight; false
// when that exceeds 2^53 − 1.
bool quant_packed_bytes(bool q4, int64_t N, int64_t K, int64_t* bytes);
// Packs host arrays (int8: q int8 [N*K], scales f32 [N]; q4: q bytes [N*ceil(K/32)*16], scales bf16 [N*ceil(K/32)])
// into dst (quant_packed_bytes bytes).
void pack_quant(bool q4, const void* q, const void* scales, int64_t N, int64_t K, uint8_t* dst);
// The quantised product behind matmul and matmulCols: logical activation rows (lead zeros, n values of x's row
// xRows[m] or m at stride xK, zeros) against the weight groups [g0, g0 + G) of a packed weight of Kw input features.
// Throws (returns false) only when the packing buffers cannot be allocated.
bool qgemm_blocks(Args& a, const TierOps& t, bool q4, const float* x, int64_t M, const int32_t* xRows, int64_t xK,
                  int64_t lead, int64_t n, const void* W, int64_t N, int64_t Kw, int64_t g0, int64_t G, float* out,
                  const float* bias);

// The bindings, one per exported function (Bind and Init in module.cc register them).
napi_value Prepare(napi_env env, napi_callback_info info);
napi_value MapFile(napi_env env, napi_callback_info info);
napi_value Populate(napi_env env, napi_callback_info info);
napi_value Release(napi_env env, napi_callback_info info);
napi_value MapRegion(napi_env env, napi_callback_info info);
napi_value Checksum(napi_env env, napi_callback_info info);
napi_value PreparedBytes(napi_env env, napi_callback_info info);
napi_value PackLayout(napi_env env, napi_callback_info info);
// Zeroed memory for a prepared weight (mapfile.cc): an external ArrayBuffer, or a RangeError thrown and false.
bool new_weight_buffer(Args& a, int64_t bytes, napi_value* ab, void** data);
napi_value Matmul(napi_env env, napi_callback_info info);
napi_value MatmulCols(napi_env env, napi_callback_info info);
napi_value Gemm(napi_env env, napi_callback_info info);
napi_value Attention(napi_env env, napi_callback_info info);
napi_value AttentionDelta(napi_env env, napi_callback_info info);
napi_value AttentionRescale(napi_env env, napi_callback_info info);
napi_value CosineRows(napi_env env, napi_callback_info info);
napi_value LogitStats(napi_env env, napi_callback_info info);
napi_value Rmsnorm(napi_env env, napi_callback_info info);
napi_value Rope(napi_env env, napi_callback_info info);
napi_value SiluMul(napi_env env, napi_callback_info info);
napi_value Add(napi_env env, napi_callback_info info);
napi_value Peak(napi_env env, napi_callback_info info);
napi_value StreamRead(napi_env env, napi_callback_info info);
napi_value QuantizeWeight(napi_env env, napi_callback_info info);
napi_value QuantizeRows(napi_env env, napi_callback_info info);

}  // namespace dyllm

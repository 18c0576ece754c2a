// dyllm native kernels: the per-ISA tier interface.
//
// Each tier (portable, AVX2+FMA, AVX-512+BF16) lives in its own translation unit compiled with its own flags and
// exports one TierOps table. The N-API bindings (module.cc, gemm.cc, attention.cc, ..., see glue.h; compiled for
// baseline x86-64) own threading, packing, validation (napi_args.h) and dispatch; the tier functions are
// single-threaded and work on the ranges they are given. Tier-independent kernels are written once in *_generic.h
// and included by each tier, so they compile with that tier's flags.
//
// Weight layout (shared by every tier, produced once by prepare):
//   panels of NR = 32 output columns; panel p covers columns [32p, 32p+32) (zero padded past N).
//   bf16: panel-major, then k-pairs, then 32 columns, then the pair: B[p][kk][n][2]   (K padded to even)
//         -> one k-pair of a panel is 64 bf16 = 128 bytes = two zmm for vdpbf16ps.
//   f32:  B[p][k][n]  -> one k of a panel is 32 floats = 128 bytes.
// Activation packing (done by the glue, per call): row tiles of `mr` rows (the tier's register tile height):
//   bf16: A[tile][kk][mr] uint32 = (bf16(x[k+1]) << 16) | bf16(x[k]), RNE-rounded.
//   f32:  A[tile][k][mr] float.
//
// Quantised weights (the formats and their rounding: src/kernels/quant.ts, docs/quantization.md). K is padded with
// zeros to Kp = 32·G (G groups of QK = 32 input features). Panels of 32 output columns as above, zero padded past N:
//   int8: per group g: W[kq = 0..8][n = 0..32][4] int8 (1024 bytes: one k-quad of 32 columns is 128 bytes = two zmm
//         for vpdpbusd), then 32 int16 = −Σ_{k∈g} q[n][k] (64 bytes; the correction of unsigned activations);
//         after the G groups: 32 f32 row scales (128 bytes).                    -> Q8_GROUP_BYTES = 1088 per group
//   q4:   per group g: 8 chunks of 64 bytes, chunk c = 2j + h (j = 0..3, h = column half): byte 4i + b holds
//         q[16h + i][32g + 4j + b] in its low nibble and q[16h + i][32g + 4(j + 4) + b] in its high nibble
//         (one AND gives the k-quad j of 16 columns, a shift and an AND the k-quad j + 4), then 32 bf16 scales
//         (64 bytes).                                                           -> Q4_GROUP_BYTES = 576 per group
// Quantised activations (packed by the glue, per call): row tiles of `mrq` rows, per group g a block of 10·mrq
// uint32: [kq][mrq] = 4 int8 values of row r (XOR 0x80 each, i.e. q + 128 as uint8, when the tier sets q8_act_u8
// and the weight is int8), then [mrq] f32 scales dx, then [mrq] int32 = −8·Σ_{k∈g} xq (q4's zero-point correction).
#pragma once
#include <cstddef>
#include <cstdint>

namespace dyllm {

constexpr int NR = 32;
constexpr int QK = 32;                  // quantisation group along K
constexpr long Q8_GROUP_BYTES = 1088;   // int8 panel bytes per group (weights + correction sums)
constexpr long Q8_SCALE_BYTES = 128;    // int8 panel row scales
constexpr long Q4_GROUP_BYTES = 576;    // q4 panel bytes per group (nibbles + bf16 scales)
constexpr int QA_UNITS = 10;            // uint32 units per activation row per group (8 k-quads, scale, correction)

struct TierOps {
  const char* name;
  int mr;  // rows per register tile; A is packed with this stride

  // C[r*ldc + c] for r < rows, c < ncols (ncols <= 32) = (accumulate ? C : 0) + sum_kk A[kk][r] . B[kk][c] (+ bias[c])
  void (*gemm_bf16)(int rows, long kp, const uint32_t* A, const uint16_t* B, float* C, long ldc, int ncols,
                    int accumulate, const float* bias);
  void (*gemm_f32)(int rows, long k, const float* A, const float* B, float* C, long ldc, int ncols, int accumulate,
                   const float* bias);

  // One (query row, head): online softmax over Mk keys; k/v point at key 0 of the KV head, kvStride floats apart.
  // scratch: at least ATTN_BLOCK floats. Writes out[0..Dh) and, when lse != nullptr, *lse.
  void (*attn_row)(const float* q, const float* k, const float* v, long kvStride, long Mk, int Dh,
                   const uint8_t* mask, float scale, float* out, float* lse, float* scratch);

  void (*rmsnorm_row)(const float* x, long D, const float* w, float eps, float* out);
  // one row of nHeads heads; c/s point at the row's table entries (h = Dh/2 of each)
  void (*rope_row)(float* x, int nHeads, int Dh, const float* c, const float* s);
  void (*silu_mul)(const float* g, const float* u, long n, float* out);
  void (*add)(float* dst, const float* src, long n);

  // Microbenchmarks (single thread; return FLOP or bytes processed). nullptr where the tier lacks the unit.
  double (*peak_bf16)(long iters);
  double (*peak_fma)(long iters);
  double (*stream_read)(const float* p, long n, float* sink);

  // gemm_bf16 with compensated activations: A (hi) and Alo (lo = bf16(x − hi)) share B loads. nullptr: the glue
  // runs gemm_bf16 twice.
  void (*gemm_bf16_comp)(int rows, long kp, const uint32_t* A, const uint32_t* Alo, const uint16_t* B, float* C,
                         long ldc, int ncols, int accumulate, const float* bias);

  // Softmax statistics of one (query row, head) over Mk keys: s[j] = q·k_j·scale (−inf where masked),
  // *m = max_j s[j], *z = Σ_j exp(s[j] − m) (0 when every key is masked).
  void (*score_row)(const float* q, const float* k, long kvStride, long Mk, int Dh, const uint8_t* mask, float scale,
                    float* s, float* m, float* z);

  // Attention of up to 4 query rows of one head against Mk keys, keys given transposed: KT[d*ldk + j]
  // (ldk ≥ Mk rounded up to 64, zero padded). q row r at q + r*qs; v key j at v + j*kvs; out row r at out + r*os;
  // lse (optional) row r at lse[r*ls]. s: scratch of 4*ldk floats. Dh must be a multiple of 16. nullptr: the glue
  // uses attn_row.
  void (*attn_block4)(const float* q, long qs, int nq, const float* KT, long ldk, const float* v, long kvs, long Mk,
                      int Dh, const uint8_t* mask, float scale, float* out, long os, float* lse, long ls, float* s);

  // Scores of up to 4 query rows of one head (same layout as attn_block4): s[r*ldk + j] = q_r·k_j·scale (−inf where
  // masked), m[r] = max_j, z[r] = Σ_j exp(s − m). nullptr: the glue uses score_row.
  void (*score_block4)(const float* q, long qs, int nq, const float* KT, long ldk, long Mk, int Dh, const uint8_t* mask,
                       float scale, float* s, float* m, float* z);

  // Statistics of one logits row r[0..V), V >= 1, as the float64 reference computes them: *argmax = the first index
  // of the maximum (NaN never wins), *p1 = 1 / Σ_v exp(r[v] − max), *p2 = exp(second − max) · p1 where second is the
  // largest value at another index (an equal one counts; 0 when there is none), and, when want_entropy,
  // *ne = Σ_v p_v·log(p_v + 1e-10). exp/log are evaluated in double (≈1 ulp), so the results agree with the
  // reference to ~1e-14 relative; rows with NaN or an infinite maximum give NaN probabilities like the reference.
  void (*logit_row_stats)(const float* r, long V, int want_entropy, int32_t* argmax, double* p1, double* p2,
                          double* ne);

  // DyLLM's column update of one (query row, head): o[0..Dh) += Σ_c p_c·dv_c, p_c = exp(s[cols[c]] − m) / z over the
  // row's scores s (max m, Σexp z over all keys); hidden keys (s = −inf) and rows with every key hidden (m = −inf or
  // z ≤ 0) contribute nothing. dv_c at dv + c·kvs. pr (optional) receives each p_c (0 where nothing contributes).
  void (*delta_cols)(float* o, const float* s, float m, float z, const int32_t* cols, long nc, const float* dv, long kvs,
                     int Dh, float* pr);

  // ---- quantised weights (layouts above) ----
  int mrq;        // rows per register tile of gemm_q8 / gemm_q4 (the activation tiles' height)
  int q8_act_u8;  // gemm_q8 takes activations as q + 128 (vpdpbusd's unsigned operand) and corrects with the sums

  // Activation quantisation of one logical row of 32·G values: `lead` zeros, x[0..n), zeros. Per group: the scale
  // d[g], the values q[32g..32g+32) and qsum[g] = Σ q, exactly as quantizeActivationRow in src/kernels/quant.ts.
  void (*quant_row)(const float* x, long lead, long n, long G, int8_t* q, float* d, int32_t* qsum);

  // C[r*ldc + c] for r < rows, c < ncols = (accumulate ? C : 0) + Σ_{g<G} dx[r][g]·I[r][c][g] · colscale[c] (+ bias)
  // with I the integer dot product of group g. A: the tile's activation blocks from the first group (10·mrq uint32
  // per group); B: the panel at the first group (Q8_GROUP_BYTES per group); colscale: the panel's row scales.
  void (*gemm_q8)(int rows, long G, const uint32_t* A, const uint8_t* B, const float* colscale, float* C, long ldc,
                  int ncols, int accumulate, const float* bias);
  // The same for q4: Σ_g dx[r][g]·d[c][g]·I[r][c][g] (B: Q4_GROUP_BYTES per group, the scales inside).
  void (*gemm_q4)(int rows, long G, const uint32_t* A, const uint8_t* B, float* C, long ldc, int ncols, int accumulate,
                  const float* bias);
};

constexpr int ATTN_BLOCK = 64;

extern const TierOps tier_portable;
#if defined(__x86_64__) || defined(_M_X64)
extern const TierOps tier_avx2;
extern const TierOps tier_avx512;
#define DYLLM_X86 1
#endif

}  // namespace dyllm

// stats.cc — the logitStats binding: per-row statistics of logits[M, V] for the samplers (argmax, the top two
// softmax probabilities, optionally Σ p·log p), one row per task; the tier's logit_row_stats (logit_stats_generic.h)
// evaluates exp/log in double so the statistics match the float64 reference.
#include "glue.h"

namespace dyllm {

// logitStats(logits, M, V, argmax: Int32Array, p1: Float64Array, p2: Float64Array, negEntropy?: Float64Array)
napi_value LogitStats(napi_env env, napi_callback_info info) {
  Args a(env, info, "logitStats");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  float* x;
  int32_t* am;
  double *p1, *p2, *ne;
  size_t xl, aml, p1l, p2l, nel;
  int64_t M, V;
  // V <= 2^31 − 1: the argmax is an Int32Array index.
  if (!a.f32(0, "logits", &x, &xl) || !a.int_arg(1, "M", &M) || !a.int_arg(2, "V", &V, 1, kMaxInt32) ||
      !a.i32(3, "argmax", &am, &aml) || !a.f64(4, "p1", &p1, &p1l) || !a.f64(5, "p2", &p2, &p2l) ||
      !a.f64(6, "negEntropy", &ne, &nel, true))
    return nullptr;
  if (!a.need("logits", x, xl, "M*V", {M, V}) || !a.need("argmax", am, aml, "M", {M}) ||
      !a.need("p1", p1, p1l, "M", {M}) || !a.need("p2", p2, p2l, "M", {M}) || !a.need("negEntropy", ne, nel, "M", {M}))
    return nullptr;
  parallel_for(M, double(M) * double(V) >= 2e5, [&](int64_t m) {
    t.logit_row_stats(x + m * V, long(V), ne != nullptr, am + m, p1 + m, p2 + m, ne ? ne + m : nullptr);
  });
  return undefined(env);
}

}  // namespace dyllm

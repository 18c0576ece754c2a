// The plain C++ DyLLM column update (TierOps::delta_cols), included by the tiers without a hand-vectorised one; each
// includes it inside its own anonymous namespace, so the compiler vectorises it for that tier's flags.
inline void delta_cols(float* o, const float* s, float m, float z, const int32_t* cols, long nc, const float* dv, long kvs,
                       int Dh, float* pr) {
  if (pr)
    for (long c = 0; c < nc; c++) pr[c] = 0.f;
  if (m == -INFINITY || z <= 0.f) return;
  const float invz = 1.f / z;
  for (long c = 0; c < nc; c++) {
    const float sj = s[cols[c]];
    if (sj == -INFINITY) continue;
    const float p = std::exp(sj - m) * invz;
    if (pr) pr[c] = p;
    const float* dvr = dv + c * kvs;
    for (int d = 0; d < Dh; d++) o[d] += p * dvr[d];
  }
}

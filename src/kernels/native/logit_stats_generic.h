// logit_stats_generic.h — TierOps::logit_row_stats, written once for every tier. A tier includes this header inside its
// own anonymous namespace after defining `struct LogitLanes` (its vector types and primitives, listed below), so the
// passes are compiled with that tier's flags. Semantics (kernels.h): the float64 reference's, exp/log in double.
//
// Pass 1: each of the S·W float lanes keeps its max, the iteration where it first reached it (strict >, so the lowest
// index wins ties; NaN never wins) and its second value (the largest at another position, an equal one included);
// the lanes are then combined in scalar code. Pass 2: z = Σ exp(x − max) in double lanes (an infinite or absent
// maximum makes every x − max NaN or −inf, hence z NaN, exactly as in the reference). Pass 3 (entropy only):
// Σ p·log(p + 1e-10) with p = exp(x − max) / z (p = 0 contributes 0). The row stays in L2 after pass 1.
//
// LogitLanes provides: W (float lanes), S (independent pass-1 accumulators), types F (W floats), I (W int32 lane
// indices), M (a lane mask from a compare), D (W/2 doubles), Ctx (per-row constants such as tables), and
//   F ninf(); F load(const float*); F load_tail(const float*, long n)   (the first n < W values, the rest −inf)
//   M gt(F a, F b) (a > b, ordered); F sel(M, F a, F b) and I seli(M, I a, I b) (where the mask is set: b, else a)
//   I izero(); I iinc(I) (+1 in every lane); void store(float*, F); void storei(int32_t*, I)
//   void load_sub(const float* r, long n, D mx, D* lo, D* hi)   (W floats at r, n < W: the rest −inf, minus mx)
//   D dset(double); D dadd(D, D); D dmul(D, D); D dfma(D a, D b, D c) (a·b + c); double reduce(D)
//   D exp_le0(D d, const Ctx&) (exp for d <= 0, NaN stays NaN); D log(D y, const Ctx&) (normal positive y)

void logit_row_stats(const float* r, long V, int want_entropy, int32_t* argmax, double* p1, double* p2, double* ne) {
  using L = LogitLanes;
  constexpr int S = L::S, W = L::W;
  typename L::F m1[S], m2[S];
  typename L::I it[S];
  for (int s = 0; s < S; s++) m1[s] = m2[s] = L::ninf(), it[s] = L::izero();
  typename L::I cnt = L::izero();
  auto step = [&](int s, typename L::F x) {
    const typename L::M gt = L::gt(x, m1[s]), gt2 = L::gt(x, m2[s]);
    m2[s] = L::sel(gt, L::sel(gt2, m2[s], x), m1[s]);
    m1[s] = L::sel(gt, m1[s], x);
    it[s] = L::seli(gt, it[s], cnt);
  };
  long v = 0;
  for (; v + W * S <= V; v += W * S) {
#pragma GCC unroll 4
    for (int s = 0; s < S; s++) step(s, L::load(r + v + W * s));
    cnt = L::iinc(cnt);
  }
  for (int s = 0; s < S && v + W * s < V; s++) step(s, L::load_tail(r + v + W * s, V - v - W * s));
  alignas(64) float f1[S][W], f2[S][W];
  alignas(64) int32_t fi[S][W];
  for (int s = 0; s < S; s++) {
    L::store(f1[s], m1[s]);
    L::store(f2[s], m2[s]);
    L::storei(fi[s], it[s]);
  }
  float mx = -INFINITY, second = -INFINITY;
  long best = 0;
  int bs = -1, bl = -1;
  for (int s = 0; s < S; s++)
    for (int l = 0; l < W; l++) {
      if (!(f1[s][l] > -INFINITY)) continue;  // the lane never held a value
      const long idx = long(fi[s][l]) * W * S + W * s + l;
      if (f1[s][l] > mx || (f1[s][l] == mx && idx < best)) mx = f1[s][l], best = idx, bs = s, bl = l;
    }
  for (int s = 0; s < S; s++)
    for (int l = 0; l < W; l++) {
      if (f2[s][l] > second) second = f2[s][l];
      if ((s != bs || l != bl) && f1[s][l] > second) second = f1[s][l];
    }

  const typename L::Ctx ctx;
  const typename L::D mxd = L::dset(double(mx));
  typename L::D z0 = L::dset(0.0), z1 = L::dset(0.0);
  for (v = 0; v < V; v += W) {
    typename L::D a, b;
    L::load_sub(r + v, V - v, mxd, &a, &b);
    z0 = L::dadd(z0, L::exp_le0(a, ctx));
    z1 = L::dadd(z1, L::exp_le0(b, ctx));
  }
  const double z = L::reduce(L::dadd(z0, z1));
  *argmax = int32_t(best);
  *p1 = 1.0 / z;
  *p2 = second == -INFINITY ? 0.0 : std::exp(double(second) - double(mx)) / z;
  if (!want_entropy) return;

  const typename L::D rz = L::dset(1.0 / z), tiny = L::dset(1e-10);
  typename L::D h0 = L::dset(0.0), h1 = L::dset(0.0);
  for (v = 0; v < V; v += W) {
    typename L::D a, b;
    L::load_sub(r + v, V - v, mxd, &a, &b);
    const typename L::D pa = L::dmul(L::exp_le0(a, ctx), rz), pb = L::dmul(L::exp_le0(b, ctx), rz);
    h0 = L::dfma(pa, L::log(L::dadd(pa, tiny), ctx), h0);
    h1 = L::dfma(pb, L::log(L::dadd(pb, tiny), ctx), h1);
  }
  *ne = L::reduce(L::dadd(h0, h1));
}

// bench.cc — the microbenchmark bindings behind `npm run bench:kernels`: peak (vdpbf16ps / FMA throughput on n
// threads) and streamRead (read bandwidth over a buffer). They start their own threads (exactly n concurrent
// workers, unlike the pool), so thread counts, iterations and buffer sizes are bounded.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "glue.h"

namespace dyllm {
namespace {

constexpr int64_t kMaxBenchThreads = 256;
constexpr int64_t kMaxPeakIters = int64_t(1) << 30;     // a few seconds per thread
constexpr int64_t kMaxStreamBytes = int64_t(1) << 30;   // the benchmark's 1 GiB
constexpr int64_t kMaxStreamReps = 1000;

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Runs f(0..n-1) on n threads at once (fresh threads: the microbenchmarks need exactly n concurrent workers).
template <class F>
void run_on_threads(int n, F&& f) {
  std::vector<std::thread> ts;
  for (int i = 1; i < n; i++) ts.emplace_back([&f, i] { f(i); });
  f(0);
  for (auto& th : ts) th.join();
}

}  // namespace

// peak(kind: 'bf16'|'fma', threads, iters) -> GFLOP/s of `iters` iterations of the tier's independent chains.
napi_value Peak(napi_env env, napi_callback_info info) {
  Args a(env, info, "peak");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  int kind = 0;
  int64_t nt, iters;
  if (!a.choice_arg(0, "kind", {"bf16", "fma"}, &kind) || !a.int_arg(1, "threads", &nt, 1, kMaxBenchThreads) ||
      !a.int_arg(2, "iters", &iters, 0, kMaxPeakIters))
    return nullptr;
  double (*fn)(long) = kind == 0 ? t.peak_bf16 : t.peak_fma;
  if (!fn) {
    a.range_error("tier %s has no '%s' unit", t.name, kind == 0 ? "bf16" : "fma");
    return nullptr;
  }
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

// streamRead(bytes, threads, reps) -> GB/s of each of `reps` passes over a `bytes` buffer.
napi_value StreamRead(napi_env env, napi_callback_info info) {
  Args a(env, info, "streamRead");
  if (!a.ok) return nullptr;
  const TierOps& t = tier_of(a);
  int64_t bytes, nt, reps;
  if (!a.int_arg(0, "bytes", &bytes, 4096, kMaxStreamBytes) || !a.int_arg(1, "threads", &nt, 1, kMaxBenchThreads) ||
      !a.int_arg(2, "reps", &reps, 0, kMaxStreamReps))
    return nullptr;
  if (!t.stream_read) {
    a.range_error("tier %s has no stream kernel", t.name);
    return nullptr;
  }
  const int64_t n = bytes / 4 / 1024 * 1024;
  float* buf = static_cast<float*>(std::aligned_alloc(4096, size_t(n) * 4));
  if (!buf) {
    a.range_error("cannot allocate %lld bytes", (long long)(n * 4));
    return nullptr;
  }
  std::vector<float> sinks(size_t(nt) * 16);
  run_on_threads(int(nt), [&](int ti) {
    const int64_t b = n * ti / nt, e = n * (ti + 1) / nt;
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

}  // namespace dyllm

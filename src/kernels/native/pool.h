// A small persistent thread pool for the kernels (no OpenMP dependency).
//
// parallel_for(n, f) runs f(i) for i in [0, n) on the calling thread plus the pool's workers. Chunks are claimed
// from one atomic ticket = (job generation << 32 | next chunk), so the call returns as soon as every chunk is done:
// a worker that the OS has preempted (a busy 2-core machine, V8's GC threads) never makes the caller wait for it
// unless it is in the middle of a chunk. Workers spin briefly after each job, then sleep on a condition variable.
// Concurrent callers (worker_threads) are serialised by a try-lock: a second caller runs its loop inline.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#define DYLLM_PAUSE() _mm_pause()
#else
#define DYLLM_PAUSE() std::this_thread::yield()
#endif

namespace dyllm {

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; i++) threads_.emplace_back([this] { worker(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_.store(true);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int size() const { return int(threads_.size()) + 1; }

  template <class F>
  void parallel_for(int64_t n, F&& f) {
    if (n <= 0) return;
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (n == 1 || threads_.empty() || !busy.owns_lock()) {
      for (int64_t i = 0; i < n; i++) f(i);
      return;
    }
    using Fn = typename std::remove_reference<F>::type;
    fn_ = [](void* ctx, int64_t i) { (*static_cast<Fn*>(ctx))(i); };
    ctx_ = const_cast<void*>(static_cast<const void*>(&f));
    // Close the previous job before touching n_: a worker still inside it may have read its ticket (gen, k) with k
    // past its end and may now read the new n_; with the ticket saturated its claim (a CAS on (gen, k)) fails.
    // Without this it could claim index k of the old generation, run a stale or the new job's function on it and
    // count it as done — the caller would return early while workers still ran (seen as rare crashes).
    const uint64_t prev = ticket_.load(std::memory_order_relaxed);
    ticket_.store(prev | 0xffffffffull);
    n_.store(n, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint64_t gen = (prev >> 32) + 1;
    ticket_.store(gen << 32);  // seq_cst: pairs with the sleeper count below (store-load ordering)
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> g(mu_);
      cv_.notify_all();
    }
    work(gen);
    for (int spins = 0; done_.load(std::memory_order_acquire) < n; spins++) {
      if (spins < 4096) DYLLM_PAUSE();
      else std::this_thread::yield();
    }
  }

 private:
  // Claims and runs chunks of job `gen` until none are left (or the job is gone).
  void work(uint64_t gen) {
    for (;;) {
      uint64_t t = ticket_.load(std::memory_order_acquire);
      if ((t >> 32) != gen) return;
      const int64_t i = int64_t(t & 0xffffffffu);
      const int64_t n = n_.load(std::memory_order_relaxed);
      if (i >= n) return;
      if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
      fn_(ctx_, i);  // job `gen` stays alive until done_ reaches n
      done_.fetch_add(1, std::memory_order_release);
    }
  }
  void worker() {
    uint64_t seen = 0;
    for (;;) {
      // spin ~200 us for the next job, then sleep
      auto t0 = std::chrono::steady_clock::now();
      uint64_t gen;
      for (int k = 0;; k++) {
        gen = ticket_.load(std::memory_order_acquire) >> 32;
        if (gen != seen || stop_flag()) break;
        DYLLM_PAUSE();
        if ((k & 255) == 255 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200)) {
          std::unique_lock<std::mutex> g(mu_);
          sleepers_.fetch_add(1);  // seq_cst, then the predicate re-reads the ticket
          cv_.wait(g, [&] { return stop_.load() || (ticket_.load() >> 32) != seen; });
          sleepers_.fetch_sub(1);
          t0 = std::chrono::steady_clock::now();
        }
      }
      if (stop_flag()) return;
      seen = gen;
      work(gen);
    }
  }
  bool stop_flag() { return stop_.load(std::memory_order_relaxed); }

  std::vector<std::thread> threads_;
  std::mutex run_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int64_t> done_{0};
  void (*fn_)(void*, int64_t) = nullptr;  // written before the ticket is published, read after a successful claim
  void* ctx_ = nullptr;
  std::atomic<int64_t> n_{0};
};

}  // namespace dyllm

// ThreadPool: size() - 1 fixed worker threads plus the calling thread.
// A ParallelFor publishes the job and bumps a generation counter; workers that are spinning see
// it within a few hundred nanoseconds, sleeping ones are woken through the condvar. Workers spin
// only for kSpin after their last job, so an idle engine does not burn the CPU.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "cpu/gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HS_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define HS_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define HS_CPU_RELAX() std::this_thread::yield()
#endif

namespace hs::cpu {
namespace {

constexpr auto kSpin = std::chrono::microseconds(50);

// Chunk `i` of `parts` over [0, n): contiguous, sizes differ by at most one.
inline void ChunkOf(int n, int parts, int i, int* begin, int* end) {
  const int base = n / parts, extra = n % parts;
  *begin = i * base + (i < extra ? i : extra);
  *end = *begin + base + (i < extra ? 1 : 0);
}

// Spins until pred() or kSpin elapsed; true when pred() held.
template <class Pred>
bool SpinUntil(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    HS_CPU_RELAX();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return pred();
  }
}

}  // namespace

struct ThreadPool::Impl {
  int size = 1;
  std::vector<std::thread> workers;

  std::mutex mu;
  std::condition_variable work_cv;  // workers wait here for a new generation or stop
  std::condition_variable done_cv;  // the caller waits here for pending == 0
  std::atomic<uint64_t> generation{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> busy{false};  // a ParallelFor is in progress

  // The current job, written by the caller before it bumps `generation` (release) and read by
  // workers after they observe the new generation (acquire).
  const std::function<void(int, int)>* fn = nullptr;
  int n = 0;
  std::atomic<int> pending{0};
  std::exception_ptr error;  // first exception from a worker; guarded by mu

  void Worker(int index) {
    uint64_t seen = 0;
    for (;;) {
      auto fresh = [&] {
        return generation.load(std::memory_order_acquire) != seen || stop.load(std::memory_order_acquire);
      };
      if (!SpinUntil(fresh)) {
        std::unique_lock<std::mutex> lk(mu);
        work_cv.wait(lk, fresh);
      }
      if (stop.load(std::memory_order_acquire)) return;
      seen = generation.load(std::memory_order_acquire);
      int b, e;
      ChunkOf(n, size, index, &b, &e);
      if (b < e) {
        try {
          (*fn)(b, e);
        } catch (...) {
          std::lock_guard<std::mutex> lk(mu);
          if (!error) error = std::current_exception();
        }
      }
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // Taking the lock orders this notify after the caller's predicate check (no lost wake-up).
        std::lock_guard<std::mutex> lk(mu);
        done_cv.notify_one();
      }
    }
  }
};

ThreadPool::ThreadPool(int threads) : impl_(new Impl) {
  if (threads <= 0) threads = (int)std::thread::hardware_concurrency();
  if (threads <= 0) threads = 1;
  impl_->size = threads;
  try {
    for (int i = 1; i < threads; ++i) impl_->workers.emplace_back([this, i] { impl_->Worker(i); });
  } catch (...) {
    // Could not start every thread: shut down the ones that did start, then report.
    impl_->stop.store(true, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(impl_->mu);
      impl_->work_cv.notify_all();
    }
    for (auto& t : impl_->workers) t.join();
    delete impl_;
    throw;
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    impl_->stop.store(true, std::memory_order_release);
    impl_->work_cv.notify_all();
  }
  for (auto& t : impl_->workers) t.join();
  delete impl_;
}

int ThreadPool::size() const { return impl_->size; }

void ThreadPool::ParallelFor(int n, const std::function<void(int, int)>& fn) {
  if (n <= 0) return;
  Impl& p = *impl_;
  bool expected = false;
  if (p.size == 1 || n == 1 || !p.busy.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    fn(0, n);  // single thread, trivial, nested or concurrent call: run inline
    return;
  }
  p.fn = &fn;
  p.n = n;
  p.error = nullptr;
  p.pending.store(p.size - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(p.mu);
    p.generation.fetch_add(1, std::memory_order_release);
    p.work_cv.notify_all();
  }
  std::exception_ptr mine;
  int b, e;
  ChunkOf(n, p.size, 0, &b, &e);
  try {
    if (b < e) fn(b, e);
  } catch (...) {
    mine = std::current_exception();
  }
  auto done = [&] { return p.pending.load(std::memory_order_acquire) == 0; };
  if (!SpinUntil(done)) {
    std::unique_lock<std::mutex> lk(p.mu);
    p.done_cv.wait(lk, done);
  }
  std::exception_ptr theirs;
  {
    std::lock_guard<std::mutex> lk(p.mu);
    theirs = p.error;
    p.error = nullptr;
  }
  p.fn = nullptr;
  p.busy.store(false, std::memory_order_release);
  if (mine) std::rethrow_exception(mine);
  if (theirs) std::rethrow_exception(theirs);
}

}  // namespace hs::cpu

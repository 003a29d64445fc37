//===- Parallel.cpp - the CPU backend's worker pool -------------*- C++ -*-===//
//
// parallelFor over a small persistent pool: DIFFRT_NUM_THREADS threads in all
// (default: the hardware's), the calling thread being one of them. Kernels
// call parallelFor many times per layer, so workers are started once and
// sleep on a condition variable between jobs rather than being spawned per
// call. OpenBLAS keeps its own threads; this pool runs everything else.
//
//===----------------------------------------------------------------------===//

#include "Internal.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace diffrt::cpu {
namespace {

using Body = std::function<void(int64_t, int64_t)>;

/// Set while a thread runs a chunk: a parallelFor issued from inside a body
/// runs inline, since the pool is busy with the enclosing job and waiting
/// for it would deadlock.
thread_local bool tInsideJob = false;

int64_t configuredThreads() {
  const char *env = std::getenv("DIFFRT_NUM_THREADS");
  if (env == nullptr || *env == '\0') {
    unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int64_t>(hw);
  }
  char *end = nullptr;
  long long value = std::strtoll(env, &end, 10);
  if (*end != '\0' || value < 1 || value > 4096)
    fail("DIFFRT_NUM_THREADS='", env, "' is not a thread count in [1, 4096]");
  return value;
}

/// One parallelFor call. Lives on the caller's stack; the caller leaves only
/// once no worker holds a pointer to it.
struct Job {
  const Body *body = nullptr;
  int64_t n = 0, chunks = 0;
  std::atomic<int64_t> next{0};
  int64_t workersInside = 0; // guarded by Pool::mutex_
  std::exception_ptr error;  // guarded by Pool::mutex_

  /// Chunk i is [i·n/chunks, (i+1)·n/chunks): every chunk has at least
  /// floor(n/chunks) >= grain elements.
  void runChunks(std::mutex &mutex) {
    tInsideJob = true;
    for (;;) {
      int64_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= chunks)
        break;
      int64_t begin = i * n / chunks, end = (i + 1) * n / chunks;
      try {
        (*body)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error)
          error = std::current_exception();
        next.store(chunks, std::memory_order_relaxed);
      }
    }
    tInsideJob = false;
  }
};

class Pool {
public:
  explicit Pool(int64_t threads) : threads_(threads) {
    for (int64_t i = 1; i < threads; ++i)
      workers_.emplace_back([this] { workerLoop(); });
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread &t : workers_)
      t.join();
  }

  int64_t threads() const { return threads_; }

  /// Returns false, doing nothing, when another thread's job holds the pool.
  bool tryRun(int64_t n, int64_t grain, const Body &body) {
    std::unique_lock<std::mutex> submit(submit_, std::try_to_lock);
    if (!submit.owns_lock())
      return false;
    // Four chunks per thread let threads that finish early (or start late,
    // while OpenBLAS's threads still hold a core) take over the remainder.
    int64_t chunks = std::min(n / grain, threads_ * 4);
    Job job;
    job.body = &body;
    job.n = n;
    job.chunks = std::max<int64_t>(chunks, 1);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      current_ = &job;
      ++generation_;
    }
    wake_.notify_all();
    job.runChunks(mutex_);
    std::exception_ptr error;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return job.workersInside == 0; });
      current_ = nullptr;
      error = job.error;
    }
    if (error)
      std::rethrow_exception(error);
    return true;
  }

private:
  void workerLoop() {
    uint64_t seen = 0;
    for (;;) {
      Job *job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || (current_ != nullptr && generation_ != seen); });
        if (stop_)
          return;
        seen = generation_;
        job = current_;
        ++job->workersInside;
      }
      job->runChunks(mutex_);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (--job->workersInside == 0)
          done_.notify_all();
      }
    }
  }

  int64_t threads_;
  std::vector<std::thread> workers_;
  std::mutex submit_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Job *current_ = nullptr;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

Pool &pool() {
  static Pool instance(configuredThreads());
  return instance;
}

} // namespace

int64_t detail::poolThreads() { return pool().threads(); }

void parallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)> &body) {
  if (n <= 0)
    return;
  grain = std::max<int64_t>(grain, 1);
  if (n <= grain || tInsideJob) {
    body(0, n);
    return;
  }
  Pool &p = pool();
  if (p.threads() == 1 || !p.tryRun(n, grain, body))
    body(0, n);
}

} // namespace diffrt::cpu

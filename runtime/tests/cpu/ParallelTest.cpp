//===- ParallelTest.cpp - tests of the CPU backend's parallelFor ----------===//
//
// parallelFor must hand out every index exactly once in chunks of at least
// `grain`, run small ranges and nested calls inline, survive exceptions and
// callers on several threads at once: every other kernel's correctness
// rests on it.
//
//===----------------------------------------------------------------------===//

#include "TestUtil.h"

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace diffrt::cpu::testing {
namespace {

TEST(CpuParallel, CoversEveryIndexOnceInChunksOfAtLeastGrain) {
  Rng rng;
  SCOPED_TRACE(rng.trace());
  for (int trial = 0; trial < 20; ++trial) {
    int64_t n = rng.integer(1, 200000), grain = rng.integer(1, 5000);
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::mutex mutex;
    std::vector<int64_t> lengths;
    parallelFor(n, grain, [&](int64_t b, int64_t e) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        lengths.push_back(e - b);
      }
      for (int64_t i = b; i < e; ++i)
        hits[static_cast<size_t>(i)].fetch_add(1);
    });
    int64_t wrong = 0;
    for (auto &h : hits)
      wrong += h.load() != 1;
    EXPECT_EQ(wrong, 0) << "n " << n << " grain " << grain;
    for (int64_t len : lengths)
      EXPECT_GE(len, std::min(n, grain)) << "n " << n << " grain " << grain;
  }
}

TEST(CpuParallel, SmallRangesRunInlineOnTheCaller) {
  std::thread::id caller = std::this_thread::get_id();
  int calls = 0;
  parallelFor(100, 100, [&](int64_t b, int64_t e) {
    ++calls;
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 100);
    EXPECT_EQ(std::this_thread::get_id(), caller);
  });
  EXPECT_EQ(calls, 1);
  parallelFor(0, 1, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 1) << "an empty range must not call the body";
}

TEST(CpuParallel, NestedCallsComplete) {
  constexpr int64_t kOuter = 64, kInner = 1000;
  std::vector<std::atomic<int>> hits(kOuter * kInner);
  parallelFor(kOuter, 1, [&](int64_t b, int64_t e) {
    for (int64_t o = b; o < e; ++o)
      parallelFor(kInner, 10, [&](int64_t ib, int64_t ie) {
        for (int64_t i = ib; i < ie; ++i)
          hits[static_cast<size_t>(o * kInner + i)].fetch_add(1);
      });
  });
  int64_t wrong = 0;
  for (auto &h : hits)
    wrong += h.load() != 1;
  EXPECT_EQ(wrong, 0);
}

TEST(CpuParallel, RethrowsTheBodysExceptionAndStaysUsable) {
  EXPECT_THROW(parallelFor(100000, 10,
                           [&](int64_t b, int64_t e) {
                             if (b <= 77777 && 77777 < e)
                               throw std::runtime_error("chunk failed");
                           }),
               std::runtime_error);
  std::atomic<int64_t> total{0};
  parallelFor(100000, 10, [&](int64_t b, int64_t e) { total += e - b; });
  EXPECT_EQ(total.load(), 100000);
}

TEST(CpuParallel, ConcurrentCallersEachGetTheirWholeRange) {
  constexpr int kCallers = 4, kRounds = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int c = 0; c < kCallers; ++c)
    threads.emplace_back([&, c] {
      for (int round = 0; round < kRounds; ++round) {
        int64_t n = 1000 + 37 * c + round;
        std::atomic<int64_t> sum{0};
        parallelFor(n, 16, [&](int64_t b, int64_t e) {
          int64_t local = 0;
          for (int64_t i = b; i < e; ++i)
            local += i;
          sum += local;
        });
        if (sum.load() != n * (n - 1) / 2)
          ++failures;
      }
    });
  for (std::thread &t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
}

} // namespace
} // namespace diffrt::cpu::testing

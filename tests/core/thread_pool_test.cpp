// The CPU thread pool (src/core/thread_pool.h): every index runs exactly once whatever the grain and the load, an
// exception reaches the caller, nested loops run inline, and the thread count can be set only before it starts.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "core/thread_pool.h"
#include "test_util.h"

namespace wick {
namespace {

TEST(ThreadPool, EveryIndexRunsOnceOverManyLoopsInARow) {
  // Loops microseconds apart (as a model's pass runs them): the workers poll for the next one between them.
  for (int round = 0; round < 2000; ++round) {
    const int64_t n = 1 + round % 97;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    parallel_for(n, 1 + round % 5, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) hits[size_t(i)].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "round " << round << " index " << i;
  }
}

TEST(ThreadPool, AnExceptionReachesTheCallerAndThePoolGoesOn) {
  EXPECT_THROW(parallel_for(64, 1,
                            [](int64_t a, int64_t) {
                              if (a >= 32) throw std::runtime_error("chunk failed");
                            }),
               std::runtime_error);
  std::atomic<int64_t> sum{0};
  parallel_for(1000, 10, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) sum += i;
  });
  EXPECT_EQ(sum.load(), 999 * 1000 / 2);
}

TEST(ThreadPool, NestedLoopsRunInline) {
  std::atomic<int64_t> count{0};
  parallel_for(8, 1, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) parallel_for(100, 1, [&](int64_t c, int64_t d) { count += d - c; });
  });
  EXPECT_EQ(count.load(), 800);
}

// The pool has started (the tests above): its own count is accepted, another is bad input naming --threads.
TEST(ThreadPool, TheCountIsSetOnlyBeforeThePoolStarts) {
  const int n = thread_count();
  EXPECT_GE(n, 1);
  set_thread_count(n);
  EXPECT_WICK_ERROR(set_thread_count(n + 1), ErrorKind::bad_input, "--threads");
  EXPECT_WICK_ERROR(set_thread_count(0), ErrorKind::bad_input, "--threads");
  EXPECT_EQ(thread_count(), n);
}

}  // namespace
}  // namespace wick

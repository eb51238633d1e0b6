// DeviceTurns: one holder at a time, and turns given in the order they were asked for, so two threads that keep
// asking alternate instead of one starving the other.
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "wick/device_turns.h"

namespace wick {
namespace {

TEST(DeviceTurns, OneHolderAtATime) {
  DeviceTurns turns;
  std::atomic<int> inside{0}, most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        const std::lock_guard turn(turns);
        const int now = ++inside;
        most = std::max(most.load(), now);
        --inside;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(most.load(), 1);
}

TEST(DeviceTurns, TwoBusyThreadsAlternate) {
  DeviceTurns turns;
  std::mutex log_mu;
  std::vector<int> log;
  std::atomic<int> ready{0};
  const auto worker = [&](int who) {
    ++ready;
    while (ready.load() < 2) std::this_thread::yield();
    for (int i = 0; i < 200; ++i) {
      const std::lock_guard turn(turns);
      const std::lock_guard l(log_mu);
      log.push_back(who);
      // Hold the turn long enough that the other thread is queued behind it.
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  // While both were busy, no thread ran two turns in a row more than a handful of times (a plain mutex lets the
  // releasing thread take it straight back, often hundreds of times running).
  int repeats = 0;
  for (size_t i = 1; i < log.size(); ++i) repeats += log[i] == log[i - 1];
  EXPECT_LT(repeats, 20) << "of " << log.size() << " turns";
}

}  // namespace
}  // namespace wick

// The engine on its own thread under load: 1,000 requests of random lengths submitted from four threads while a
// fifth cancels some at random, through a pool small enough to preempt. Every request ends exactly once (finished
// with all its tokens, or cancelled), nothing fails, and every block comes back. Run under ThreadSanitizer and
// AddressSanitizer by CI.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <random>
#include <thread>

#include "test_util.h"
#include "wick/engine.h"
#include "wick/error.h"

namespace wick::test {
namespace {

// Counts its tokens (any token: the first id of the row's maximum) until `n`; records how it ended.
class CountingSink final : public TokenSink {
 public:
  explicit CountingSink(int64_t n) : n_(n) {}
  std::optional<int32_t> next_token(std::span<const float> logits) override {
    const int64_t got = ++tokens;
    if (got == n_) return std::nullopt;
    return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  void on_end(SequenceEnd how) override {
    ends.fetch_add(1);
    end = how;
  }
  std::atomic<int64_t> tokens{0};
  std::atomic<int> ends{0};
  std::atomic<SequenceEnd> end{SequenceEnd::failed};
  const int64_t n_;
};

TEST(EngineThreads, AThousandRequestsWithRandomCancellationsAllEndAndReturnTheirBlocks) {
  auto model = Model::load(fixture("models/tiny-untied"));
  const std::vector<int32_t> kShared[2] = {{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3},
                                           {2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5}};
  constexpr int kThreads = 4, kPerThread = 250;
  std::vector<std::shared_ptr<CountingSink>> sinks(kThreads * kPerThread);
  std::vector<std::atomic<uint64_t>> ids(sinks.size());
  std::atomic<int> submitted{0};
  {
    Engine engine(model, {.block_size = 8, .num_blocks = 40, .max_step_tokens = 96, .max_running = 24});
    engine.start();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        std::mt19937 rng(uint32_t(100 + t));
        for (int i = 0; i < kPerThread; ++i) {
          const size_t k = size_t(t * kPerThread + i);
          std::vector<int32_t> prompt(1 + rng() % 24);
          for (int32_t& id : prompt) id = int32_t(rng() % 384);
          if (i % 3 == 0)  // a third begin with one of two shared prefixes of two blocks: some wait for their blocks
            prompt.insert(prompt.begin(), kShared[i % 2].begin(), kShared[i % 2].end());
          const int64_t n = 1 + int64_t(rng() % 16);
          sinks[k] = std::make_shared<CountingSink>(n);
          ids[k] = engine.submit({.prompt = prompt, .max_new_tokens = n, .sink = sinks[k]});
          submitted.fetch_add(1);
          if (rng() % 10 == 0) engine.cancel(ids[k]);  // at once: most likely still waiting or prefilling
        }
      });
    threads.emplace_back([&] {  // and now and then a random earlier one, running, waiting or already ended
      std::mt19937 rng(7);
      for (int j = 0; j < 100; ++j) {
        const int upto = submitted.load();
        if (upto > 0) engine.cancel(ids[size_t(rng() % uint32_t(upto))].load());
        std::this_thread::sleep_for(std::chrono::microseconds(300));
      }
    });
    for (auto& th : threads) th.join();
    // Wait (bounded) for every request to end.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    auto all_ended = [&] {
      return std::all_of(sinks.begin(), sinks.end(), [](const auto& s) { return s->ends.load() > 0; });
    };
    while (!all_ended() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(all_ended()) << "some request never ended (deadlock?)";
    const EngineStats st = engine.stats();
    EXPECT_EQ(st.blocks_held, 0) << "every block is back in the pool";
    EXPECT_EQ(st.waiting + st.running, 0);
    EXPECT_EQ(st.finished, int64_t(sinks.size()));
    EXPECT_GT(st.preemptions, 0) << "the pool was meant to run out";
    EXPECT_GT(st.prefix_hit_tokens, 0) << "the shared prefixes were meant to be shared";
    std::cout << st.prefix_hit_tokens << " prompt positions taken from shared blocks, " << st.prefix_waits
              << " steps sat out waiting for a block another was computing\n";
  }
  int cancelled = 0;
  for (size_t k = 0; k < sinks.size(); ++k) {
    const CountingSink& s = *sinks[k];
    EXPECT_EQ(s.ends.load(), 1) << "request " << k << " ended once";
    ASSERT_NE(s.end.load(), SequenceEnd::failed) << "request " << k;
    if (s.end.load() == SequenceEnd::finished) {
      EXPECT_EQ(s.tokens.load(), s.n_) << "request " << k;
    } else {
      ++cancelled;
      EXPECT_LE(s.tokens.load(), s.n_) << "request " << k;
    }
  }
  EXPECT_GT(cancelled, 0) << "the canceller was meant to hit some";
  EXPECT_GT(int(sinks.size()) - cancelled, int(sinks.size()) / 2) << "most requests run to the end";
  std::cout << cancelled << " of " << sinks.size() << " requests were cancelled\n";
}

TEST(EngineThreads, DestroyingARunningEngineCancelsWhatIsLeft) {
  auto model = Model::load(fixture("models/tiny-untied"));
  std::vector<std::shared_ptr<CountingSink>> sinks;
  {
    Engine engine(model, {.block_size = 8, .num_blocks = 64});
    engine.start();
    EXPECT_WICK_ERROR(engine.step(), ErrorKind::bad_input, "whose own thread runs");
    EXPECT_WICK_ERROR(engine.start(), ErrorKind::bad_input, "start() was called already");
    for (int i = 0; i < 20; ++i) {
      sinks.push_back(std::make_shared<CountingSink>(200));
      engine.submit({.prompt = {1, 2, 3}, .max_new_tokens = 200, .sink = sinks.back()});
    }
  }
  for (const auto& s : sinks) {
    EXPECT_EQ(s->ends.load(), 1);
    EXPECT_EQ(s->end.load(), SequenceEnd::cancelled);
  }
}

}  // namespace
}  // namespace wick::test

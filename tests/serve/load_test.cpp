// Load over loopback, bounded in count and time: 200 concurrent streaming clients per round, one in five hanging up
// mid-stream. Every stream that ran to its end is well-formed with the token count it asked for, the KV pool is back
// to empty after each round, and the heap in use stays flat over 5 rounds.
#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <random>

#include "serve_test_util.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
// The sanitizer runtime's count (declared here: GCC installs no sanitizer headers).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace wick {
namespace {

using nlohmann::json;

// Bytes the heap holds for live allocations (under ASan its own count, which leaves out its quarantine).
int64_t heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
  return int64_t(__sanitizer_get_current_allocated_bytes());
#else
  return int64_t(mallinfo2().uordblks);
#endif
}

struct Outcome {
  bool hung_up = false;
  bool completed = false;
  httplib::Error error = httplib::Error::Success;
  std::string body;
};

TEST(ServeLoad, TwoHundredStreamsWithDisconnectsFiveRoundsLeaveNothingBehind) {
  ServerOptions o = test::TestServer::defaults();
  o.max_running = 64;
  o.kv_blocks = 64 * 8;
  o.max_queue = 256;
  o.http_threads = 240;
  test::TestServer s(o);
  constexpr int kClients = 200;
  // WICK_LOAD_ROUNDS: fewer rounds where only the interleavings matter (CI's ThreadSanitizer run takes 2).
  const char* rounds_env = std::getenv("WICK_LOAD_ROUNDS");
  const int kRounds = rounds_env ? std::max(2, std::atoi(rounds_env)) : 5;
  std::vector<int64_t> heap;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::mt19937 rng(uint32_t(100 + round));
    std::vector<int> max_tokens(kClients), hang_up_after(kClients);
    for (int i = 0; i < kClients; ++i) {
      max_tokens[size_t(i)] = 4 + int(rng() % 21);
      hang_up_after[size_t(i)] = i % 5 == 0 ? 1 + int(rng() % 3) : 0;  // chunks to read before leaving
    }
    std::vector<Outcome> outcomes(kClients);
    std::vector<std::thread> clients;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kClients; ++i)
      clients.emplace_back([&, i] {
        httplib::Client c("127.0.0.1", s.port());
        c.set_read_timeout(std::chrono::seconds(120));
        json ask = {{"model", i % 2 ? "scripture" : "wick-demo"}, {"prompt", "Voice " + std::to_string(i % 7)},
                    {"max_tokens", max_tokens[size_t(i)]}, {"ignore_eos", true}, {"stream", true},
                    {"stream_options", {{"include_usage", true}}}};
        Outcome& out = outcomes[size_t(i)];
        int chunks = 0;
        out.completed = test::post_streaming(c, "/v1/completions", ask.dump(), [&](const char* d, size_t n) {
          out.body.append(d, n);
          if (hang_up_after[size_t(i)] > 0 && ++chunks >= hang_up_after[size_t(i)]) {
            out.hung_up = true;
            return false;
          }
          return true;
        }, &out.error);
      });
    for (std::thread& t : clients) t.join();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(120));

    int completed = 0, hung_up = 0;
    for (int i = 0; i < kClients; ++i) {
      const Outcome& out = outcomes[size_t(i)];
      if (out.hung_up) {
        ++hung_up;
        continue;
      }
      ASSERT_TRUE(out.completed) << "client " << i << " did not get its whole stream (" << httplib::to_string(out.error)
                                 << "): " << out.body.substr(0, 300);
      ++completed;
      const std::vector<std::string> events = test::sse_events(out.body);
      ASSERT_GE(events.size(), 3u) << i;
      EXPECT_EQ(events.back(), "[DONE]") << i;
      int tokens = 0;
      for (size_t e = 0; e + 2 < events.size(); ++e) {
        const json chunk = json::parse(events[e]);
        ASSERT_EQ(chunk["choices"].size(), 1u) << events[e];
        ++tokens;
      }
      EXPECT_EQ(tokens, max_tokens[size_t(i)]) << i;
      const json usage = json::parse(events[events.size() - 2]);
      EXPECT_EQ(usage["usage"]["completion_tokens"], max_tokens[size_t(i)]) << i;
    }
    // A client meant to leave after k reads stays to the end when the whole stream came in fewer reads (the server's
    // writes coalesce under load): it is checked as a completed one.
    EXPECT_EQ(completed + hung_up, kClients);
    EXPECT_LE(hung_up, kClients / 5);
    EXPECT_GT(hung_up, kClients / 10) << "too few disconnects to test them";
    EXPECT_TRUE(test::eventually([&] {
      const ServerStats st = s.server().stats();
      return st.engine.blocks_held == 0 && st.engine.running == 0 && st.engine.waiting == 0 && st.in_flight == 0;
    })) << "blocks held " << s.server().stats().engine.blocks_held;
    heap.push_back(heap_in_use());
  }
  // Flat: after the first round (pools and caches sized), no round adds more than 4 MB to the heap in use.
  for (size_t r = 2; r < heap.size(); ++r)
    EXPECT_LT(heap[r] - heap[1], int64_t(4) << 20) << "round " << r << ": " << heap[r] << " bytes against " << heap[1];
}

}  // namespace
}  // namespace wick

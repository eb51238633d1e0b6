// Aggregate decode through the engine (continuous batching over the paged KV cache): N sequences of 128 prompt
// tokens and 128 new ones, as llama-batched-bench measures it (docs/BENCHMARKS.md). The prompts are prefilled in
// the first step (not timed); the timed part is the 127 decode steps after it. Arg adapters = 0: the base model;
// k > 0: k different random r16 adapters on all seven projections, spread over the sequences round-robin.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "wick/adapter.h"
#include "wick/engine.h"
#include "wick/error.h"
#include "wick/generator.h"

namespace wick::bench {
namespace {

constexpr int64_t kPrompt = 128, kNew = 128;

// Takes a fixed token (no sampling: what is timed is the engine and the model) for kNew positions.
class FixedSink final : public TokenSink {
 public:
  explicit FixedSink(bool summaries) : summaries_(summaries) {}
  std::optional<int32_t> next_token(std::span<const float> logits) override { return next(int64_t(logits.size())); }
  // As generate's sinks: on a GPU the best id's summary crosses, not the row; on the CPU they take the row.
  std::optional<SummaryAsk> summary_ask() override {
    return summaries_ ? std::optional(SummaryAsk{.count = 1}) : std::nullopt;
  }
  SummaryAnswer next_token(const LogitSummary& s) override { return {.decided = true, .next = next(s.vocab)}; }

 private:
  std::optional<int32_t> next(int64_t vocab) {
    if (++n_ == kNew) return std::nullopt;
    return int32_t((n_ * 7919) % vocab);
  }

 private:
  bool summaries_;
  int64_t n_ = 0;
};

void BM_EngineDecode(benchmark::State& state, const std::string& like, Device device, int tensor_parallel = 1) {
  const int64_t seqs = state.range(0), n_adapters = state.range(1);
  const std::shared_ptr<Model> model =
      load_or_skip(state, like, {.device = device, .tensor_parallel = tensor_parallel});
  if (!model) return;
  LoraConfig config;
  config.r = 16;
  config.lora_alpha = 32;
  config.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  std::vector<std::shared_ptr<const LoraSource>> adapters;
  for (int64_t k = 0; k < n_adapters; ++k) {
    adapters.push_back(LoraAdapter::shared_source(
        LoraAdapter::random(std::string("a").append(std::to_string(k)), config, *model, uint64_t(k + 1))));
  }
  const int64_t vocab = model->config().vocab_size, block = 16;
  const int64_t blocks = seqs * ((kPrompt + kNew + block - 1) / block);
  double decode_seconds = 0;
  int64_t decoded = 0;
  for (auto _ : state) {
    Engine engine(model, {.block_size = block, .num_blocks = blocks, .max_step_tokens = seqs * kPrompt,
                          .max_running = seqs, .share_prefixes = false});
    for (int64_t s = 0; s < seqs; ++s) {
      std::vector<int32_t> prompt(kPrompt);
      for (int64_t i = 0; i < kPrompt; ++i) prompt[size_t(i)] = int32_t((s * 104729 + i * 7919 + 13) % vocab);
      engine.submit({.prompt = prompt, .max_new_tokens = kNew,
                     .lora = n_adapters ? adapters[size_t(s % n_adapters)] : nullptr,
                     .sink = std::make_shared<FixedSink>(device != Device::cpu)});
    }
    engine.step();  // every prompt, and each sequence's first new token
    const auto t0 = std::chrono::steady_clock::now();
    engine.run();
    decode_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    decoded += seqs * (kNew - 1);
  }
  state.counters["decode_tok_per_s"] = double(decoded) / decode_seconds;
  state.counters["step_ms"] = 1e3 * decode_seconds / double(state.iterations()) / double(kNew - 1);
}

using Clock = std::chrono::steady_clock;

// Records when each token came (for time to first token and time per output token).
class TimedSink final : public TokenSink {
 public:
  TimedSink(int64_t n, Clock::time_point arrival, bool summaries) : n_(n), arrival_(arrival), summaries_(summaries) {}
  std::optional<int32_t> next_token(std::span<const float> logits) override { return next(int64_t(logits.size())); }
  std::optional<SummaryAsk> summary_ask() override {  // as FixedSink's
    return summaries_ ? std::optional(SummaryAsk{.count = 1}) : std::nullopt;
  }
  SummaryAnswer next_token(const LogitSummary& s) override { return {.decided = true, .next = next(s.vocab)}; }
  std::optional<int32_t> next(int64_t vocab) {
    times.push_back(Clock::now());
    if (int64_t(times.size()) == n_) return std::nullopt;
    return int32_t((int64_t(times.size()) * 7919) % vocab);
  }
  void on_end(SequenceEnd) override { ended.store(true); }
  double ttft_ms() const { return std::chrono::duration<double, std::milli>(times.front() - arrival_).count(); }
  double tpot_ms() const {
    return times.size() < 2 ? 0
                            : std::chrono::duration<double, std::milli>(times.back() - times.front()).count() /
                                  double(times.size() - 1);
  }
  std::vector<Clock::time_point> times;
  std::atomic<bool> ended{false};

 private:
  int64_t n_;
  Clock::time_point arrival_;
  bool summaries_;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

// A serving run's figures: output throughput, and p50 / p99 of time to first token and time per output token.
void serving_counters(benchmark::State& state, int64_t tokens, double seconds, const std::vector<double>& ttft_ms,
                      const std::vector<double>& tpot_ms) {
  state.counters["out_tok_per_s"] = double(tokens) / seconds;
  state.counters["ttft_p50_ms"] = percentile(ttft_ms, 0.5);
  state.counters["ttft_p99_ms"] = percentile(ttft_ms, 0.99);
  state.counters["tpot_p50_ms"] = percentile(tpot_ms, 0.5);
  state.counters["tpot_p99_ms"] = percentile(tpot_ms, 0.99);
}

// A serving run: `requests` requests arriving as a Poisson process at `rate` per second (seeded), prompts of
// 16..512 tokens and 16..256 new ones (uniform), through an engine on its own thread. Reports the output token
// throughput over the run and the p50 / p99 time to first token (from arrival) and time per output token.
void BM_EngineServe(benchmark::State& state, const std::string& like, Device device) {
  const int64_t requests = state.range(0);
  const double rate = double(state.range(1));
  const std::shared_ptr<Model> model = load_or_skip(state, like, {.device = device});
  if (!model) return;
  const int64_t vocab = model->config().vocab_size;
  for (auto _ : state) {
    std::mt19937 rng(42);
    std::exponential_distribution<double> gap(rate);
    std::vector<std::shared_ptr<TimedSink>> sinks;
    const auto t0 = Clock::now();
    {
      Engine engine(model, {.block_size = 16, .num_blocks = 4096, .max_step_tokens = 2048, .max_running = 128});
      engine.start();
      auto at = t0;
      for (int64_t r = 0; r < requests; ++r) {
        at += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
        std::this_thread::sleep_until(at);
        std::vector<int32_t> prompt(16 + rng() % 497);
        for (int32_t& id : prompt) id = int32_t(rng() % uint32_t(vocab));
        const int64_t n = 16 + int64_t(rng() % 241);
        sinks.push_back(std::make_shared<TimedSink>(n, Clock::now(), device != Device::cpu));
        engine.submit({.prompt = prompt, .max_new_tokens = n, .sink = sinks.back()});
      }
      while (!std::all_of(sinks.begin(), sinks.end(), [](const auto& s) { return s->ended.load(); }))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    std::vector<double> ttft, tpot;
    int64_t tokens = 0;
    for (const auto& s : sinks) {
      ttft.push_back(s->ttft_ms());
      tpot.push_back(s->tpot_ms());
      tokens += int64_t(s->times.size());
    }
    serving_counters(state, tokens, seconds, ttft, tpot);
  }
}

// What `wick serve` runs, without HTTP: `concurrency` clients in a closed loop (each submits its next request when
// its last one ends) through Generator::submit (greedy sampling, EOS ignored, as tools/serve_load.py asks), prompts
// of 100 random tokens (what serve_load.py's 100 common words tokenise to) and 128 new tokens, `requests` in all,
// on an engine sized as the server's defaults. docs/BENCHMARKS.md sets serve_load.py's figures beside these: the
// difference is what HTTP, JSON and the SSE stream cost.
void BM_EngineClosedLoop(benchmark::State& state, const std::string& like, Device device) {
  const int64_t concurrency = state.range(0), requests = state.range(1);
  constexpr int64_t kLoopPrompt = 100;
  const std::shared_ptr<Model> model = load_or_skip(state, like, {.device = device});
  if (!model) return;
  const int64_t vocab = model->config().vocab_size;
  const Generator gen(model, std::nullopt);
  Engine engine(model, {.block_size = 16, .num_blocks = 64 * 64, .max_step_tokens = 2048, .max_running = 64});
  engine.start();
  for (auto _ : state) {
    std::mt19937 rng(1);
    std::mutex mu;
    std::condition_variable changed;
    int64_t submitted = 0, ended = 0, tokens = 0;
    std::vector<double> ttft, tpot;
    const auto t0 = Clock::now();
    std::function<void()> submit_next;  // with `mu` held
    submit_next = [&] {
      std::vector<int32_t> prompt(kLoopPrompt);
      for (int32_t& id : prompt) id = int32_t(rng() % uint32_t(vocab));
      struct Times {
        Clock::time_point arrival = Clock::now(), first{}, last{};
        int64_t n = 0;
      };
      auto times = std::make_shared<Times>();
      ++submitted;
      gen.submit(engine,
                 {.prompt = prompt,
                  .params = {.max_tokens = int32_t(kNew), .ignore_eos = true, .sampling = SamplingParams::greedy_params()}},
                 {.on_token =
                      [times](const StreamToken&) {
                        times->last = Clock::now();
                        if (times->n++ == 0) times->first = times->last;
                        return true;
                      },
                  .on_end = [&, times](GenerateResult&&, SequenceEnd) {
                    const std::lock_guard lock(mu);
                    ++ended;
                    tokens += times->n;
                    ttft.push_back(std::chrono::duration<double, std::milli>(times->first - times->arrival).count());
                    if (times->n > 1)
                      tpot.push_back(std::chrono::duration<double, std::milli>(times->last - times->first).count() /
                                     double(times->n - 1));
                    if (submitted < requests) submit_next();
                    changed.notify_all();
                  }});
    };
    {
      std::unique_lock lock(mu);
      for (int64_t c = 0; c < std::min(concurrency, requests); ++c) submit_next();
      changed.wait(lock, [&] { return ended == requests; });
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    serving_counters(state, tokens, seconds, ttft, tpot);
  }
}

// A burst of `requests` requests that share a system prompt of `prefix` tokens (each then 16 tokens of its own and 16
// new ones), all submitted at once — the first turn of a chat product, or one request's n choices. share 1: the
// engine computes the common prefix once (the others wait for its blocks); share 0: every request computes all of
// its prompt, which is what sharing cached blocks alone gives requests that arrive together. Reports the burst's
// wall time, the p50 / p99 time to first token, and the positions computed.
void BM_EngineSharedPrefix(benchmark::State& state, const std::string& like, Device device) {
  const int64_t requests = state.range(0), prefix = state.range(1);
  const bool share = state.range(2) != 0;
  constexpr int64_t kOwn = 16, kBurstNew = 16;
  const std::shared_ptr<Model> model = load_or_skip(state, like, {.device = device});
  if (!model) return;
  const int64_t vocab = model->config().vocab_size, block = 16;
  std::mt19937 rng(3);
  std::vector<int32_t> system(static_cast<size_t>(prefix));
  for (int32_t& id : system) id = int32_t(rng() % uint32_t(vocab));
  for (auto _ : state) {
    Engine engine(model, {.block_size = block, .num_blocks = requests * ((prefix + kOwn + kBurstNew) / block + 2),
                          .max_step_tokens = 2048, .max_running = requests, .share_prefixes = share});
    std::vector<std::shared_ptr<TimedSink>> sinks;
    const auto t0 = Clock::now();
    for (int64_t r = 0; r < requests; ++r) {
      std::vector<int32_t> prompt = system;
      for (int64_t i = 0; i < kOwn; ++i) prompt.push_back(int32_t(rng() % uint32_t(vocab)));
      sinks.push_back(std::make_shared<TimedSink>(kBurstNew, t0, device != Device::cpu));
      engine.submit({.prompt = prompt, .max_new_tokens = kBurstNew, .sink = sinks.back()});
    }
    engine.run();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    std::vector<double> ttft;
    for (const auto& sink : sinks) ttft.push_back(sink->ttft_ms());
    state.counters["burst_s"] = seconds;
    state.counters["ttft_p50_ms"] = percentile(ttft, 0.5);
    state.counters["ttft_p99_ms"] = percentile(ttft, 0.99);
    state.counters["computed_tok"] = double(engine.stats().tokens_computed);
    state.counters["prefix_hit_tok"] = double(engine.stats().prefix_hit_tokens);
  }
}

BENCHMARK_CAPTURE(BM_EngineSharedPrefix, cpu_tiny, std::string("tiny"), Device::cpu)
    ->ArgNames({"requests", "prefix", "share"})->Args({32, 512, 0})->Args({32, 512, 1})
    ->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineSharedPrefix, cpu_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cpu)
    ->ArgNames({"requests", "prefix", "share"})->Args({8, 256, 0})->Args({8, 256, 1})
    ->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineSharedPrefix, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->ArgNames({"requests", "prefix", "share"})->Args({64, 1024, 0})->Args({64, 1024, 1})
    ->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_CAPTURE(BM_EngineClosedLoop, cpu_tiny, std::string("tiny"), Device::cpu)
    ->ArgNames({"concurrency", "requests"})->Args({8, 32})->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineClosedLoop, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->ArgNames({"concurrency", "requests"})->Args({1, 8})->Args({8, 32})->Args({32, 128})->Args({64, 256})
    ->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_CAPTURE(BM_EngineServe, cpu_tiny, std::string("tiny"), Device::cpu)
    ->ArgNames({"requests", "per_s"})->Args({64, 50})->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineServe, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->ArgNames({"requests", "per_s"})->Args({256, 16})->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_CAPTURE(BM_EngineDecode, cpu_tiny, std::string("tiny"), Device::cpu)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({8, 0})->Args({8, 8})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineDecode, cpu_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cpu)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({8, 0})->Args({32, 0})->Iterations(1)
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineDecode, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({8, 0})->Args({16, 0})->Args({32, 0})->Args({64, 0})
    ->Args({128, 0})
    ->Args({32, 1})->Args({32, 8})->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
// Tensor parallelism (issue 25): batched decode of the 0.5B and 7B shapes on one GPU and split over 2, in one run
// (`--benchmark_filter=BM_EngineDecodeSplit`); the split ones are skipped where the machine has fewer GPUs. The CPU's
// split (the reference) shows that it runs, not a speed.
void BM_EngineDecodeSplit(benchmark::State& state, const std::string& like, Device device, int tensor_parallel) {
  BM_EngineDecode(state, like, device, tensor_parallel);
}
BENCHMARK_CAPTURE(BM_EngineDecodeSplit, cpu_tiny_tp2, std::string("tiny"), Device::cpu, 2)
    ->ArgNames({"seqs", "adapters"})->Args({8, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineDecodeSplit, cuda_qwen2_5_0_5b_tp1, std::string("qwen2.5-0.5b"), Device::cuda, 1)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({32, 0})->Args({32, 8})
    ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineDecodeSplit, cuda_qwen2_5_0_5b_tp2, std::string("qwen2.5-0.5b"), Device::cuda, 2)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({32, 0})->Args({32, 8})
    ->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineDecodeSplit, cuda_qwen2_5_7b_tp1, std::string("qwen2.5-7b"), Device::cuda, 1)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({32, 0})->Unit(benchmark::kMillisecond)->Iterations(1)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineDecodeSplit, cuda_qwen2_5_7b_tp2, std::string("qwen2.5-7b"), Device::cuda, 2)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({32, 0})->Unit(benchmark::kMillisecond)->Iterations(1)
    ->UseRealTime();

}  // namespace
}  // namespace wick::bench

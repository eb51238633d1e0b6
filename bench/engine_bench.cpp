// Aggregate decode through the engine (continuous batching over the paged KV cache): N sequences of 128 prompt
// tokens and 128 new ones, as llama-batched-bench measures it (docs/BENCHMARKS.md). The prompts are prefilled in
// the first step (not timed); the timed part is the 127 decode steps after it. Arg adapters = 0: the base model;
// k > 0: k different random r16 adapters on all seven projections, spread over the sequences round-robin.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "wick/adapter.h"
#include "wick/engine.h"
#include "wick/error.h"

namespace wick::bench {
namespace {

constexpr int64_t kPrompt = 128, kNew = 128;

// Takes a fixed token (no sampling: what is timed is the engine and the model) for kNew positions.
class FixedSink final : public TokenSink {
 public:
  std::optional<int32_t> next_token(std::span<const float> logits) override {
    if (++n_ == kNew) return std::nullopt;
    return int32_t((n_ * 7919) % int64_t(logits.size()));
  }

 private:
  int64_t n_ = 0;
};

void BM_EngineDecode(benchmark::State& state, const std::string& like, Device device) {
  const int64_t seqs = state.range(0), n_adapters = state.range(1);
  std::shared_ptr<Model> model;
  try {
    model = Model::load(bench_model(like), {.device = device});
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return;
  }
  LoraConfig config;
  config.r = 16;
  config.lora_alpha = 32;
  config.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  std::vector<std::shared_ptr<const LoraSource>> adapters;
  for (int64_t k = 0; k < n_adapters; ++k) {
    const auto a = LoraAdapter::random(std::string("a").append(std::to_string(k)), config, *model, uint64_t(k + 1));
    adapters.emplace_back(a, &a->source());
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
                     .sink = std::make_shared<FixedSink>()});
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

BENCHMARK_CAPTURE(BM_EngineDecode, cpu_tiny, std::string("tiny"), Device::cpu)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({8, 0})->Args({8, 8})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_EngineDecode, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->ArgNames({"seqs", "adapters"})->Args({1, 0})->Args({8, 0})->Args({32, 0})->Args({64, 0})->Args({128, 0})
    ->Args({32, 1})->Args({32, 8})->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

}  // namespace
}  // namespace wick::bench

// CPU prefill and decode on a Qwen2.5-0.5B-shaped random model (bf16 files, f32 compute), beside the
// machine's memory bandwidth measured in the same run.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <vector>

#include "bench_util.h"
#include "wick/model.h"

namespace wick::bench {
namespace {

std::shared_ptr<Model> cpu_model(const std::string& like) {
  static std::map<std::string, std::shared_ptr<Model>> cache;
  auto& m = cache[like];
  if (!m) m = Model::load(bench_model(like));
  return m;
}

std::vector<int32_t> prompt_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + 13) % vocab);
  return t;
}

void BM_MemoryBandwidth(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(memory_bandwidth());
  state.counters["read_GBps"] = memory_bandwidth().read_gbps;
  state.counters["copy_GBps"] = memory_bandwidth().copy_gbps;
}
BENCHMARK(BM_MemoryBandwidth)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_CpuPrefill(benchmark::State& state, const std::string& like) {
  auto model = cpu_model(like);
  const int64_t n = state.range(0);
  const auto tokens = prompt_tokens(n, model->config().vocab_size);
  for (auto _ : state) {
    KVCache cache = model->make_cache(n);
    benchmark::DoNotOptimize(model->forward(std::vector<SequenceInput>{{tokens, &cache}}));
  }
  state.counters["tok_per_s"] = benchmark::Counter(double(n) * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_CpuPrefill, qwen2_5_0_5b, std::string("qwen2.5-0.5b"))->Arg(512)->Unit(benchmark::kMillisecond)->Iterations(2);

// Decode of `steps` tokens after a 16-token prompt; reports tok/s and the fraction of the roofline
// (weight bytes read per token at the measured streaming-read bandwidth).
void BM_CpuDecode(benchmark::State& state, const std::string& like) {
  auto model = cpu_model(like);
  const ModelConfig& c = model->config();
  const int64_t steps = state.range(0);
  const auto prompt = prompt_tokens(16, c.vocab_size);
  for (auto _ : state) {
    state.PauseTiming();
    KVCache cache = model->make_cache(16 + steps);
    Tensor logits = model->forward(std::vector<SequenceInput>{{prompt, &cache}});
    state.ResumeTiming();
    for (int64_t s = 0; s < steps; ++s) {
      const int32_t next[] = {int32_t((s * 31 + 7) % c.vocab_size)};
      logits = model->forward(std::vector<SequenceInput>{{next, &cache}});
    }
    benchmark::DoNotOptimize(logits);
  }
  const double tokens = double(steps) * double(state.iterations());
  state.counters["tok_per_s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  // Every weight is read once per token in f32, except the embedding rows (one row each).
  const double params = double(c.parameter_count()) - (c.tie_word_embeddings ? 0.0 : double(c.vocab_size * c.hidden_size));
  const double bytes_per_token = params * 4.0;
  const double roofline_tok_s = memory_bandwidth().read_gbps * 1e9 / bytes_per_token;
  state.counters["roofline_tok_per_s"] = roofline_tok_s;
  state.counters["GB_per_token"] = bytes_per_token / 1e9;
  state.counters["read_GBps"] = memory_bandwidth().read_gbps;
}
BENCHMARK_CAPTURE(BM_CpuDecode, qwen2_5_0_5b, std::string("qwen2.5-0.5b"))->Arg(32)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace wick::bench

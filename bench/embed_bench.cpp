// Sentences per second of the embedders (wick/embedder.h) on random encoders shaped like all-MiniLM-L6-v2 and
// BERT-base (bf16 files; `wick random-model --like minilm-l6|bert-base`), at 128 and 512 tokens a sentence, in the
// batches issue 24's transformers anchors use: token ids in (Embedder::embed_ids, as
// scripts/bench_embed_transformers.py feeds transformers), mean pooling and L2 normalisation, f32 embeddings back on
// the host. scripts/gpu-check.sh runs the transformers side in the same session.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "bench_util.h"
#include "wick/embedder.h"
#include "wick/error.h"

namespace wick::bench {
namespace {

const Embedder* embedder_or_skip(benchmark::State& state, const std::string& like, Device device) {
  static std::map<std::tuple<std::string, Device>, std::unique_ptr<Embedder>> cache;
  auto& e = cache[{like, device}];
  try {
    if (!e) e = std::make_unique<Embedder>(Embedder::load(bench_model(like), {.device = device}));
  } catch (const Error& err) {
    state.SkipWithError(err.what());
    return nullptr;
  }
  return e.get();
}

// `batch` sentences of `tokens` ids each: [CLS] ids [SEP], the ids spread over the vocabulary past the specials.
std::vector<std::vector<int32_t>> sentences(int64_t batch, int64_t tokens) {
  std::vector<std::vector<int32_t>> out(size_t(batch), std::vector<int32_t>(size_t(tokens), 0));
  for (int64_t s = 0; s < batch; ++s) {
    auto& ids = out[size_t(s)];
    for (int64_t i = 0; i < tokens; ++i) ids[size_t(i)] = int32_t(1000 + (s * 7919 + i * 104729) % 29000);
    ids.front() = 101, ids.back() = 102;
  }
  return out;
}

// range(0): tokens a sentence; range(1): sentences a call.
void BM_Embed(benchmark::State& state, const std::string& like, Device device) {
  const Embedder* e = embedder_or_skip(state, like, device);
  if (!e) return;
  const auto batch = sentences(state.range(1), state.range(0));
  benchmark::DoNotOptimize(e->embed_ids(batch));  // warm-up: first-use allocations and kernel loads
  for (auto _ : state) benchmark::DoNotOptimize(e->embed_ids(batch));
  state.counters["sentences_per_s"] =
      benchmark::Counter(double(state.range(1)) * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["tokens_per_s"] = benchmark::Counter(double(state.range(0) * state.range(1)) *
                                                          double(state.iterations()),
                                                      benchmark::Counter::kIsRate);
}

BENCHMARK_CAPTURE(BM_Embed, cuda_minilm_l6, std::string("minilm-l6"), Device::cuda)
    ->ArgNames({"tokens", "batch"})->Args({128, 128})->Args({512, 32})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Embed, cuda_bert_base, std::string("bert-base"), Device::cuda)
    ->ArgNames({"tokens", "batch"})->Args({128, 128})->Args({512, 32})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Embed, cpu_minilm_l6, std::string("minilm-l6"), Device::cpu)
    ->ArgNames({"tokens", "batch"})->Args({128, 32})->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace wick::bench

// LoRA training throughput on Qwen2.5-shaped random models: r16 on all seven projections, AdamW, batches of
// whole sequences of 512 tokens (padding-free), the shape of PEFT's figures in docs/BENCHMARKS.md. Each iteration
// is one optimizer step (forward, backward, clipping, AdamW, the factors refreshed on the device).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "bench_util.h"
#include "wick/error.h"
#include "wick/train.h"

namespace wick::bench {
namespace {

namespace fs = std::filesystem;

// `rows` pre-tokenised sequences of `len` ids each, written once per shape.
fs::path training_data(const fs::path& dir, int64_t rows, int64_t len, int64_t vocab) {
  const fs::path file = dir / ("train-" + std::to_string(rows) + "x" + std::to_string(len) + ".jsonl");
  if (fs::exists(file)) return file;
  std::ofstream f(file);
  for (int64_t r = 0; r < rows; ++r) {
    f << "{\"input_ids\": [";
    for (int64_t i = 0; i < len; ++i) f << (i ? "," : "") << (r * 7919 + i * 104729 + 13) % vocab;
    f << "]}\n";
  }
  return file;
}

// Args: batch size, gradient checkpointing (0/1).
void BM_Train(benchmark::State& state, const std::string& like, Device device) {
  const int64_t batch = state.range(0), len = 512;
  std::shared_ptr<Model> model;
  std::unique_ptr<Trainer> trainer;
  try {
    model = Model::load(bench_model(like), {.device = device});
    const fs::path dir = bench_model(like).parent_path();
    TrainOptions o;
    o.data = training_data(dir, batch * 4, len, model->config().vocab_size);
    o.out = dir / ("train-out-" + like);
    o.rank = 16;
    o.alpha = 32;
    o.targets = {"all-linear"};
    o.batch_size = batch;
    o.seq_len = len;
    o.steps = 1 << 20;
    o.lr = 1e-4;
    o.shuffle = false;
    o.gradient_checkpointing = state.range(1) != 0;
    trainer = std::make_unique<Trainer>(model, nullptr, o);
    trainer->step();  // first-use work (allocations, cuBLAS handles) outside the timing
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return;
  }
  int64_t tokens = 0;
  for (auto _ : state) tokens += trainer->step().tokens;
  state.counters["tok_per_s"] = benchmark::Counter(double(tokens), benchmark::Counter::kIsRate);
  state.counters["peak_GB"] = double(trainer->peak_memory_bytes()) / 1e9;
}

BENCHMARK_CAPTURE(BM_Train, cpu_tiny, std::string("tiny"), Device::cpu)
    ->ArgNames({"batch", "ckpt"})->Args({8, 0})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->ArgNames({"batch", "ckpt"})->Args({8, 0})->Args({8, 1})->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK_CAPTURE(BM_Train, cuda_qwen2_5_7b, std::string("qwen2.5-7b"), Device::cuda)
    ->ArgNames({"batch", "ckpt"})->Args({4, 0})->Args({4, 1})->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace
}  // namespace wick::bench

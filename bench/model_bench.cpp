// Prefill and decode on Qwen2.5-shaped random models (bf16 files) on each backend — on the CPU also with 8-bit weights
// (--weights int8) — beside the memory bandwidth measured in the same run: decode is reported as a fraction of the
// bandwidth roofline.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "bench_util.h"
#include "wick/error.h"
#include "wick/model.h"

namespace wick::bench {
namespace {

// One loaded model per (shape, device, CPU weights, devices split over), kept for the whole run.
std::shared_ptr<Model> load_model(const std::string& like, Device device, CpuWeights weights, int tensor_parallel) {
  static std::map<std::tuple<std::string, Device, CpuWeights, int>, std::shared_ptr<Model>> cache;
  auto& m = cache[{like, device, weights, tensor_parallel}];
  if (!m)
    m = Model::load(bench_model(like), {.device = device, .cpu_weights = weights, .tensor_parallel = tensor_parallel});
  return m;
}

// The model, or nullptr after marking the benchmark skipped (no GPU here, or fewer GPUs than the split needs).
std::shared_ptr<Model> model_or_skip(benchmark::State& state, const std::string& like, Device device,
                                     CpuWeights weights = CpuWeights::native, int tensor_parallel = 1) {
  try {
    return load_model(like, device, weights, tensor_parallel);
  } catch (const Error& e) {
    state.SkipWithError(e.what());
    return nullptr;
  }
}

std::vector<int32_t> prompt_tokens(int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = int32_t((i * 7919 + 13) % vocab);
  return t;
}

void BM_MemoryBandwidth(benchmark::State& state) {
  for (auto _ : state) {
    Bandwidth measured = memory_bandwidth();  // a copy: the const-reference DoNotOptimize is deprecated
    benchmark::DoNotOptimize(measured);
  }
  state.counters["read_GBps"] = memory_bandwidth().read_gbps;
  state.counters["copy_GBps"] = memory_bandwidth().copy_gbps;
}
BENCHMARK(BM_MemoryBandwidth)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Prefill(benchmark::State& state, const std::string& like, Device device,
                CpuWeights weights = CpuWeights::native) {
  auto model = model_or_skip(state, like, device, weights);
  if (!model) return;
  const int64_t n = state.range(0);
  const auto tokens = prompt_tokens(n, model->config().vocab_size);
  // One untimed prefill first, as llama-bench's warm-up run: the steady state, with the weights' file pages faulted
  // in (BM_FirstPrefill measures a fresh process's first request).
  {
    KVCache cache = model->make_cache(n);
    benchmark::DoNotOptimize(model->forward(std::vector<SequenceInput>{{tokens, &cache}}));
  }
  for (auto _ : state) {
    KVCache cache = model->make_cache(n);
    benchmark::DoNotOptimize(model->forward(std::vector<SequenceInput>{{tokens, &cache}}));
  }
  state.counters["tok_per_s"] = benchmark::Counter(double(n) * double(state.iterations()), benchmark::Counter::kIsRate);
}

// The first request of a fresh process: a model loaded (and warmed up at load), then the first prefill of `n`
// tokens against the median of the next ten (each into a new cache). Meaningful as the only benchmark of its
// process: one that ran before has loaded the kernels already (scripts/gpu-engine-check.sh runs it alone).
void BM_FirstPrefill(benchmark::State& state, const std::string& like, Device device) {
  const int64_t n = state.range(0);
  using clock = std::chrono::steady_clock;
  const auto prefill_ms = [&](const Model& model, const std::vector<int32_t>& tokens) {
    KVCache cache = model.make_cache(n);
    const auto t0 = clock::now();
    benchmark::DoNotOptimize(model.forward(std::vector<SequenceInput>{{tokens, &cache}}));
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  };
  for (auto _ : state) {
    auto model = model_or_skip(state, like, device);
    if (!model) return;
    const auto tokens = prompt_tokens(n, model->config().vocab_size);
    const double first = prefill_ms(*model, tokens);
    std::vector<double> later;
    for (int i = 0; i < 10; ++i) later.push_back(prefill_ms(*model, tokens));
    std::sort(later.begin(), later.end());
    state.counters["first_ms"] = first;
    state.counters["steady_ms"] = later[later.size() / 2];
    state.counters["first_over_steady"] = first / later[later.size() / 2];
  }
}

// Decode of `steps` tokens after a 16-token prompt (prefill excluded): tok/s, and the roofline given by
// the weight bytes read per token at the measured bandwidth (streaming reads on the CPU, copy on the GPU; one
// device's: a model split over N devices reads 1/N of its weights on each).
void BM_Decode(benchmark::State& state, const std::string& like, Device device,
               CpuWeights weights = CpuWeights::native, int tensor_parallel = 1) {
  auto model = model_or_skip(state, like, device, weights, tensor_parallel);
  if (!model) return;
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
  state.counters["tok_per_s"] = benchmark::Counter(double(steps) * double(state.iterations()), benchmark::Counter::kIsRate);
  // Every weight is read once per token, except the embedding table (one row) when the head is untied.
  const double params = double(c.parameter_count()) - (c.tie_word_embeddings ? 0.0 : double(c.vocab_size * c.hidden_size));
  const double bytes_per_weight = double(storage_bytes(model->weight_dtype(), {1024})) / 1024;  // bf16, q8_0 or f32
  const double bytes_per_token = params * bytes_per_weight / double(tensor_parallel);
  const double gbps = device == Device::cpu ? memory_bandwidth().read_gbps : device_copy_bandwidth_gbps();
  state.counters["roofline_tok_per_s"] = gbps * 1e9 / bytes_per_token;
  state.counters["GB_per_token"] = bytes_per_token / 1e9;
  state.counters["bandwidth_GBps"] = gbps;
}

BENCHMARK_CAPTURE(BM_Prefill, cpu_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cpu)
    ->Arg(512)->Iterations(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, cpu_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cpu)
    ->Arg(32)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, cpu_qwen2_5_0_5b_int8, std::string("qwen2.5-0.5b"), Device::cpu, CpuWeights::int8)
    ->Arg(512)->Iterations(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, cpu_qwen2_5_0_5b_int8, std::string("qwen2.5-0.5b"), Device::cpu, CpuWeights::int8)
    ->Arg(32)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_FirstPrefill, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->Arg(128)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Prefill, cuda_qwen2_5_7b, std::string("qwen2.5-7b"), Device::cuda)
    ->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, cuda_qwen2_5_7b, std::string("qwen2.5-7b"), Device::cuda)
    ->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
// Tensor parallelism (issue 25): the same shapes split over 2 and 4 GPUs, beside the single-GPU figures above in one
// run (`--benchmark_filter='BM_Decode/cuda_qwen2_5_7b'`); skipped where the machine has fewer GPUs.
BENCHMARK_CAPTURE(BM_Decode, cuda_qwen2_5_7b_tp2, std::string("qwen2.5-7b"), Device::cuda, CpuWeights::native, 2)
    ->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, cuda_qwen2_5_7b_tp4, std::string("qwen2.5-7b"), Device::cuda, CpuWeights::native, 4)
    ->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Decode, cuda_qwen2_5_0_5b_tp2, std::string("qwen2.5-0.5b"), Device::cuda, CpuWeights::native, 2)
    ->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace wick::bench

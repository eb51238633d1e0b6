// LoRA adapters on a Qwen2.5-0.5B-shaped random model (CPU, f32 compute) with r16 adapters on all seven
// projections (8.8 M parameters, 35 MB): swap between resident adapters, load from disk, merge, and decode
// speed with an unmerged adapter beside the base model, measured in the same run.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <vector>

#include "bench_util.h"
#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/model.h"

namespace wick::bench {
namespace {

std::shared_ptr<Model> model_05b() {
  static const std::shared_ptr<Model> m = Model::load(bench_model("qwen2.5-0.5b"));
  return m;
}

LoraConfig r16_all_seven() {
  LoraConfig c;
  c.r = 16;
  c.lora_alpha = 32;
  c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return c;
}

// Two resident adapters, made once.
std::shared_ptr<const LoraAdapter> adapter(int which) {
  static const std::shared_ptr<const LoraAdapter> a[2] = {
      LoraAdapter::random("a", r16_all_seven(), *model_05b(), 1),
      LoraAdapter::random("b", r16_all_seven(), *model_05b(), 2)};
  return a[which];
}

// Activate A, then B, then A ... through the registry (lock, lookup, pointer exchange).
void BM_AdapterSwap(benchmark::State& state) {
  auto model = model_05b();
  AdapterRegistry registry(model);
  registry.add(adapter(0));
  registry.add(adapter(1));
  const std::string names[2] = {"a", "b"};
  int i = 0;
  for (auto _ : state) registry.activate(names[i++ & 1]);
  registry.deactivate();
  state.counters["adapter_MB"] = double(adapter(0)->info().bytes) / 1e6;
}
BENCHMARK(BM_AdapterSwap)->Unit(benchmark::kMicrosecond);

// Model::apply_adapter alone: the shape check and the atomic pointer exchange.
void BM_AdapterApply(benchmark::State& state) {
  auto model = model_05b();
  const std::shared_ptr<const LoraAdapter> a[2] = {adapter(0), adapter(1)};
  int i = 0;
  for (auto _ : state) model->apply_adapter(a[i++ & 1]);
  model->remove_adapter();
}
BENCHMARK(BM_AdapterApply)->Unit(benchmark::kMicrosecond);

// Read, validate and upload the 35 MB adapter from a PEFT directory (f32 safetensors, page cache warm).
void BM_AdapterLoad(benchmark::State& state) {
  auto model = model_05b();
  const auto dir = bench_model("qwen2.5-0.5b").parent_path() / "adapter-r16-all7";
  adapter(0)->save(dir);
  for (auto _ : state) benchmark::DoNotOptimize(LoraAdapter::load(dir, *model));
  state.counters["MB_per_s"] =
      benchmark::Counter(double(adapter(0)->info().bytes) * double(state.iterations()) / 1e6, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_AdapterLoad)->Unit(benchmark::kMillisecond)->Iterations(10);

// merge_adapter (168 projections: W + scale·B·A into new tensors) and unmerge_adapter (restore).
void BM_AdapterMerge(benchmark::State& state) {
  auto model = model_05b();
  double unmerge_s = 0;
  for (auto _ : state) {
    model->merge_adapter(adapter(0));
    state.PauseTiming();
    const auto t0 = std::chrono::steady_clock::now();
    model->unmerge_adapter();
    unmerge_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.ResumeTiming();
  }
  state.counters["unmerge_ms"] = 1e3 * unmerge_s / double(state.iterations());
}
BENCHMARK(BM_AdapterMerge)->Unit(benchmark::kMillisecond)->Iterations(3);

// Decode of 32 tokens after a 16-token prompt: arg 0 base model, 1 unmerged adapter, 2 merged adapter.
void BM_CpuDecodeWithAdapter(benchmark::State& state) {
  auto model = model_05b();
  const int mode = int(state.range(0));
  if (mode == 2) model->merge_adapter(adapter(0));
  const LoraSource* lora = mode == 1 ? &adapter(0)->source() : nullptr;
  const ForwardOptions opts{.logits = LogitsFor::last_token, .lora = lora};
  const int64_t vocab = model->config().vocab_size, steps = 32;
  std::vector<int32_t> prompt(16);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  for (auto _ : state) {
    state.PauseTiming();
    KVCache cache = model->make_cache(16 + steps);
    Tensor logits = model->forward(std::vector<SequenceInput>{{prompt, &cache}}, opts);
    state.ResumeTiming();
    for (int64_t s = 0; s < steps; ++s) {
      const int32_t next[] = {int32_t((s * 31 + 7) % vocab)};
      logits = model->forward(std::vector<SequenceInput>{{next, &cache}}, opts);
    }
    benchmark::DoNotOptimize(logits);
  }
  if (mode == 2) model->unmerge_adapter();
  state.counters["tok_per_s"] = benchmark::Counter(double(steps) * double(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CpuDecodeWithAdapter)->ArgName("none0_unmerged1_merged2")->Arg(0)->Arg(1)->Arg(2)
    ->Unit(benchmark::kMillisecond)->Iterations(3);

// CUDA, 0.5B shape: decode with no adapter, with an unmerged r16 all-seven adapter, and with two such adapters
// swapped on every step, run one after another inside each iteration (256 steps each after a 16-token
// prompt) so a shared machine's drift hits all three alike. Counters: tok/s of each, the adapter's overhead in
// % of the base, and what a swap adds to a step in µs (alternating minus constant adapter, per step).
void BM_CudaDecodeWithAdapter(benchmark::State& state) {
  const std::shared_ptr<Model> model = load_or_skip(state, "qwen2.5-0.5b", {.device = Device::cuda});
  if (!model) return;
  const std::shared_ptr<const LoraAdapter> a[2] = {LoraAdapter::random("a", r16_all_seven(), *model, 1),
                                                   LoraAdapter::random("b", r16_all_seven(), *model, 2)};
  const int64_t vocab = model->config().vocab_size, steps = 256;
  std::vector<int32_t> prompt(16);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  KVCache cache = model->make_cache(16 + steps);
  // mode 0: base; 1: adapter a; 2: a and b alternating. Returns seconds for the decode steps.
  const auto run = [&](int mode) {
    cache.truncate(0);
    model->forward(std::vector<SequenceInput>{{prompt, &cache}});
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s) {
      const LoraSource* lora = mode == 0 ? nullptr : &a[mode == 2 ? s & 1 : 0]->source();
      const int32_t next[] = {int32_t((s * 31 + 7) % vocab)};
      benchmark::DoNotOptimize(model->forward(std::vector<SequenceInput>{{next, &cache}}, {.lora = lora}));
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int mode = 0; mode < 3; ++mode) run(mode);  // record the graph, warm everything
  const int64_t graphs = model->decode_graphs_recorded();
  double total[3] = {};
  for (auto _ : state)
    for (int mode = 0; mode < 3; ++mode) total[mode] += run(mode);
  const double n = double(state.iterations()) * double(steps);
  state.counters["base_tok_per_s"] = n / total[0];
  state.counters["adapter_tok_per_s"] = n / total[1];
  state.counters["swapping_tok_per_s"] = n / total[2];
  state.counters["adapter_overhead_pct"] = 100.0 * (total[1] / total[0] - 1.0);
  state.counters["swap_us_per_step"] = 1e6 * (total[2] - total[1]) / n;
  state.counters["graphs_recorded_while_timed"] = double(model->decode_graphs_recorded() - graphs);
}
BENCHMARK(BM_CudaDecodeWithAdapter)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace
}  // namespace wick::bench

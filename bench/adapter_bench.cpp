// LoRA adapters on a Qwen2.5-0.5B-shaped random model (CPU, f32 compute) with r16 adapters on all seven
// projections (8.8 M parameters, 35 MB): swap between resident adapters, load from disk, merge, and decode
// speed with an unmerged adapter beside the base model, measured in the same run.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <vector>

#include "bench_util.h"
#include "wick/adapter.h"
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

}  // namespace
}  // namespace wick::bench

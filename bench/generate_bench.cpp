// Generation paths and sampling: what streaming costs over generate(), what a callback costs, and
// what each sampling strategy costs per token at Qwen2's vocabulary size.
//
// BM_StreamOverhead runs the four paths (generate, callback stream, pull iterator, async stream)
// interleaved inside each iteration, rotating their order, on the same model, prompt, seed and token
// count, so drift of a shared machine hits all four alike. Counters: each path's ms per request, the
// streaming paths' overhead in % of generate() (from the totals, and *_paired_pct: the median over
// iterations of each path's time over generate's in the same iteration). Use --benchmark_repetitions=5
// (or more) and read the medians; CPU 0.5B at 10 / 50 / 100 tokens (about 5 tok/s here), tiny also at 1000.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include <time.h>

#include "bench_util.h"
#include "wick/error.h"
#include "wick/generator.h"
#include "wick/sampler.h"

namespace wick::bench {
namespace {

std::shared_ptr<const Model> model_like(const std::string& like, Device device = Device::cpu) {
  static std::map<std::pair<std::string, Device>, std::shared_ptr<const Model>> cache;
  auto& m = cache[{like, device}];
  if (!m) m = Model::load(bench_model(like), {.device = device});
  return m;
}

std::vector<int32_t> prompt_of(int64_t vocab) {
  std::vector<int32_t> p(16);
  for (size_t i = 0; i < p.size(); ++i) p[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  return p;
}

// Seeded sampling with every token generated (no EOS stop), so all paths do identical work.
GenerateParams params_for(int64_t tokens) {
  return {.max_tokens = int32_t(tokens), .ignore_eos = true,
          .sampling = SamplingParams{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 1234}};
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// CPU time of the whole process (every thread: pool workers, OpenBLAS, the async worker), in ms. On a
// machine shared with builds, wall time mostly measures the neighbours; CPU time measures the work.
double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

void BM_StreamOverhead(benchmark::State& state, const std::string& like, Device device) {
  std::shared_ptr<const Model> model;
  try {
    model = model_like(like, device);
  } catch (const Error& e) {  // no GPU on this machine
    state.SkipWithError(e.what());
    return;
  }
  const Generator gen(model);
  const auto prompt = prompt_of(gen.model().config().vocab_size);
  const GenerateParams params = params_for(state.range(0));
  // The reference tokens double as the warm-up; computed once per shape, not per repetition.
  static std::map<std::pair<std::string, int64_t>, std::vector<int32_t>> reference;
  auto& want = reference[{like + (device == Device::cpu ? "" : "/cuda"), state.range(0)}];
  if (want.empty()) want = gen.generate(prompt, params).output_ids;
  enum { kGenerate, kStream, kIterator, kAsync };
  std::array<double, 4> total{}, cpu{};
  std::array<std::vector<double>, 4> paired;  // per iteration: this path's time over generate's that iteration
  static int64_t round = 0;  // rotates which path goes first, across repetitions too
  for (auto _ : state) {
    std::array<double, 4> ms{};
    for (int k = 0; k < 4; ++k) {
      const int path = int((k + round) % 4);
      std::vector<int32_t> got;
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = process_cpu_ms();
      if (path == kGenerate) {
        got = gen.generate(prompt, params).output_ids;
      } else if (path == kStream) {
        gen.generate_stream(prompt, params, [&](const StreamToken& t) {
          got.push_back(t.id);
          return true;
        });
      } else if (path == kIterator) {
        for (const StreamToken& t : gen.stream(prompt, params)) got.push_back(t.id);
      } else {
        AsyncStream s = gen.stream_async(prompt, params);
        while (auto t = s.next()) got.push_back(t->id);
      }
      ms[size_t(path)] = ms_since(t0);
      total[size_t(path)] += ms[size_t(path)];
      cpu[size_t(path)] += process_cpu_ms() - c0;
      if (got != want) state.SkipWithError("a path produced different tokens");
    }
    for (size_t path = 0; path < 4; ++path) paired[path].push_back(ms[path] / ms[kGenerate]);
    ++round;
  }
  const double n = double(state.iterations());
  state.counters["generate_ms"] = total[kGenerate] / n;
  state.counters["stream_ms"] = total[kStream] / n;
  state.counters["iterator_ms"] = total[kIterator] / n;
  state.counters["async_ms"] = total[kAsync] / n;
  state.counters["stream_pct"] = 100.0 * (total[kStream] / total[kGenerate] - 1.0);
  state.counters["iterator_pct"] = 100.0 * (total[kIterator] / total[kGenerate] - 1.0);
  state.counters["async_pct"] = 100.0 * (total[kAsync] / total[kGenerate] - 1.0);
  state.counters["stream_cpu_pct"] = 100.0 * (cpu[kStream] / cpu[kGenerate] - 1.0);
  state.counters["iterator_cpu_pct"] = 100.0 * (cpu[kIterator] / cpu[kGenerate] - 1.0);
  state.counters["async_cpu_pct"] = 100.0 * (cpu[kAsync] / cpu[kGenerate] - 1.0);
  state.counters["tok_per_s"] = double(params.max_tokens) / (total[kGenerate] / n / 1000.0);
  // The median of the paired per-iteration ratios: robust to the odd iteration a shared host slows down.
  const auto median_pct = [](std::vector<double> r) {
    std::sort(r.begin(), r.end());
    const size_t m = r.size() / 2;
    return 100.0 * ((r.size() % 2 ? r[m] : (r[m - 1] + r[m]) / 2) - 1.0);
  };
  state.counters["stream_paired_pct"] = median_pct(paired[kStream]);
  state.counters["iterator_paired_pct"] = median_pct(paired[kIterator]);
  state.counters["async_paired_pct"] = median_pct(paired[kAsync]);
}
// generate() on the GPU sampling from the device's summary of each step's logits against the whole row downloaded
// and sampled on the host, alternating in one run: greedy, Qwen2.5's defaults (top-k 20), top-k 40 with top-p.
void BM_DeviceSampling(benchmark::State& state, SamplingParams sampling) {
  std::shared_ptr<const Model> model;
  try {
    model = model_like("qwen2.5-0.5b", Device::cuda);
  } catch (const Error& e) {  // no GPU on this machine
    state.SkipWithError(e.what());
    return;
  }
  const Generator gen(model);
  const auto prompt = prompt_of(gen.model().config().vocab_size);
  sampling.seed = 1234;
  GenerateParams params{.max_tokens = 256, .ignore_eos = true, .sampling = sampling};
  const std::vector<int32_t> want = gen.generate(prompt, params).output_ids;  // also the warm-up
  std::array<double, 2> total{};  // [device summary, whole row]
  for (auto _ : state)
    for (int summary : {1, 0}) {
      params.device_summary = summary == 1;
      const auto t0 = std::chrono::steady_clock::now();
      if (gen.generate(prompt, params).output_ids != want) state.SkipWithError("different tokens");
      total[size_t(1 - summary)] += ms_since(t0);
    }
  const double n = double(state.iterations()), tokens = double(params.max_tokens);
  state.counters["summary_tok_per_s"] = tokens / (total[0] / n / 1000.0);
  state.counters["whole_row_tok_per_s"] = tokens / (total[1] / n / 1000.0);
  state.counters["speedup"] = total[1] / total[0];
}
BENCHMARK_CAPTURE(BM_DeviceSampling, cuda_greedy, SamplingParams::greedy_params())
    ->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK_CAPTURE(BM_DeviceSampling, cuda_qwen_defaults,
                  SamplingParams{.temperature = 0.7f, .top_k = 20, .top_p = 0.8f, .repetition_penalty = 1.05f})
    ->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK_CAPTURE(BM_DeviceSampling, cuda_top_k_40, SamplingParams{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f})
    ->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

BENCHMARK_CAPTURE(BM_StreamOverhead, tiny, std::string("tiny"), Device::cpu)
    ->Arg(10)->Arg(50)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK_CAPTURE(BM_StreamOverhead, qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cpu)
    ->Arg(10)->Arg(50)->Arg(100)->Unit(benchmark::kMillisecond)->Iterations(1);
// On the GPU each iteration runs every path once; several iterations per repetition average the host's jitter.
BENCHMARK_CAPTURE(BM_StreamOverhead, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->Arg(100)->Unit(benchmark::kMillisecond)->Iterations(20);
BENCHMARK_CAPTURE(BM_StreamOverhead, cuda_qwen2_5_0_5b, std::string("qwen2.5-0.5b"), Device::cuda)
    ->Arg(1000)->Unit(benchmark::kMillisecond)->Iterations(6);

// The consumer's callback on the tiny model (100 tokens), where a step is cheap enough for the
// callback to show: 0 nothing, 1 format id and logprob into a string, 2 accumulate tokens and text.
void BM_CallbackCost(benchmark::State& state) {
  const Generator gen(model_like("tiny"));
  const auto prompt = prompt_of(gen.model().config().vocab_size);
  const GenerateParams params = params_for(100);
  const int64_t kind = state.range(0);
  std::string sink;
  std::vector<StreamToken> kept;
  for (auto _ : state) {
    if (kind < 0) {
      benchmark::DoNotOptimize(gen.generate(prompt, params));
      continue;
    }
    sink.clear();
    kept.clear();
    gen.generate_stream(prompt, params, [&](const StreamToken& t) {
      if (kind == 1) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%d:%.4f ", t.id, double(t.logprob));
        sink += buf;
      } else if (kind == 2) {
        kept.push_back(t);
        sink += t.text;
      }
      return true;
    });
    benchmark::DoNotOptimize(sink);
  }
  state.SetLabel(kind < 0 ? "generate (no callback)" : kind == 0 ? "empty" : kind == 1 ? "snprintf" : "accumulate");
  state.counters["us_per_token"] =
      benchmark::Counter(100.0 * double(state.iterations()), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_CallbackCost)->Arg(-1)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// Sampler::choose at vocab 151,936 on logits shaped like a trained model's (a few hundred plausible
// tokens well above a Gaussian floor), with 200 ids already seen for the repetition penalty.
void BM_SamplingCost(benchmark::State& state, SamplingParams params) {
  constexpr int64_t kVocab = 151936;
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 1.5f);
  std::vector<float> logits(kVocab);
  for (float& x : logits) x = noise(rng);
  for (int i = 0; i < 300; ++i) logits[size_t(rng() % kVocab)] += 8.0f + float(rng() % 800) / 100.0f;
  std::vector<int32_t> seen(200);
  for (int32_t& id : seen) id = int32_t(rng() % kVocab);
  params.seed = 1;
  Sampler sampler(params, kVocab);
  sampler.observe_context(seen);
  for (auto _ : state) benchmark::DoNotOptimize(sampler.choose(logits));
}
BENCHMARK_CAPTURE(BM_SamplingCost, greedy, SamplingParams::greedy_params())->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SamplingCost, temperature, SamplingParams{.temperature = 0.8f})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SamplingCost, top_k_40, SamplingParams{.top_k = 40})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SamplingCost, top_p_0_9, SamplingParams{.top_p = 0.9f})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SamplingCost, min_p_0_05, SamplingParams{.min_p = 0.05f})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SamplingCost, qwen_defaults,
                  SamplingParams{.temperature = 0.7f, .top_k = 20, .top_p = 0.8f, .repetition_penalty = 1.05f})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_SamplingCost, everything,
                  SamplingParams{.temperature = 0.7f, .top_k = 50, .top_p = 0.9f, .min_p = 0.05f,
                                 .repetition_penalty = 1.1f, .presence_penalty = 0.5f, .frequency_penalty = 0.5f,
                                 .logit_bias = {{100, 2.0f}}, .top_logprobs = 5})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace wick::bench

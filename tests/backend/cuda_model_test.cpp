// Whole models on CUDA against the CPU backend and transformers: logits, cached decode, greedy ids, and decode steps
// with adapters swapped between them. Skipped (not failed) on machines without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <memory>
#include <utility>
#include <vector>

#include "../model/model_test_util.h"
#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"
#include "wick/adapter.h"
#include "wick/generator.h"
#include "wick/model.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

class CudaModel : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    try {
      make_backend(Device::cuda);
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();
    }
  }
  // The fixture model on both backends, and the transformers reference saved beside it.
  struct Loaded {
    std::shared_ptr<Model> gpu, cpu;
    std::shared_ptr<const SafetensorsFile> ref;
  };
  Loaded load() const {
    const auto dir = fixture("models/" + GetParam());
    return {Model::load(dir, {.device = Device::cuda}), Model::load(dir),
            SafetensorsFile::open(dir / "reference.safetensors")};
  }
};

TEST_P(CudaModel, LogitsMatchCpuAndTransformers) {
  const auto [gpu, cpu, ref] = load();
  const Tensor ids = ref->tensor("input_ids");
  std::vector<std::vector<int32_t>> rows;
  for (int64_t r = 0; r < ids.dim(0); ++r) rows.push_back(int_row(ids, r));
  const Tensor got = gpu->logits(rows);
  const Compared vs_cpu = compare(got, cpu->logits(rows)), vs_hf = compare(got, ref->tensor("logits"));
  EXPECT_TRUE(vs_cpu.finite);
  EXPECT_LE(vs_cpu.rel_l2, 3e-2);
  EXPECT_LE(vs_hf.rel_l2, 3e-2);
  std::cout << GetParam() << ": CUDA bf16 logits, relative L2 error vs CPU " << vs_cpu.rel_l2 << ", vs transformers "
            << vs_hf.rel_l2 << "\n";
}

TEST_P(CudaModel, CachedDecodeEqualsFullPrefill) {
  auto gpu = Model::load(fixture("models/" + GetParam()), {.device = Device::cuda});
  const std::vector<int32_t> tokens{5, 9, 100, 42, 7, 300, 11, 12};
  const int64_t n = int64_t(tokens.size()), vocab = gpu->config().vocab_size;
  const Tensor full = gpu->logits({tokens}).reshape({n, vocab});
  KVCache cache = gpu->make_cache(n);
  for (int64_t t = 0; t < n; ++t) {
    const int32_t one[] = {tokens[size_t(t)]};
    const Tensor step = gpu->forward(std::vector<SequenceInput>{{one, &cache}});
    EXPECT_CLOSE(step, full.rows(t, t + 1), 2e-2) << "position " << t;
  }
}

// Greedy ids equal the CPU backend's; where they part, the CPU's top two logits must be a bf16-level tie.
TEST_P(CudaModel, GreedyIdsMatchCpuOrPartAtATie) {
  const auto [gpu, cpu, ref] = load();
  const Tensor prompts = ref->tensor("greedy_prompts");
  for (int64_t r = 0; r < prompts.dim(0); ++r) {
    const auto prompt = int_row(prompts, r);
    const GenerateParams params{.max_tokens = 24, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
    const auto a = Generator(cpu).generate(prompt, params).output_ids;
    const auto b = Generator(gpu).generate(prompt, params).output_ids;
    size_t first = 0;
    while (first < a.size() && a[first] == b[first]) ++first;
    if (first == a.size()) continue;
    std::vector<int32_t> context = prompt;
    context.insert(context.end(), a.begin(), a.begin() + int64_t(first));
    const Tensor logits = cpu->logits({context});
    const float* last = logits.data<float>() + (int64_t(context.size()) - 1) * cpu->config().vocab_size;
    const float gap = std::fabs(last[a[first]] - last[b[first]]);
    std::cout << GetParam() << " prompt " << r << ": CUDA greedy parts from CPU at token " << first << " (" << a[first]
              << " vs " << b[first] << ", CPU logit gap " << gap << ")\n";
    EXPECT_LT(gap, 0.05f * std::fabs(last[a[first]])) << "divergence at token " << first << " is not a near-tie";
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaModel, ::testing::Values("tiny-tied", "tiny-untied"));

// Decode steps through the recorded graph with adapters swapped between steps (two of rank ≤ 64, none, and one
// of rank 80 that takes the plain ops), each step against the CPU backend; one graph for the adapters, one without.
TEST(CudaAdapterDecode, SwapsBetweenStepsMatchCpuWithoutRecapture) {
  try {
    make_backend(Device::cuda);
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  const auto dir = fixture("models/tiny-tied");
  auto gpu = Model::load(dir, {.device = Device::cuda});
  auto cpu = Model::load(dir);
  LoraConfig all7, wide;
  all7.r = 16, all7.lora_alpha = 32, all7.all_linear = true;
  wide.r = 80, wide.lora_alpha = 16, wide.all_linear = true;
  const auto peft_gpu = LoraAdapter::load(fixture("adapters/tied-all7"), *gpu);
  const auto peft_cpu = LoraAdapter::load(fixture("adapters/tied-all7"), *cpu);
  const auto rand_gpu = LoraAdapter::random("r16", all7, *gpu, 7), rand_cpu = LoraAdapter::random("r16", all7, *cpu, 7);
  const auto wide_gpu = LoraAdapter::random("r80", wide, *gpu, 8), wide_cpu = LoraAdapter::random("r80", wide, *cpu, 8);
  const std::vector<std::pair<const LoraSource*, const LoraSource*>> schedule{
      {&peft_gpu->source(), &peft_cpu->source()}, {&rand_gpu->source(), &rand_cpu->source()},
      {nullptr, nullptr},
      {&peft_gpu->source(), &peft_cpu->source()}, {&wide_gpu->source(), &wide_cpu->source()},
      {&rand_gpu->source(), &rand_cpu->source()}, {nullptr, nullptr}};
  const std::vector<int32_t> prompt{3, 17, 99, 4};
  KVCache gc = gpu->make_cache(16), cc = cpu->make_cache(16);
  const int64_t at_load = gpu->decode_graphs_recorded();  // the warm-up's
  gpu->forward(std::vector<SequenceInput>{{prompt, &gc}});
  cpu->forward(std::vector<SequenceInput>{{prompt, &cc}});
  for (size_t s = 0; s < schedule.size(); ++s) {
    const int32_t token[] = {int32_t(20 + 11 * s)};
    const Tensor got = gpu->forward(std::vector<SequenceInput>{{token, &gc}}, {.lora = schedule[s].first});
    const Tensor want = cpu->forward(std::vector<SequenceInput>{{token, &cc}}, {.lora = schedule[s].second});
    EXPECT_CLOSE(got, want, 3e-2) << "step " << s;
  }
  EXPECT_EQ(gpu->decode_graphs_recorded() - at_load, 2);  // the base model's and the adapters' (all of them)
}

}  // namespace
}  // namespace wick::test

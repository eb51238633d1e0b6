// The CUDA trainer against the CPU trainer (the reference, checked against PEFT in peft_training_test.cpp) on whole
// tiny models: one optimizer step from the same non-zero adapter, on the same batches, with and without gradient
// checkpointing and LoRA dropout, for a causal LM (untied and tied) and a sequence classifier training `score`.
// Skipped (not failed) on machines without a CUDA device.
//
// The CUDA path stores activations and frozen weights in bf16 (the model loads as bf16) and keeps the LoRA factors,
// their gradients and AdamW's state in f32. Tolerances:
// - the loss, relative 1e-2: the forward in bf16 is good to ~3e-3 relative per activation (DESIGN: ≤ 1e-2 for a
//   whole model's logits), and the loss is a mean of log-softmaxes of those logits.
// - each gradient, relative L2 over the tensor 5e-2: the backward multiplies bf16 activations and bf16 gradients of
//   activations (each ~2⁻⁹ relative) through every layer above, so the errors of a few layers add; a missing or
//   wrong term (a dropped residual, the other dropout mask, a transposed factor) is an error of order 1.
// - the step's update: AdamW's first step moves each element by ~lr·sign(g), so the factors after the step are
//   compared only where |g| is not within the gradient noise (relative 1e-3 of lr otherwise).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "test_util.h"
#include "wick/error.h"
#include "wick/train.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;

constexpr double kLossRelTol = 1e-2;
constexpr double kGradRelL2 = 5e-2;

std::shared_ptr<Model> load_on(const std::string& name, Device device) {
  return Model::load(fixture("models/" + name), {.device = device});
}

// Eight sequences of 7–20 ids below 300 (every tiny model's vocab is 384), a class label 0–1 on each for the
// classifier (tiny-seqcls has 2 labels or more).
fs::path write_data(const fs::path& dir) {
  std::string text;
  for (int i = 0; i < 8; ++i) {
    text += "{\"input_ids\": [";
    const int n = 7 + (i * 5) % 14;
    for (int j = 0; j < n; ++j) {
      if (j) text += ',';
      text += std::to_string(4 + (i * 37 + j * 11) % 296);
    }
    text += "], \"label\": " + std::to_string(i % 2) + "}\n";
  }
  write_file(dir / "data.jsonl", text);
  return dir / "data.jsonl";
}

double rel_l2(const Tensor& got, const Tensor& want) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = double(got.data<float>()[i]) - want.data<float>()[i];
    num += d * d;
    den += double(want.data<float>()[i]) * want.data<float>()[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

struct Case {
  const char* model;
  bool checkpointing;
  double dropout;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << (c.checkpointing ? ", checkpointing" : "") << ", dropout " << c.dropout;
}

class TrainerCuda : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    try {
      gpu_model = load_on(GetParam().model, Device::cuda);
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();
    }
    cpu_model = load_on(GetParam().model, Device::cpu);
    dir = temp_dir("trainer-cuda");
    write_data(dir);
  }
  TrainOptions options(const fs::path& out) const {
    TrainOptions o;
    o.data = dir / "data.jsonl";
    o.out = out;
    o.targets = {"all-linear"};
    o.rank = 4;
    o.lr = 1e-2;
    o.batch_size = 4;
    o.grad_accum = 2;
    o.max_grad_norm = 0;
    o.schedule = "constant";
    o.shuffle = false;
    return o;
  }
  std::shared_ptr<Model> cpu_model, gpu_model;
  fs::path dir;
};

TEST_P(TrainerCuda, OneStepMatchesTheCpu) {
  const Case& c = GetParam();
  // A start where both factors are non-zero (PEFT's B = 0 would leave every A gradient zero): three CPU steps.
  TrainOptions warm = options(dir / "start");
  warm.steps = 3;
  Trainer(cpu_model, nullptr, warm).run();

  TrainOptions o = options(dir / "cpu");
  o.init_adapter = dir / "start";
  o.steps = 1;
  o.gradient_checkpointing = c.checkpointing;
  o.dropout = c.dropout;
  Trainer cpu(cpu_model, nullptr, o);
  const StepReport want = cpu.step();
  o.out = dir / "gpu";
  Trainer gpu(gpu_model, nullptr, o);
  const StepReport got = gpu.step();

  EXPECT_NEAR(got.loss, want.loss, kLossRelTol * std::abs(want.loss));
  EXPECT_EQ(got.tokens, want.tokens);
  EXPECT_NEAR(got.grad_norm, want.grad_norm, kGradRelL2 * want.grad_norm);
  const auto gpu_grads = gpu.gradients(), cpu_grads = cpu.gradients();
  ASSERT_EQ(gpu_grads.size(), cpu_grads.size());
  for (const auto& [key, g] : cpu_grads) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(gpu_grads.count(key));
    ASSERT_EQ(gpu_grads.at(key).shape(), g.shape());
    EXPECT_LT(rel_l2(gpu_grads.at(key), g), kGradRelL2);
  }

  // AdamW's first step from the same state: where the gradient is clear of the noise both move the same way.
  const auto gpu_after = gpu.tensors(), cpu_after = cpu.tensors();
  for (const auto& [key, w] : cpu_after) {
    SCOPED_TRACE(key);
    const Tensor& g = cpu_grads.at(key);
    double scale = 0;
    for (int64_t i = 0; i < g.numel(); ++i) scale = std::max(scale, double(std::abs(g.data<float>()[i])));
    int64_t compared = 0, differ = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      if (std::abs(g.data<float>()[i]) < 0.1 * scale) continue;
      ++compared;
      differ += std::abs(gpu_after.at(key).data<float>()[i] - w.data<float>()[i]) > 1e-3 * o.lr;
    }
    EXPECT_EQ(differ, 0) << "of " << compared << " elements with clear gradients";
  }
  EXPECT_GT(gpu.peak_memory_bytes(), 0);
}

INSTANTIATE_TEST_SUITE_P(TinyModels, TrainerCuda,
                         ::testing::Values(Case{"tiny-untied", false, 0.0}, Case{"tiny-untied", true, 0.0},
                                           Case{"tiny-tied", false, 0.1}, Case{"tiny-tied", true, 0.1},
                                           Case{"tiny-seqcls", false, 0.0}, Case{"tiny-seqcls", true, 0.1}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name = info.param.model;
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name + (info.param.checkpointing ? "_ckpt" : "") +
                                  (info.param.dropout > 0 ? "_dropout" : "");
                         });

}  // namespace
}  // namespace wick::test

// The model's small API that adapters go through (upload, merge_lora / unmerge_lora, state_dict), checked against
// the fixture's own file and against W + scale·B·A computed here in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "model/decode_step.h"
#include "model/linear.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/model.h"
#include "wick/quant.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

// Factors on two projections of a model shaped like tiny-tied (hidden 64), plus a replaced head.
struct TwoProjections : LoraSource {
  LoraFactors q, down;
  Tensor new_head;
  const LoraFactors* factors(int layer, ProjKind kind) const override {
    if (layer == 0 && kind == ProjKind::q) return &q;
    if (layer == 1 && kind == ProjKind::down) return &down;
    return nullptr;
  }
  const Tensor* head() const override { return new_head.defined() ? &new_head : nullptr; }
};

Tensor ramp(const Shape& shape, float step, float offset) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = offset + step * float((i * 13) % 17) - 0.01f * float(i % 5);
  return t;
}

TEST(ModelApi, StateDictIsEveryTensorOfTheFiles) {
  for (const char* name : {"models/tiny-tied", "models/tiny-untied", "models/tiny-seqcls"}) {
    const auto dir = fixture(name);
    auto model = Model::load(dir);
    const TensorStore store = TensorStore::open_dir(dir);
    const auto state = model->state_dict();
    EXPECT_EQ(state.size(), store.names().size()) << name;
    for (const auto& [key, tensor] : state)
      EXPECT_TRUE(same_bits(tensor, store.tensor(key).to(DType::f32))) << name << ": " << key;
  }
}

TEST(ModelApi, UploadGivesTheComputeDtypeOnTheModelsDevice) {
  auto model = Model::load(fixture("models/tiny-tied"));
  EXPECT_EQ(model->compute_dtype(), DType::f32);
  const Tensor t = model->upload(Tensor::from_floats({1.5f, -2.0f}, {2}).to(DType::bf16));
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.device(), Device::cpu);
  EXPECT_EQ(t.data<float>()[1], -2.0f);
}

// On weights the CPU keeps in bf16 (the fixture's files are bf16) or f16 (the same files converted) the merged weight
// is W + scale·B·A computed in f32 and rounded to bf16 or f16 once; on f32 weights (--compute f32) it is that sum in
// f32; on 8-bit weights (--weights int8) that sum (W dequantised) quantised again, each value within half its block's
// new step.
struct MergeCase {
  CpuWeights weights;
  bool f16_files = false;
};

class MergeLora : public ::testing::TestWithParam<MergeCase> {};

TEST_P(MergeLora, AddsScaledProductAndUnmergeRestoresBits) {
  const auto dir = fixture("models/tiny-untied");
  auto model = Model::load(GetParam().f16_files ? f16_copy(dir) : dir, {.cpu_weights = GetParam().weights});
  const bool native = GetParam().weights == CpuWeights::native, int8 = GetParam().weights == CpuWeights::int8;
  const bool bf16 = native && !GetParam().f16_files, f16 = native && GetParam().f16_files;
  EXPECT_EQ(model->weight_dtype(), bf16 ? DType::bf16 : f16 ? DType::f16 : int8 ? DType::q8_0 : DType::f32);
  const ModelConfig& c = model->config();
  auto lora = std::make_shared<TwoProjections>();
  const int64_t r = 3;
  lora->q = {.a = ramp({r, c.hidden_size}, 0.01f, -0.05f), .b = ramp({c.q_dim(), r}, 0.02f, -0.1f), .scale = 1.5f};
  lora->down = {.a = ramp({r, c.intermediate_size}, 0.015f, -0.1f), .b = ramp({c.hidden_size, r}, 0.01f, 0.02f),
                .scale = 0.5f};
  lora->new_head = ramp({c.vocab_size, c.hidden_size}, 0.001f, 0.0f);
  const auto before = model->state_dict();
  const std::vector<std::vector<int32_t>> rows{{1, 2, 3, 4}};
  const Tensor base_logits = model->logits(rows);

  model->merge_lora(lora);
  EXPECT_EQ(model->merged_lora(), lora);
  const auto merged = model->state_dict();
  int changed = 0;
  for (size_t i = 0; i < merged.size(); ++i) changed += !same_bits(merged[i].second, before[i].second);
  EXPECT_EQ(changed, 3);  // q of layer 0, down of layer 1, the head
  for (const auto& [name, tensor] : merged)
    if (name == "lm_head.weight") {
      EXPECT_TRUE(same_bits(tensor, lora->new_head)) << "the replaced head";
    }
  const auto check = [&](const std::string& name, const LoraFactors& f) {
    const Tensor* w0 = nullptr;
    const Tensor* w1 = nullptr;
    for (size_t i = 0; i < merged.size(); ++i)
      if (merged[i].first == name) w0 = &before[i].second, w1 = &merged[i].second;
    ASSERT_NE(w1, nullptr) << name;
    const int64_t out = w1->dim(0), in = w1->dim(1), rank = f.a.dim(0);
    for (int64_t o = 0; o < out; ++o) {
      std::vector<double> want(static_cast<size_t>(in));
      for (int64_t i = 0; i < in; ++i) {
        double d = 0;
        for (int64_t k = 0; k < rank; ++k) d += double(f.b.data<float>()[o * rank + k]) * f.a.data<float>()[k * in + i];
        want[size_t(i)] = w0->data<float>()[o * in + i] + f.scale * d;
      }
      for (int64_t i = 0; i < in; ++i) {
        // bf16: within one rounding of the sum (2⁻⁹ relative, and an f32 sum's rounding at a bf16 tie); f16 the same
        // at 2⁻¹¹ relative, or half its subnormal step 2⁻²⁴ below its normal range; q8_0: within half a step of the
        // block's new scale, at most max |sum| / 127 · (1 + 2⁻¹⁰) (wick/quant.h)
        double tolerance = 1e-6;
        if (bf16) tolerance += std::ldexp(std::fabs(want[size_t(i)]), -8);
        if (f16) tolerance += std::ldexp(std::fabs(want[size_t(i)]), -10) + std::ldexp(1.0, -25);
        if (int8) {
          const int64_t first = i / kQ8Group * kQ8Group;
          double amax = 0;
          for (int64_t e = first; e < std::min(in, first + kQ8Group); ++e)
            amax = std::max(amax, std::fabs(want[size_t(e)]));
          tolerance += amax / 127 * (1 + std::ldexp(1.0, -10)) / 2;
        }
        EXPECT_NEAR(w1->data<float>()[o * in + i], want[size_t(i)], tolerance) << name << " [" << o << ", " << i << "]";
      }
    }
  };
  check("model.layers.0.self_attn.q_proj.weight", lora->q);
  check("model.layers.1.mlp.down_proj.weight", lora->down);

  EXPECT_WICK_ERROR(model->merge_lora(lora), ErrorKind::bad_input, "already merged");
  EXPECT_EQ(model->unmerge_lora(), lora);
  EXPECT_EQ(model->merged_lora(), nullptr);
  const auto after = model->state_dict();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(same_bits(after[i].second, before[i].second)) << after[i].first;
  const Tensor again = model->logits(rows);
  EXPECT_TRUE(same_bits(again, base_logits));
  EXPECT_EQ(model->unmerge_lora(), nullptr);  // nothing merged: a no-op
}

INSTANTIATE_TEST_SUITE_P(ModelApi, MergeLora,
                         ::testing::Values(MergeCase{CpuWeights::native}, MergeCase{CpuWeights::native, true},
                                           MergeCase{CpuWeights::f32}, MergeCase{CpuWeights::int8}),
                         [](const auto& info) {
                           const CpuWeights w = info.param.weights;
                           return w == CpuWeights::native ? (info.param.f16_files ? "f16" : "bf16")
                                  : w == CpuWeights::f32  ? "f32"
                                                          : "int8";
                         });

TEST(ModelApi, SetActiveLoraReturnsThePreviousOne) {
  auto model = Model::load(fixture("models/tiny-tied"));
  auto a = std::make_shared<TwoProjections>(), b = std::make_shared<TwoProjections>();
  EXPECT_EQ(model->set_active_lora(a), nullptr);
  EXPECT_EQ(model->set_active_lora(b), a);
  EXPECT_EQ(model->set_active_lora(nullptr), b);
  EXPECT_EQ(model->active_lora(), nullptr);
}

TEST(DecodeStepInputs, LayoutIsWhatTheKernelsRead) {
  // The step's first kernel reads an 8-byte address at offset 0; the others read i32 words after it.
  EXPECT_EQ(sizeof(StepInputs), 24u);
  EXPECT_EQ(offsetof(StepInputs, lora_table), 0u);
  EXPECT_EQ(offsetof(StepInputs, token), 8u);
  EXPECT_EQ(offsetof(StepInputs, position), 12u);
  EXPECT_EQ(offsetof(StepInputs, epoch), 16u);
}

TEST(LoraTable, ListsEveryFactorAtItsSlotWithTheLargestRank) {
  TwoProjections lora;
  lora.q = {.a = ramp({3, 8}, 0.1f, 0.0f), .b = ramp({8, 3}, 0.1f, 0.0f), .scale = 2.0f};
  lora.down = {.a = ramp({5, 8}, 0.1f, 0.0f), .b = ramp({8, 5}, 0.1f, 0.0f), .scale = 0.25f};
  const LoraSource::Table& t = lora.table(2);
  ASSERT_EQ(t.entries.size(), size_t(2 * kProjKinds));
  EXPECT_EQ(t.max_rank, 5);
  EXPECT_TRUE(t.uniform);
  EXPECT_EQ(t.device, Device::cpu);
  for (size_t i = 0; i < t.entries.size(); ++i) {
    const LoraEntry& e = t.entries[i];
    if (int64_t(i) == lora_slot(0, ProjKind::q)) {
      EXPECT_EQ(e.rank, 3);
      EXPECT_EQ(e.a, lora.q.a.raw());
      EXPECT_EQ(e.b, lora.q.b.raw());
      EXPECT_EQ(e.scale, 2.0f);
    } else if (int64_t(i) == lora_slot(1, ProjKind::down)) {
      EXPECT_EQ(e.rank, 5);
      EXPECT_EQ(e.scale, 0.25f);
    } else {
      EXPECT_EQ(e.rank, 0) << "slot " << i;
    }
  }
}

}  // namespace
}  // namespace wick::test

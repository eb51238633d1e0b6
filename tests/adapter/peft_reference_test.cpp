// Adapters made and run by PEFT 0.21 (scripts/make_adapter_fixtures.py): wick's logits, greedy ids and
// merged logits against PEFT's, and the base model restored exactly after remove and unmerge.
#include <gtest/gtest.h>

#include "adapter_test_util.h"
#include "cpu_paths.h"

namespace wick::test {
namespace {

constexpr double kTolerance = 1e-4;  // max |Δ| / max |ref|, the bar
// Merged into weights the CPU keeps in bf16, each merged weight is rounded to bf16 once (2⁻⁹ relative), as PEFT's
// merge into a bf16 model rounds it; PEFT merged in f32 here. DESIGN's bf16 range.
constexpr double kMergedBf16Tolerance = 1e-2;
// The same into f16 weights (tiny-seqcls's files), each merged weight rounded to f16 once (2⁻¹¹ relative at most):
// measured 3.4e-4 of the logits on seqcls-score.
constexpr double kMergedF16Tolerance = 1e-3;

struct Case {
  const char* adapter;
  const char* base;
};
std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.adapter; }

class PeftAdapter : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    model = Model::load(fixture(std::string("models/") + GetParam().base));
    adapter = LoraAdapter::load(dir(), *model);
    ref = SafetensorsFile::open(dir() / "reference.safetensors");
    rows = reference_rows(*ref);
  }
  std::filesystem::path dir() const { return fixture(std::string("adapters/") + GetParam().adapter); }
  bool causal() const { return model->config().head == ModelHead::causal_lm; }

  std::shared_ptr<Model> model;
  std::shared_ptr<const LoraAdapter> adapter;
  std::shared_ptr<const SafetensorsFile> ref;
  std::vector<std::vector<int32_t>> rows;
};

TEST_P(PeftAdapter, LogitsMatchPeft) {
  const Tensor expected = ref->tensor("logits");
  on_each_cpu_path(kTolerance, [&](double tolerance) {
    const Tensor logits = model->logits(rows, &adapter->source());
    ASSERT_EQ(logits.shape(), expected.shape());
    EXPECT_LE(relative_max_error(logits, expected), tolerance);
  });
  // The adapter must matter: PEFT's logits are far from the base model's.
  EXPECT_GT(relative_max_error(model->logits(rows), expected), 100 * kTolerance);
}

// Through the f32 products: rounded activations may part at a near tie of a random model's logits.
TEST_P(PeftAdapter, GreedyIdsMatchPeft) {
  if (!causal()) GTEST_SKIP() << "a classifier does not generate";
  const F32CpuProducts exact;
  model->apply_adapter(adapter);
  const Tensor prompts = ref->tensor("greedy_prompts"), expected = ref->tensor("greedy_ids");
  for (int64_t r = 0; r < prompts.dim(0); ++r)
    EXPECT_EQ(greedy(*model, model->active_lora().get(), int_row(prompts, r), expected.dim(1)), int_row(expected, r))
        << "prompt row " << r;
}

TEST_P(PeftAdapter, RemoveRestoresBaseLogitsBitExactly) {
  const Tensor base = model->logits(rows);
  const auto weights = weight_snapshot(*model);
  model->apply_adapter(adapter);
  EXPECT_TRUE(model->has_adapter());
  EXPECT_EQ(model->current_adapter(), adapter);
  const Tensor with = model->logits(rows, model->active_lora().get());
  EXPECT_LE(relative_max_error(with, ref->tensor("logits")), default_path_tolerance(kTolerance));
  EXPECT_EQ(changed_tensors(weights, weight_snapshot(*model)), 0) << "an unmerged adapter must not touch the weights";
  EXPECT_EQ(model->remove_adapter(), adapter);
  EXPECT_FALSE(model->has_adapter());
  EXPECT_EQ(model->current_adapter(), nullptr);
  EXPECT_TRUE(bit_equal(model->logits(rows, model->active_lora().get()), base));
}

TEST_P(PeftAdapter, MergeMatchesPeftAndUnmergeRestoresEveryWeightBitExactly) {
  // Merged in f32 weights (--compute f32), wick's merge is PEFT's to the bar.
  auto f32 = Model::load(fixture(std::string("models/") + GetParam().base), {.cpu_weights = CpuWeights::f32});
  f32->merge_adapter(LoraAdapter::load(dir(), *f32));
  EXPECT_LE(relative_max_error(f32->logits(rows), ref->tensor("merged_logits")), kTolerance);

  const Tensor base = model->logits(rows);
  const auto weights = weight_snapshot(*model);
  const DType weights_dtype = model->weight_dtype();
  model->merge_adapter(adapter);
  EXPECT_EQ(model->merged_adapter(), adapter);
  EXPECT_FALSE(model->has_adapter());
  EXPECT_LE(relative_max_error(model->logits(rows), ref->tensor("merged_logits")),
            weights_dtype == DType::bf16  ? kMergedBf16Tolerance
            : weights_dtype == DType::f16 ? kMergedF16Tolerance
                                          : kTolerance);
  const int expected_changes = int(adapter->info().lora_modules + int64_t(adapter->info().saved_modules.size()));
  EXPECT_EQ(changed_tensors(weights, weight_snapshot(*model)), expected_changes);
  EXPECT_EQ(model->unmerge_adapter(), adapter);
  EXPECT_EQ(model->merged_adapter(), nullptr);
  EXPECT_EQ(changed_tensors(weights, weight_snapshot(*model)), 0);
  EXPECT_TRUE(bit_equal(model->logits(rows), base));
}

TEST_P(PeftAdapter, SaveWritesWhatLoadReads) {
  const auto out = temp_dir("resave");
  adapter->save(out);
  auto again = LoraAdapter::load(out, *model);
  EXPECT_EQ(again->info().parameter_count, adapter->info().parameter_count);
  EXPECT_EQ(again->info().targets, adapter->info().targets);
  EXPECT_TRUE(bit_equal(model->logits(rows, &again->source()), model->logits(rows, &adapter->source())));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PeftAdapter,
                         ::testing::Values(Case{"tied-all7", "tiny-tied"}, Case{"untied-qv-rslora", "tiny-untied"},
                                           Case{"untied-patterns", "tiny-untied"}, Case{"seqcls-score", "tiny-seqcls"}),
                         [](const auto& info) {
                           std::string n = info.param.adapter;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// What each fixture's config means, checked against the shapes PEFT saved.
TEST(PeftAdapterInfo, ConfigsAreHonoured) {
  auto untied = Model::load(fixture("models/tiny-untied"));
  const auto rs = LoraAdapter::load(fixture("adapters/untied-qv-rslora"), *untied);
  EXPECT_EQ(rs->info().targets, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(rs->info().rank, 6);
  EXPECT_TRUE(rs->info().use_rslora);
  const LoraFactors* q = rs->source().factors(0, ProjKind::q);
  ASSERT_NE(q, nullptr);
  EXPECT_FLOAT_EQ(q->scale, float(4.0 / std::sqrt(6.0)));
  EXPECT_EQ(rs->source().factors(0, ProjKind::k), nullptr);

  const auto pat = LoraAdapter::load(fixture("adapters/untied-patterns"), *untied);
  EXPECT_EQ(pat->source().factors(1, ProjKind::q), nullptr) << "layers_to_transform [0, 2]";
  EXPECT_EQ(pat->source().factors(0, ProjKind::up), nullptr) << "up_proj is not targeted";
  EXPECT_EQ(pat->source().factors(0, ProjKind::down)->a.dim(0), 2) << "rank_pattern down_proj";
  EXPECT_EQ(pat->source().factors(2, ProjKind::o)->a.dim(0), 7) << "rank_pattern layers.2.self_attn.o_proj";
  EXPECT_EQ(pat->source().factors(0, ProjKind::o)->a.dim(0), 4);
  EXPECT_FLOAT_EQ(pat->source().factors(0, ProjKind::gate)->scale, 3.0f / 4.0f) << "alpha_pattern gate_proj";
  EXPECT_FLOAT_EQ(pat->source().factors(0, ProjKind::v)->scale, 20.0f / 4.0f);
  EXPECT_FLOAT_EQ(pat->source().factors(2, ProjKind::v)->scale, 8.0f / 4.0f);
  EXPECT_FLOAT_EQ(pat->source().factors(2, ProjKind::down)->scale, 8.0f / 2.0f);
  EXPECT_EQ(pat->info().max_rank, 7);
}

}  // namespace
}  // namespace wick::test

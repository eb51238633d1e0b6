// f16 weights kept as the files hold them (CpuWeights::native) on the tiny fixtures — tiny-seqcls's files are f16,
// tiny-tied's f32 converted to f16 here: exactly the f32 model of their widened values (the f16 kernels sum as the
// f32 ones do), read in place from the files' mapping, an unmerged adapter exact on top, a merged one rounded to f16
// once, and the logits against transformers'.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "model/linear.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/model.h"
#include "wick/random_model.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

// Factors on the q and down projections of every layer, shaped for the model.
struct QAndDown : LoraSource {
  std::vector<LoraFactors> q, down;
  QAndDown(const ModelConfig& c, std::mt19937& rng) {
    for (int64_t l = 0; l < c.num_layers; ++l) {
      q.push_back({.a = random_normal({4, c.hidden_size}, rng, 0.1f), .b = random_normal({c.q_dim(), 4}, rng, 0.1f),
                   .scale = 2.0f});
      down.push_back({.a = random_normal({4, c.intermediate_size}, rng, 0.1f),
                      .b = random_normal({c.hidden_size, 4}, rng, 0.1f), .scale = 2.0f});
    }
  }
  const LoraFactors* factors(int layer, ProjKind kind) const override {
    return kind == ProjKind::q ? &q[size_t(layer)] : kind == ProjKind::down ? &down[size_t(layer)] : nullptr;
  }
};

// The fixture's directory with f16 files: tiny-seqcls's own, tiny-tied's converted.
std::filesystem::path f16_dir(const std::string& name) {
  const auto dir = fixture("models/" + name);
  return name == "tiny-seqcls" ? dir : f16_copy(dir);
}

class F16Fixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir = f16_dir(GetParam());
    model = Model::load(dir);
    ref = SafetensorsFile::open(fixture("models/" + GetParam()) / "reference.safetensors");
    const bool classify = model->config().head == ModelHead::sequence_classification;
    const Tensor ids = ref->tensor("input_ids");
    for (int64_t r = 0; r < ids.dim(0); ++r)
      rows.push_back(int_row(ids, r, classify ? ref->tensor("lengths").data<int32_t>()[r] : -1));
  }
  std::filesystem::path dir;
  std::shared_ptr<Model> model;
  std::shared_ptr<const SafetensorsFile> ref;
  std::vector<std::vector<int32_t>> rows;
};

// The same files loaded with CpuWeights::f32 (widened at load) give the same logits, bit for bit.
TEST_P(F16Fixture, IsTheF32ModelOfItsWidenedWeightsBitForBit) {
  EXPECT_EQ(model->weight_dtype(), DType::f16);
  const auto f32 = Model::load(dir, {.cpu_weights = CpuWeights::f32});
  EXPECT_EQ(f32->weight_dtype(), DType::f32);
  EXPECT_TRUE(same_bits(model->logits(rows), f32->logits(rows)));
}

// Within f16's rounding of transformers' logits (computed in f32 from tiny-seqcls's f16 files and from tiny-tied's
// f32 ones, which this rounds to f16): max |Δ| / max |ref| measured 6.9e-7 (seqcls) and 4.0e-4 (tied), bounded at
// 1e-5 and 1e-3.
TEST_P(F16Fixture, LogitsMatchTransformers) {
  const Tensor logits = model->logits(rows), expected = ref->tensor("logits");
  ASSERT_EQ(logits.shape(), expected.shape());
  EXPECT_LE(relative_max_error(logits, expected), GetParam() == "tiny-seqcls" ? 1e-5 : 1e-3);
}

// The adapter's path stays f32 on top of f16 weights: the logits with an unmerged adapter are those of the widened
// f32 model with the same adapter, bit for bit, and differ from the base model's.
TEST_P(F16Fixture, AnUnmergedAdapterIsExactOnTop) {
  std::mt19937 rng(7);
  const QAndDown lora(model->config(), rng);
  const auto f32 = Model::load(dir, {.cpu_weights = CpuWeights::f32});
  const Tensor with = model->logits(rows, &lora);
  EXPECT_TRUE(same_bits(with, f32->logits(rows, &lora)));
  EXPECT_GT(relative_max_error(with, model->logits(rows)), 1e-2);
}

// Merging into f16 weights sums in f32 and rounds to f16 once (Model::merge_lora; model_api_test checks each merged
// value): the merged model stays f16 and within f16 rounding of the unmerged adapter's logits; unmerging restores
// the base's bits.
TEST_P(F16Fixture, AMergedAdapterIsRoundedToF16) {
  std::mt19937 rng(9);
  auto lora = std::make_shared<QAndDown>(model->config(), rng);
  const Tensor base = model->logits(rows), unmerged = model->logits(rows, lora.get());
  model->merge_lora(lora);
  EXPECT_EQ(model->weight_dtype(), DType::f16);
  const Tensor merged = model->logits(rows);
  EXPECT_LE(relative_l2_error(merged, unmerged), 2e-3);
  EXPECT_GT(relative_max_error(merged, base), 1e-2) << "the adapter is merged";
  model->unmerge_lora();
  EXPECT_TRUE(same_bits(model->logits(rows), base));
}

INSTANTIATE_TEST_SUITE_P(Qwen2, F16Fixture, ::testing::Values("tiny-tied", "tiny-seqcls"));

// The weights are read in place from the file's mapping: loading adds file-backed pages as the loader reads them,
// but no anonymous memory the size of the weights (widened to f32 they took twice the file). 4 layers of 512 → 2048:
// 29 MB of f16 in the file.
TEST(F16Weights, LoadingKeepsTheFileMappedWithoutACopy) {
  ModelConfig c = ModelConfig::preset("tiny");
  c.hidden_size = 512, c.intermediate_size = 2048, c.num_layers = 4, c.head_dim = c.hidden_size / c.num_heads;
  const auto dir = temp_dir("f16-rss");
  write_random_model(c, dir, {.dtype = DType::f16, .seed = 3});
  const int64_t file_kb = int64_t(std::filesystem::file_size(dir / "model.safetensors") / 1024);
  const int64_t before = proc_status_kb("RssAnon");
  if (before < 0) GTEST_SKIP() << "no RssAnon in /proc/self/status";
  auto model = Model::load(dir);
  EXPECT_EQ(model->weight_dtype(), DType::f16);
  const int64_t added = proc_status_kb("RssAnon") - before;
  EXPECT_LT(added, file_kb / 8) << "KB: file " << file_kb << ", anonymous memory the load added " << added;
  const auto f32 = Model::load(dir, {.cpu_weights = CpuWeights::f32});
  EXPECT_GT(proc_status_kb("RssAnon") - before - added, file_kb) << "the f32 load widens (what the test would see)";
}

}  // namespace
}  // namespace wick::test

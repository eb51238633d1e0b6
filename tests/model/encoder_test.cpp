// The encoder forward pass (src/model/encoder.h) against a straightforward double-precision forward written in the
// test (model/encoder_test_util.h), for BERT, XLM-R and MPNet layouts; and the loader's errors.
//
// Tolerance: wick computes in f32 (sums of the GEMMs in f32 over ≤ 48 terms, LayerNorm moments in double), so each
// hidden state carries relative errors of a few 1e-7 after the final LayerNorm; 1e-5 relative L2 per sequence leaves
// a margin of ten and more, while a wrong position offset or a missing bias moves the states by order 1.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "cpu_paths.h"
#include "model/encoder.h"
#include "model/encoder_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

double rel_l2(const Tensor& got, int64_t row0, const std::vector<std::vector<double>>& ref) {
  const int64_t n = int64_t(ref[0].size());
  double num = 0, den = 0;
  for (size_t t = 0; t < ref.size(); ++t)
    for (int64_t i = 0; i < n; ++i) {
      const double g = got.data<float>()[(row0 + int64_t(t)) * n + i], r = ref[t][size_t(i)];
      num += (g - r) * (g - r);
      den += r * r;
    }
  return std::sqrt(num / den);
}

// Three sequences packed into one batch: a one-token one, and one long enough for MPNet's logarithmic buckets.
const std::vector<std::vector<int32_t>> kSequences = {
    {2, 17, 33, 4, 3}, {9}, {2,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                             23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 49, 3}};

void expect_matches_reference(const TinyEncoder& model, const std::filesystem::path& dir, CpuWeights weights,
                              double tol) {
  auto backend = make_cpu_backend(weights);
  const Encoder encoder = Encoder::load(dir, *backend);
  std::vector<int32_t> ids, starts = {0};
  for (const auto& s : kSequences) {
    ids.insert(ids.end(), s.begin(), s.end());
    starts.push_back(int32_t(ids.size()));
  }
  const Tensor out = backend->download(encoder.forward(ids, starts));
  ASSERT_EQ(out.shape(), (Shape{int64_t(ids.size()), model.hidden}));
  for (size_t s = 0; s < kSequences.size(); ++s)
    EXPECT_LT(rel_l2(out, starts[s], model.reference(kSequences[s])), tol) << model.model_type << " sequence " << s;
}

TEST(Encoder, BertMatchesReference) {
  const TinyEncoder model = tiny_encoder("bert");
  const auto dir = temp_dir("bert");
  model.write(dir);
  expect_matches_reference(model, dir, CpuWeights::f32, 1e-5);
}

TEST(Encoder, XlmRobertaMatchesReferenceWithPrefixedNames) {
  TinyEncoder model = tiny_encoder("xlm-roberta");
  model.prefix = "roberta.";  // as XLMRobertaForMaskedLM saves its body
  const auto dir = temp_dir("xlmr");
  model.write(dir);
  expect_matches_reference(model, dir, CpuWeights::f32, 1e-5);
}

TEST(Encoder, MpnetMatchesReference) {
  const TinyEncoder model = tiny_encoder("mpnet");
  const auto dir = temp_dir("mpnet");
  model.write(dir);
  expect_matches_reference(model, dir, CpuWeights::f32, 1e-5);
}

// transformers' MPNet counts positions past padding index 1 whatever config.json's pad_token_id says (here 0, as a
// vocabulary with [PAD] first has it): the first token sits at position 2.
TEST(Encoder, MpnetPositionsIgnorePadTokenId) {
  TinyEncoder model = tiny_encoder("mpnet");
  model.pad = 0;
  const auto dir = temp_dir("mpnet-pad0");
  model.write(dir);
  auto backend = make_cpu_backend();
  EXPECT_EQ(Encoder::load(dir, *backend).config().max_sequence_length(), 40);  // 42 positions from 2
  expect_matches_reference(model, dir, CpuWeights::f32, 1e-5);
}

TEST(Encoder, Bf16WeightsKeptAsTheFileHoldsThem) {
  // A bf16 checkpoint on the CPU: matrices read in place as bf16, the rest widened to f32 at load; the reference
  // computes with the same rounded values, so with f32 products the f32 tolerance holds (and bf16's where the default
  // path rounds the activations).
  TinyEncoder model = tiny_encoder("mpnet");
  model.round_to_bf16();
  const auto dir = temp_dir("mpnet16");
  model.write(dir, {}, DType::bf16);
  on_each_cpu_path(1e-5, [&](double tolerance) { expect_matches_reference(model, dir, CpuWeights::native, tolerance); });
}

TEST(Encoder, Int8WeightsStayNearReference) {
  // q8_0 weight matrices (the word embedding and every projection): each weight within half a step of 1/127 of its
  // block's largest, which moves the states by about 1e-2 relative.
  const TinyEncoder model = tiny_encoder("bert");
  const auto dir = temp_dir("bert8");
  model.write(dir);
  expect_matches_reference(model, dir, CpuWeights::int8, 3e-2);
}

TEST(Encoder, UnsupportedModelTypeNamesFileAndField) {
  TinyEncoder model = tiny_encoder("bert");
  model.model_type = "deberta-v2";
  const auto dir = temp_dir("deberta");
  model.write(dir);
  auto backend = make_cpu_backend();
  EXPECT_WICK_ERROR(Encoder::load(dir, *backend), ErrorKind::unsupported, "config.json", "model_type", "deberta-v2");
}

TEST(Encoder, UnsupportedActivationNamesField) {
  TinyEncoder model = tiny_encoder("bert");
  model.hidden_act = "relu";
  const auto dir = temp_dir("relu");
  model.write(dir);
  auto backend = make_cpu_backend();
  EXPECT_WICK_ERROR(Encoder::load(dir, *backend), ErrorKind::unsupported, "config.json", "hidden_act", "relu");
}

TEST(Encoder, MpnetVocabularyWithoutItsPaddingIndexIsCorrupt) {
  TinyEncoder model = tiny_encoder("mpnet");
  model.pad = 0;
  const auto dir = temp_dir("mpnet-vocab1");
  model.write(dir);
  nlohmann::json config = nlohmann::json::parse(read_file(dir / "config.json"));
  config["vocab_size"] = 1;  // pad_token_id 0 fits; MPNet's padding index 1 does not
  write_file(dir / "config.json", config.dump());
  auto backend = make_cpu_backend();
  EXPECT_WICK_ERROR(Encoder::load(dir, *backend), ErrorKind::corrupt, "config.json", "'vocab_size' 1",
                    "padding index 1");
}

TEST(Encoder, MissingTensorsAreAllNamed) {
  const TinyEncoder model = tiny_encoder("mpnet");
  const auto dir = temp_dir("missing");
  model.write(dir, {"encoder.relative_attention_bias.weight", "encoder.layer.1.output.dense.bias"});
  auto backend = make_cpu_backend();
  EXPECT_WICK_ERROR(Encoder::load(dir, *backend), ErrorKind::not_found, "encoder.relative_attention_bias.weight",
                    "encoder.layer.1.output.dense.bias", "2 tensors");
}

TEST(Encoder, BadBatchesAreBadInput) {
  const TinyEncoder model = tiny_encoder("xlm-roberta");
  const auto dir = temp_dir("bad");
  model.write(dir);
  auto backend = make_cpu_backend();
  const Encoder encoder = Encoder::load(dir, *backend);
  const std::vector<int32_t> too_long(size_t(encoder.config().max_sequence_length() + 1), 5);
  EXPECT_EQ(encoder.config().max_sequence_length(), 40);  // 42 positions from pad + 1 = 2
  EXPECT_WICK_ERROR(encoder.forward(too_long, std::vector<int32_t>{0, int32_t(too_long.size())}), ErrorKind::bad_input,
                    "41 tokens");
  EXPECT_WICK_ERROR(encoder.forward(std::vector<int32_t>{1, 50}, std::vector<int32_t>{0, 2}), ErrorKind::bad_input,
                    "token id 50");
  EXPECT_WICK_ERROR(encoder.forward(std::vector<int32_t>{1, 2}, std::vector<int32_t>{0, 0, 2}), ErrorKind::bad_input,
                    "0 tokens");
}

}  // namespace
}  // namespace wick::test

// The demo model (models/wick-demo, made by scripts/make_demo_model.py) against what transformers computed from the
// same files (tests/fixtures/demo/reference.safetensors, written by that script): its tokenizer's ids, the logits
// (CPU, f32 from the bf16 weights) and greedy ids.
#include <gtest/gtest.h>

#include <filesystem>

#include "cpu_paths.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/generator.h"
#include "wick/model.h"
#include "wick/safetensors.h"
#include "wick/tokenizer.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;

fs::path demo_dir() { return fs::path(WICK_FIXTURES).parent_path().parent_path() / "models" / "wick-demo"; }
std::shared_ptr<const SafetensorsFile> reference() { return SafetensorsFile::open(fixture("demo/reference.safetensors")); }

TEST(DemoModel, TokenizerGivesTheIdsTransformersRan) {
  const Tokenizer tok = Tokenizer::load(demo_dir());
  const Tensor ids = reference()->tensor("input_ids");
  // The texts scripts/make_demo_model.py (reference()) encoded; each row is their first ids.dim(1) ids.
  const char* texts[] = {"And God said, Let there be light", "A hacker is a person who enjoys"};
  ASSERT_EQ(ids.dim(0), 2);
  for (int64_t r = 0; r < 2; ++r) {
    std::vector<int32_t> got = tok.encode(texts[r]);
    ASSERT_GE(int64_t(got.size()), ids.dim(1));
    got.resize(size_t(ids.dim(1)));
    EXPECT_EQ(got, int_row(ids, r)) << texts[r];
  }
}

TEST(DemoModel, LogitsMatchTransformers) {
  auto model = Model::load(demo_dir());
  auto ref = reference();
  const Tensor ids = ref->tensor("input_ids");
  std::vector<std::vector<int32_t>> rows;
  for (int64_t r = 0; r < ids.dim(0); ++r) rows.push_back(int_row(ids, r));
  const Tensor expected = ref->tensor("logits");
  on_each_cpu_path(1e-4, [&](double tolerance) {
    const Tensor logits = model->logits(rows);
    ASSERT_EQ(logits.shape(), expected.shape());
    EXPECT_LE(relative_max_error(logits, expected), tolerance);
  });
}

TEST(DemoModel, GreedyIdsMatchTransformers) {
  auto model = Model::load(demo_dir());
  auto ref = reference();
  const Tensor prompts = ref->tensor("greedy_prompts"), expected = ref->tensor("greedy_ids");
  const Generator gen(model);
  for (int64_t r = 0; r < prompts.dim(0); ++r) {
    // Plain argmax, as the reference took it (the model's generation_config.json samples).
    const GenerateResult out = gen.generate(int_row(prompts, r), {.max_tokens = int32_t(expected.dim(1)),
                                                                  .ignore_eos = true,
                                                                  .sampling = SamplingParams::greedy_params()});
    EXPECT_EQ(out.output_ids, int_row(expected, r)) << "prompt row " << r;
  }
}

}  // namespace
}  // namespace wick::test

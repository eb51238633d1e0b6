// Qwen2 forward and greedy decoding against transformers' dumps (scripts/make_fixtures.py).
#include <gtest/gtest.h>

#include "cpu_paths.h"
#include "model/linear.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/generator.h"
#include "wick/logit_summary.h"
#include "wick/model.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

constexpr double kTolerance = 1e-4;  // max |Δ| / max |ref|, the bar

class CausalFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(CausalFixture, LogitsMatchTransformers) {
  const auto dir = fixture("models/" + GetParam());
  auto model = Model::load(dir);
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const Tensor ids = ref->tensor("input_ids");
  std::vector<std::vector<int32_t>> rows;
  for (int64_t r = 0; r < ids.dim(0); ++r) rows.push_back(int_row(ids, r));
  const Tensor expected = ref->tensor("logits");
  on_each_cpu_path(kTolerance, [&](double tolerance) {
    const Tensor logits = model->logits(rows);
    ASSERT_EQ(logits.shape(), expected.shape());
    EXPECT_LE(relative_max_error(logits, expected), tolerance);
  });
}

// Greedy ids through the f32 products: rounded activations may part at a near tie of a random model's logits.
TEST_P(CausalFixture, GreedyIdsMatchTransformers) {
  const F32CpuProducts exact;
  const auto dir = fixture("models/" + GetParam());
  auto model = Model::load(dir);
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const Tensor prompts = ref->tensor("greedy_prompts"), expected = ref->tensor("greedy_ids");
  Generator gen(model);
  for (int64_t r = 0; r < prompts.dim(0); ++r) {
    const auto prompt = int_row(prompts, r);
    const GenerateResult out = gen.generate(prompt, {.max_tokens = int32_t(expected.dim(1)), .ignore_eos = true,
                                                        .sampling = SamplingParams::greedy_params()});
    EXPECT_EQ(out.output_ids, int_row(expected, r)) << "prompt row " << r;
    EXPECT_EQ(out.finish, FinishReason::length);
  }
}

// Decoding one token at a time through the cache must give the logits of one full prefill.
TEST_P(CausalFixture, CachedDecodeEqualsFullPrefill) {
  const auto dir = fixture("models/" + GetParam());
  auto model = Model::load(dir);
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const auto tokens = int_row(ref->tensor("input_ids"), 0);
  const Tensor full = model->logits({tokens});  // [1, n, vocab]
  const int64_t n = int64_t(tokens.size()), vocab = model->config().vocab_size;
  const int64_t split = 5;
  KVCache cache = model->make_cache(n);
  std::vector<int32_t> head(tokens.begin(), tokens.begin() + split);
  Tensor step = model->forward(std::vector<SequenceInput>{{head, &cache}});
  for (int64_t t = split - 1; t < n; ++t) {
    const Tensor want = full.reshape({n, vocab}).rows(t, t + 1);
    EXPECT_LE(relative_max_error(step, want), 1e-5) << "position " << t;
    if (t + 1 == n) break;
    const int32_t next[] = {tokens[size_t(t + 1)]};
    step = model->forward(std::vector<SequenceInput>{{next, &cache}});
  }
  EXPECT_EQ(cache.length(), n);
}

// Sequences of different lengths and histories in one batch give the logits they give alone.
TEST_P(CausalFixture, RaggedBatchEqualsSeparateRuns) {
  const auto dir = fixture("models/" + GetParam());
  auto model = Model::load(dir);
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const auto a = int_row(ref->tensor("input_ids"), 0), b = int_row(ref->tensor("input_ids"), 1, 7);
  KVCache ca = model->make_cache(32), cb = model->make_cache(32), alone_a = model->make_cache(32),
          alone_b = model->make_cache(32);
  const std::vector<int32_t> a_head(a.begin(), a.begin() + 3), a_tail(a.begin() + 3, a.end());
  model->forward(std::vector<SequenceInput>{{a_head, &ca}});
  model->forward(std::vector<SequenceInput>{{a_head, &alone_a}});
  const Tensor both = model->forward(std::vector<SequenceInput>{{a_tail, &ca}, {b, &cb}}, {.logits = LogitsFor::every_token});
  const Tensor only_a = model->forward(std::vector<SequenceInput>{{a_tail, &alone_a}}, {.logits = LogitsFor::every_token});
  const Tensor only_b = model->forward(std::vector<SequenceInput>{{b, &alone_b}}, {.logits = LogitsFor::every_token});
  const int64_t na = int64_t(a_tail.size());
  EXPECT_LE(relative_max_error(both.rows(0, na), only_a), 1e-5);
  EXPECT_LE(relative_max_error(both.rows(na, both.dim(0)), only_b), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Qwen2, CausalFixture, ::testing::Values("tiny-tied", "tiny-untied"));

TEST(Qwen2SequenceClassification, LogitsMatchTransformers) {
  const auto dir = fixture("models/tiny-seqcls");
  auto model = Model::load(dir);
  ASSERT_EQ(model->config().head, ModelHead::sequence_classification);
  ASSERT_EQ(model->config().num_labels, 3);
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const Tensor ids = ref->tensor("input_ids"), lengths = ref->tensor("lengths");
  std::vector<std::vector<int32_t>> rows;
  for (int64_t r = 0; r < ids.dim(0); ++r) rows.push_back(int_row(ids, r, lengths.data<int32_t>()[r]));
  const Tensor logits = model->logits(rows);
  const Tensor expected = ref->tensor("logits");
  ASSERT_EQ(logits.shape(), expected.shape());
  EXPECT_LE(relative_max_error(logits, expected), kTolerance);
}

TEST(Qwen2Forward, RejectsBadInputAndLeavesCacheUnchanged) {
  auto model = Model::load(fixture("models/tiny-tied"));
  KVCache cache = model->make_cache(4);
  const std::vector<int32_t> ok{5, 6}, bad_id{5, 384}, too_long{1, 2, 3};
  model->forward(std::vector<SequenceInput>{{ok, &cache}});
  EXPECT_WICK_ERROR(model->forward(std::vector<SequenceInput>{{bad_id, &cache}}), ErrorKind::bad_input, "384",
                    "vocabulary");
  EXPECT_WICK_ERROR(model->forward(std::vector<SequenceInput>{{too_long, &cache}}), ErrorKind::bad_input, "exceed");
  EXPECT_EQ(cache.length(), 2);
  EXPECT_WICK_ERROR(model->forward(std::vector<SequenceInput>{{ok, nullptr}}), ErrorKind::bad_input, "cache");
  EXPECT_WICK_ERROR(model->forward(std::vector<SequenceInput>{{ok, &cache}, {ok, &cache}}), ErrorKind::bad_input,
                    "shares");
  EXPECT_WICK_ERROR(model->make_cache(100000), ErrorKind::bad_input, "max_position_embeddings");
  EXPECT_WICK_ERROR(model->logits({{1, 2}, {3}}), ErrorKind::bad_input, "equal length");
  Generator gen(model);
  EXPECT_WICK_ERROR(gen.generate(ok, {.max_tokens = 0}), ErrorKind::bad_input, "--max-tokens");
  EXPECT_WICK_ERROR(gen.generate(ok, {.max_tokens = 1000}), ErrorKind::bad_input, "context");
  EXPECT_WICK_ERROR(gen.generate(std::vector<int32_t>{}, {}), ErrorKind::bad_input, "empty");
}

// forward_summary on the CPU: the host summary of the logits forward() returns; the whole row when `enough`
// declines; an exception from `enough` leaves with the cache advanced, as forward() leaves it.
TEST(Qwen2Forward, SummaryOfTheLastTokensLogits) {
  auto model = Model::load(fixture("models/tiny-tied"));
  const int64_t vocab = model->config().vocab_size;
  const std::vector<int32_t> prompt{5, 6, 7}, next{9};
  const std::vector<int32_t> gather{3, 200};
  KVCache whole = model->make_cache(8), summarized = model->make_cache(8);
  model->forward(std::vector<SequenceInput>{{prompt, &whole}});
  const Tensor expected = model->forward(std::vector<SequenceInput>{{next, &whole}});
  const std::span<const float> row(expected.data<float>(), size_t(vocab));
  const LogitSummary want = summarize_logits(row, 16, gather);

  model->forward(std::vector<SequenceInput>{{prompt, &summarized}});
  int calls = 0;
  const auto decline = [&](const LogitSummary& s) {
    ++calls;
    EXPECT_EQ(s.ids, want.ids);
    return false;
  };
  Model::SummaryResult got =
      model->forward_summary({next, &summarized}, {}, {.count = 16, .gather = gather, .enough = decline});
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(summarized.length(), 4);
  EXPECT_EQ(got.summary.ids, want.ids);
  EXPECT_EQ(got.summary.values, want.values);
  EXPECT_EQ(got.summary.gathered_ids, want.gathered_ids);
  EXPECT_EQ(got.summary.gathered, want.gathered);
  EXPECT_FLOAT_EQ(got.summary.max, want.max);
  EXPECT_NEAR(got.summary.sum_exp, want.sum_exp, 1e-5 * want.sum_exp);
  ASSERT_TRUE(got.row.defined());
  ASSERT_EQ(got.row.numel(), vocab);
  for (int64_t i = 0; i < vocab; ++i) ASSERT_EQ(got.row.data<float>()[i], row[size_t(i)]) << i;

  summarized.truncate(3);
  got = model->forward_summary({next, &summarized}, {}, {.count = 16, .gather = gather, .enough = nullptr});
  EXPECT_FALSE(got.row.defined());  // no callback: the summary is enough
  EXPECT_EQ(got.summary.ids, want.ids);

  summarized.truncate(3);
  EXPECT_WICK_ERROR(model->forward_summary({next, &summarized}, {},
                                           {.count = 16, .enough = [](const LogitSummary&) -> bool {
                                              fail(ErrorKind::bad_input, "no finite score");
                                            }}),
                    ErrorKind::bad_input, "no finite score");
  EXPECT_EQ(summarized.length(), 4);
}

TEST(Qwen2Forward, ClassifierCannotGenerate) {
  auto model = Model::load(fixture("models/tiny-seqcls"));
  EXPECT_WICK_ERROR(Generator{model}, ErrorKind::bad_input, "classification");
}

}  // namespace
}  // namespace wick::test

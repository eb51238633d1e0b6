// The summaries of a split model's logits (model/device_logits.h): each rank reduces its slice of the vocabulary and
// the host merges them. The merge against summarize_logits of the whole row (ties across slices, NaN, −∞, counts
// beyond a slice or the row, gathered ids on every slice); a split model's forward_summary and forward_paged_read
// against the host summary of the logits the same split model returns whole (bit for bit: the same pass), and against
// the whole model's (to f32 rounding); gathered ids outside the vocabulary refused, the cache left as it was.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "model/device_logits.h"
#include "model/tensor_parallel.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/error.h"
#include "wick/logit_summary.h"
#include "wick/model.h"

namespace wick::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The same floats, NaN equal to NaN.
void expect_same_floats(const std::vector<float>& got, const std::vector<float>& want, const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  for (size_t i = 0; i < want.size(); ++i) {
    const bool both_nan = std::isnan(want[i]) && std::isnan(got[i]);
    if (!both_nan) {
      EXPECT_EQ(got[i], want[i]) << where << " " << i;
    }
  }
}

// Equal as summaries: the same ids, values (NaN equal to NaN), gathered ids and values, max; Σexp to rounding.
void expect_same_summary(const LogitSummary& got, const LogitSummary& want, const std::string& where) {
  EXPECT_EQ(got.ids, want.ids) << where;
  expect_same_floats(got.values, want.values, where + ", value");
  EXPECT_EQ(got.gathered_ids, want.gathered_ids) << where;
  expect_same_floats(got.gathered, want.gathered, where + ", gathered");
  EXPECT_EQ(got.max, want.max) << where;
  EXPECT_NEAR(got.sum_exp, want.sum_exp, 1e-6 * std::max(1.0f, want.sum_exp)) << where;
  EXPECT_EQ(got.vocab, want.vocab) << where;
}

// The summary of `row` as a split model's ranks make it: each slice summarized alone with its share of `gather`
// (local ids), then merged.
LogitSummary summarized_by_slices(const std::vector<float>& row, int ranks, int32_t count,
                                  const std::vector<int32_t>& gather) {
  const int64_t vocab = int64_t(row.size());
  std::vector<LogitSummary> slices;
  std::vector<int64_t> begins;
  for (int r = 0; r < ranks; ++r) {
    const VocabSlice v = vocab_slice(vocab, {r, ranks});
    std::vector<int32_t> local;
    for (const int32_t id : gather)
      if (id >= v.begin && id < v.begin + v.count) local.push_back(int32_t(id - v.begin));
    slices.push_back(summarize_logits(std::span(row).subspan(size_t(v.begin), size_t(v.count)), count, local));
    begins.push_back(v.begin);
  }
  return merge_slice_summaries(slices, begins, count, gather);
}

TEST(MergeSliceSummaries, GiveTheWholeRowsSummary) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const int64_t vocab = 1001;  // the last slice short at 2, 3 and 4 ranks
  std::vector<std::vector<float>> rows;
  for (int i = 0; i < 3; ++i) {
    std::vector<float> row(static_cast<size_t>(vocab));
    for (float& v : row) v = normal(rng);
    rows.push_back(row);
  }
  // Ties across the slices' boundaries (the lower id first), NaN and −∞ (ranked below every number), a row of NaN.
  for (const int64_t id : {3, 340, 501, 667, 900, 1000}) rows[1][size_t(id)] = 9.5f;
  rows[2][0] = std::nanf("");
  rows[2][600] = std::nanf("");
  rows[2][999] = -kInf;
  rows[2][251] = 7.0f;
  rows[2][751] = 7.0f;
  rows.push_back(std::vector<float>(size_t(vocab), std::nanf("")));
  rows.push_back(std::vector<float>(size_t(vocab), -kInf));
  const std::vector<int32_t> gather{1000, 0, 500, 501, 334, 0, 999, 250};  // out of order, repeated, on every slice
  for (size_t r = 0; r < rows.size(); ++r)
    for (const int ranks : {2, 3, 4})
      for (const int32_t count : {0, 1, 6, 64, 400, 2000}) {
        const LogitSummary want = summarize_logits(rows[r], count, gather);
        expect_same_summary(summarized_by_slices(rows[r], ranks, count, gather), want,
                            "row " + std::to_string(r) + ", " + std::to_string(ranks) + " ranks, count " +
                                std::to_string(count));
      }
}

TEST(MergeSliceSummaries, AnIdThatNoSliceGatheredIsAnInternalError) {
  const std::vector<float> row{1, 2, 3, 4};
  const std::vector<LogitSummary> slices{summarize_logits(std::span(row).first(2), 1, {}),
                                         summarize_logits(std::span(row).last(2), 1, {})};
  const std::vector<int64_t> begins{0, 2};
  const std::vector<int32_t> gather{3};  // the second slice was not asked for it
  EXPECT_WICK_ERROR(merge_slice_summaries(slices, begins, 1, gather), ErrorKind::internal, "gathered id 3");
}

LoadOptions ranks_of(int n) { return {.cpu_weights = CpuWeights::f32, .tensor_parallel = n}; }

// The same model whole and split over 2 ranks (and over 4 where its heads divide), with a short last slice of the
// vocabulary where it does not divide.
struct Pair {
  std::shared_ptr<Model> whole, split;
};

std::vector<Pair> pairs() {
  std::vector<Pair> out;
  for (const char* name : {"models/tiny-untied", "models/tiny-tied"})
    out.push_back({Model::load(fixture(name), ranks_of(1)), Model::load(fixture(name), ranks_of(2))});
  return out;
}

TEST(SplitSummary, ForwardSummaryIsTheSummaryOfTheSplitModelsOwnLogits) {
  for (const Pair& p : pairs()) {
    const int64_t vocab = p.split->config().vocab_size;
    const std::vector<int32_t> prompt{5, 17, 42, 99}, next{7};
    const std::vector<int32_t> gather{int32_t(vocab - 1), 0, int32_t(vocab / 2), int32_t(vocab / 2 - 1), 3};
    KVCache plain = p.split->make_cache(8), summarized = p.split->make_cache(8), whole = p.whole->make_cache(8);
    for (KVCache* c : {&plain, &summarized})
      p.split->forward(std::vector<SequenceInput>{{prompt, c}});
    p.whole->forward(std::vector<SequenceInput>{{prompt, &whole}});
    const Tensor row = p.split->forward(std::vector<SequenceInput>{{next, &plain}});
    const LogitSummary want =
        summarize_logits(std::span<const float>(row.data<float>(), size_t(vocab)), 16, gather);
    int calls = 0;
    const Model::SummaryResult got = p.split->forward_summary({next, &summarized}, {},
                                                              {.count = 16, .gather = gather,
                                                               .enough = [&](const LogitSummary&) {
                                                                 ++calls;
                                                                 return false;
                                                               }});
    EXPECT_EQ(calls, 1);
    expect_same_summary(got.summary, want, "forward_summary");
    ASSERT_TRUE(got.row.defined());
    EXPECT_TRUE(same_bits(got.row, row));  // declined: the whole row, joined from the ranks' slices
    // Against the whole model: the same best ids, values to f32 rounding.
    const Model::SummaryResult one = p.whole->forward_summary({next, &whole}, {}, {.count = 4, .gather = gather});
    EXPECT_EQ(std::vector<int32_t>(got.summary.ids.begin(), got.summary.ids.begin() + 1),
              std::vector<int32_t>(one.summary.ids.begin(), one.summary.ids.begin() + 1));
    EXPECT_NEAR(got.summary.max, one.summary.max, 1e-5 * std::fabs(one.summary.max));
    EXPECT_NEAR(got.summary.sum_exp, one.summary.sum_exp, 1e-4 * one.summary.sum_exp);
    for (size_t i = 0; i < gather.size(); ++i)
      EXPECT_NEAR(got.summary.gathered[i], one.summary.gathered[i], 1e-4) << "gathered " << gather[i];
  }
}

TEST(SplitSummary, PagedReadsOfEveryKindMatchTheSplitModelsWholeRows) {
  for (const Pair& p : pairs()) {
    const int64_t vocab = p.split->config().vocab_size;
    KVBlockPool plain_pool = p.split->make_block_pool(16, 4), read_pool = p.split->make_block_pool(16, 4);
    const std::vector<std::vector<int32_t>> prompts{{5, 17, 42}, {301, 7}, {2, 300, 11, 12}, {9}};
    const std::vector<std::vector<int32_t>> blocks{{0, 1}, {2, 3}, {4, 5}, {6, 7}};
    std::vector<PagedSequence> batch;
    for (size_t i = 0; i < prompts.size(); ++i) batch.push_back({.tokens = prompts[i], .past = 0, .blocks = blocks[i]});
    const Tensor rows = p.split->forward_paged(plain_pool, batch);
    const std::vector<int32_t> gather{int32_t(vocab - 1), 1, int32_t(vocab / 2)};
    // A summary, a whole row, a row not wanted, a summary whose `enough` declines (the whole row too).
    std::vector<Model::RowRead> reads(4);
    reads[0].summary = {.count = 8, .gather = gather};
    reads[1].summary = {.count = 0};
    reads[2].wanted = false;
    reads[3].summary = {.count = 3, .gather = {0}, .enough = [](const LogitSummary&) { return false; }};
    const std::vector<Model::SummaryResult> got = p.split->forward_paged_read(read_pool, batch, reads);
    ASSERT_EQ(got.size(), 4u);
    const auto row = [&](int64_t r) { return std::span<const float>(rows.data<float>() + r * vocab, size_t(vocab)); };
    expect_same_summary(got[0].summary, summarize_logits(row(0), 8, gather), "row 0");
    EXPECT_FALSE(got[0].row.defined());
    ASSERT_TRUE(got[1].row.defined());
    EXPECT_TRUE(same_bits(got[1].row, rows.rows(1, 2)));
    EXPECT_FALSE(got[2].row.defined());
    EXPECT_TRUE(got[2].summary.ids.empty());
    expect_same_summary(got[3].summary, summarize_logits(row(3), 3, std::vector<int32_t>{0}), "row 3");
    ASSERT_TRUE(got[3].row.defined());
    EXPECT_TRUE(same_bits(got[3].row, rows.rows(3, 4)));
  }
}

TEST(SplitSummary, FourRanksWithAShortLastSlice) {
  const auto split = Model::load(four_way_model(), ranks_of(4));  // a vocabulary of 1,001
  KVBlockPool plain_pool = split->make_block_pool(8, 4), read_pool = split->make_block_pool(8, 4);
  const std::vector<int32_t> tokens{0, 250, 251, 1000}, blocks{0, 1};
  const std::vector<PagedSequence> batch{{.tokens = tokens, .past = 0, .blocks = blocks}};
  const Tensor row = split->forward_paged(plain_pool, batch);
  const std::vector<int32_t> gather{1000, 999, 751, 750, 0};  // the last id of each slice and the first of two
  std::vector<Model::RowRead> reads(1);
  reads[0].summary = {.count = 64, .gather = gather};
  const std::vector<Model::SummaryResult> got = split->forward_paged_read(read_pool, batch, reads);
  expect_same_summary(got[0].summary,
                      summarize_logits(std::span<const float>(row.data<float>(), 1001), 64, gather), "four ranks");
}

TEST(SplitSummary, GatheredIdsOutsideTheVocabularyAreRefusedAndTheCacheStays) {
  for (const Pair& p : pairs()) {
    for (const std::shared_ptr<Model>& model : {p.whole, p.split}) {
      const int32_t vocab = int32_t(model->config().vocab_size);
      KVCache cache = model->make_cache(8);
      const std::vector<int32_t> prompt{5, 6, 7};
      model->forward(std::vector<SequenceInput>{{prompt, &cache}});
      const std::vector<int32_t> next{9};
      for (const int32_t bad : {vocab, -1}) {
        EXPECT_WICK_ERROR(model->forward_summary({next, &cache}, {}, {.count = 4, .gather = {2, bad}}),
                          ErrorKind::bad_input, "outside a row of " + std::to_string(vocab));
        EXPECT_EQ(cache.length(), 3) << "the step's keys were written, its length not advanced";
      }
    }
  }
}

}  // namespace
}  // namespace wick::test

// summarize_rows on the CPU backend (backend.h's default, the reference its device overrides are tested against):
// each row's summary against numbers worked out by hand and against summarize_logits of the row alone, and the
// bad input it turns away.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "test_util.h"
#include "wick/logit_summary.h"

namespace wick::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(CpuSummaryRows, SummarizesEachRowByHand) {
  const auto cpu = make_cpu_backend();
  const Tensor logits = Tensor::from_floats({1, 3, 2, 3,  // a tie for the best: the lower id first
                                             std::nanf(""), -kInf, 0, 5},
                                            {2, 4});
  const std::vector<std::vector<int32_t>> gather = {{0}, {1, 3}};
  const std::vector<LogitSummary> got = cpu->summarize_rows(logits, 2, gather);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].ids, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(got[0].values, (std::vector<float>{3, 3}));
  EXPECT_EQ(got[0].gathered_ids, (std::vector<int32_t>{0}));
  EXPECT_EQ(got[0].gathered, (std::vector<float>{1}));
  EXPECT_EQ(got[0].max, 3.0f);
  EXPECT_NEAR(got[0].sum_exp, std::exp(-2.0) + 1 + std::exp(-1.0) + 1, 1e-6);
  EXPECT_EQ(got[0].vocab, 4);
  EXPECT_EQ(got[1].ids, (std::vector<int32_t>{3, 2}));  // NaN ranks below every number, -inf included
  EXPECT_EQ(got[1].values, (std::vector<float>{5, 0}));
  EXPECT_EQ(got[1].gathered, (std::vector<float>{-kInf, 5}));
  EXPECT_EQ(got[1].max, 5.0f);
  EXPECT_NEAR(got[1].sum_exp, 1 + std::exp(-5.0), 1e-6);
}

TEST(CpuSummaryRows, EachRowAsSummarizedAlone) {
  const auto cpu = make_cpu_backend();
  constexpr int64_t kRows = 5, kN = 1000;
  Tensor logits = Tensor::empty({kRows, kN}, DType::f32);
  uint32_t state = 7;
  for (int64_t i = 0; i < logits.numel(); ++i) {
    state = state * 1664525u + 1013904223u;
    logits.data<float>()[i] = float(state >> 20) / 256.0f;  // 4096 values over 5000 logits: ties
  }
  const std::vector<std::vector<int32_t>> gather = {{0, 999}, {}, {5, 5}, {998}, {1, 2, 3}};
  for (const int32_t count : {0, 16, 2000}) {
    const std::vector<LogitSummary> got = cpu->summarize_rows(logits, count, gather);
    const std::vector<LogitSummary> ungathered = cpu->summarize_rows(logits, count, {});
    ASSERT_EQ(got.size(), size_t(kRows));
    ASSERT_EQ(ungathered.size(), size_t(kRows));
    for (int64_t r = 0; r < kRows; ++r) {
      SCOPED_TRACE("count " + std::to_string(count) + " row " + std::to_string(r));
      const std::span<const float> row(logits.data<float>() + r * kN, size_t(kN));
      for (const auto& [summary, ids] : {std::pair{&got[size_t(r)], std::span<const int32_t>(gather[size_t(r)])},
                                         std::pair{&ungathered[size_t(r)], std::span<const int32_t>()}}) {
        const LogitSummary want = summarize_logits(row, count, ids);
        EXPECT_EQ(summary->ids, want.ids);
        EXPECT_EQ(summary->values, want.values);
        EXPECT_EQ(summary->gathered_ids, want.gathered_ids);
        EXPECT_EQ(summary->gathered, want.gathered);
        EXPECT_EQ(summary->max, want.max);
        EXPECT_EQ(summary->sum_exp, want.sum_exp);
        EXPECT_EQ(summary->vocab, kN);
      }
    }
  }
}

TEST(CpuSummaryRows, TurnsAwayBadInput) {
  const auto cpu = make_cpu_backend();
  const Tensor logits = Tensor::zeros({3, 8}, DType::f32);
  const std::vector<std::vector<int32_t>> two = {{1}, {2}}, outside = {{8}, {}, {0, -1}};
  EXPECT_WICK_ERROR(cpu->summarize_rows(Tensor::zeros({8}, DType::f32), 4, {}), ErrorKind::bad_input,
                    "summarize_rows", "f32 [rows, n]", "[8]");
  EXPECT_WICK_ERROR(cpu->summarize_rows(Tensor::zeros({3, 8}, DType::i32), 4, {}), ErrorKind::bad_input, "i32");
  EXPECT_WICK_ERROR(cpu->summarize_rows(logits, 4, two), ErrorKind::bad_input, "summarize_rows",
                    "gather lists: 2 for 3 rows");
  EXPECT_WICK_ERROR(cpu->summarize_rows(logits, 4, outside), ErrorKind::bad_input, "summarize_rows",
                    "outside a row of 8: 8 (row 0), -1 (row 2)");
}

}  // namespace
}  // namespace wick::test

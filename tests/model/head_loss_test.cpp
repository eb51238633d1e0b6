// The chunked LM-head cross-entropy against the same sums written out in double, against itself unchunked, and its
// gradient against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"
#include "model/head_loss.h"

namespace wick::test {
namespace {

constexpr int64_t kTokens = 5, kHidden = 6, kVocab = 11;

class HeadLoss : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(5);
    x = random_normal({kTokens, kHidden}, rng);
    head = random_normal({kVocab, kHidden}, rng, 0.7f);
    targets = Tensor::from_ints({3, -100, 10, 0, 7}, {kTokens});
  }
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  Tensor x, head, targets;
};

TEST_F(HeadLoss, EqualsTheSumsWrittenOutInDouble) {
  const float scale = 0.25f;
  Tensor dx = Tensor::empty({kTokens, kHidden}, DType::f32);
  const double loss = head_cross_entropy(*cpu, x, head, targets, {.dx = &dx}, {.chunk_rows = 2, .scale = scale});
  double want = 0;
  for (int64_t r = 0; r < kTokens; ++r) {
    const int32_t t = targets.data<int32_t>()[r];
    std::vector<double> logit(kVocab), prob(kVocab);
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < kVocab; ++v) {
      for (int64_t h = 0; h < kHidden; ++h) logit[size_t(v)] += double(x.data<float>()[r * kHidden + h]) * head.data<float>()[v * kHidden + h];
      mx = std::max(mx, logit[size_t(v)]);
    }
    for (int64_t v = 0; v < kVocab; ++v) sum += std::exp(logit[size_t(v)] - mx);
    for (int64_t v = 0; v < kVocab; ++v) prob[size_t(v)] = std::exp(logit[size_t(v)] - mx) / sum;
    if (t >= 0) want += -(logit[size_t(t)] - mx - std::log(sum));
    for (int64_t h = 0; h < kHidden; ++h) {
      double g = 0;
      if (t >= 0)
        for (int64_t v = 0; v < kVocab; ++v) g += scale * (prob[size_t(v)] - (v == t ? 1.0 : 0.0)) * head.data<float>()[v * kHidden + h];
      EXPECT_NEAR(dx.data<float>()[r * kHidden + h], g, 1e-5 * (1 + std::fabs(g))) << "dx[" << r << "][" << h << "]";
    }
  }
  EXPECT_NEAR(loss, want, 1e-5 * want);
}

TEST_F(HeadLoss, ChunksGiveTheWholeResult) {
  Tensor whole = Tensor::empty({kTokens, kHidden}, DType::f32);
  const double all = head_cross_entropy(*cpu, x, head, targets, {.dx = &whole}, {.chunk_rows = 100});
  for (int64_t chunk : {1, 2, 3}) {
    Tensor dx = Tensor::empty({kTokens, kHidden}, DType::f32);
    const double part = head_cross_entropy(*cpu, x, head, targets, {.dx = &dx}, {.chunk_rows = chunk});
    // The logits are f32 products: a chunk of one row takes the one-row path, others OpenBLAS's blocking.
    EXPECT_NEAR(part, all, 1e-6 * all) << "chunk " << chunk;
    for (int64_t i = 0; i < dx.numel(); ++i)
      EXPECT_NEAR(dx.data<float>()[i], whole.data<float>()[i], 1e-6) << "chunk " << chunk << " dx[" << i << "]";
  }
  Tensor dx = Tensor::empty({kTokens, kHidden}, DType::f32);
  EXPECT_EQ(head_cross_entropy(*cpu, x, head, targets, {}, {.chunk_rows = 2}),
            head_cross_entropy(*cpu, x, head, targets, {.dx = &dx}, {.chunk_rows = 2}))
      << "the loss does not depend on whether dx is asked for";
}

TEST_F(HeadLoss, GradientMatchesFiniteDifferences) {
  Tensor dx = Tensor::empty({kTokens, kHidden}, DType::f32);
  head_cross_entropy(*cpu, x, head, targets, {.dx = &dx}, {.chunk_rows = 2});
  for (int64_t i = 0; i < x.numel(); ++i) {
    float& v = x.data<float>()[i];
    const float v0 = v, h = 1e-2f * (1.0f + std::fabs(v0));
    v = v0 + h;
    const double up = head_cross_entropy(*cpu, x, head, targets);
    v = v0 - h;
    const double down = head_cross_entropy(*cpu, x, head, targets);
    v = v0;
    const double want = (up - down) / (double(v0 + h) - double(v0 - h));
    // f32 logits make the differences noisy at ~1e-4; a wrong term is off by ~1e-1.
    EXPECT_NEAR(dx.data<float>()[i], want, 1e-3 + 1e-3 * std::fabs(want)) << "dx[" << i << "]";
  }
  for (int64_t h = 0; h < kHidden; ++h) EXPECT_EQ(dx.data<float>()[1 * kHidden + h], 0.0f) << "the ignored row";
}

TEST_F(HeadLoss, TrainedHeadGradientMatchesFiniteDifferences) {
  const float scale = 0.5f;
  Tensor d_head = Tensor::empty({kVocab, kHidden}, DType::f32);
  for (int64_t i = 0; i < d_head.numel(); ++i) d_head.data<float>()[i] = 0.25f;  // accumulated into
  head_cross_entropy(*cpu, x, head, targets, {.d_head = &d_head}, {.chunk_rows = 2, .scale = scale});
  for (int64_t i = 0; i < head.numel(); ++i) {
    float& v = head.data<float>()[i];
    const float v0 = v, h = 1e-2f * (1.0f + std::fabs(v0));
    v = v0 + h;
    const double up = head_cross_entropy(*cpu, x, head, targets);
    v = v0 - h;
    const double down = head_cross_entropy(*cpu, x, head, targets);
    v = v0;
    const double want = 0.25 + scale * (up - down) / (double(v0 + h) - double(v0 - h));
    EXPECT_NEAR(d_head.data<float>()[i], want, 1e-3 + 1e-3 * std::fabs(want)) << "d_head[" << i << "]";
  }
  Tensor wrong = Tensor::empty({kVocab + 1, kHidden}, DType::f32);
  EXPECT_WICK_ERROR(head_cross_entropy(*cpu, x, head, targets, {.d_head = &wrong}), ErrorKind::internal, "d_head");
}

TEST_F(HeadLoss, MisshapedInputsAreInternalErrors) {
  Tensor dx = Tensor::empty({kTokens + 1, kHidden}, DType::f32);
  EXPECT_WICK_ERROR(head_cross_entropy(*cpu, x, head, targets, {.dx = &dx}), ErrorKind::internal, "head_cross_entropy", "dx");
  EXPECT_WICK_ERROR(head_cross_entropy(*cpu, x, head, targets.rows(0, 3)), ErrorKind::internal, "targets");
  EXPECT_WICK_ERROR(head_cross_entropy(*cpu, x, head, targets, {}, {.chunk_rows = 0}), ErrorKind::internal,
                    "chunk_rows");
}

TEST_F(HeadLoss, TargetOutsideTheVocabularyIsBadInput) {
  const Tensor bad = Tensor::from_ints({3, -100, 11, 0, 7}, {kTokens});
  EXPECT_WICK_ERROR(head_cross_entropy(*cpu, x, head, bad), ErrorKind::bad_input, "11");
}

}  // namespace
}  // namespace wick::test

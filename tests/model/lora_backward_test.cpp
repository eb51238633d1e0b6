// The LoRA chokepoint's backward (linear_backward) against finite differences of its forward (linear) on the CPU
// backend, and against the same gradients written out in double.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "model/linear.h"
#include "test_util.h"

namespace wick::test {
namespace {

constexpr int64_t kRows = 3, kIn = 7, kOut = 5, kRank = 2, kLayer = 1;
constexpr float kScale = 1.75f;

struct OneProjection : LoraSource {
  LoraFactors f;
  const LoraFactors* factors(int layer, ProjKind kind) const override {
    return layer == kLayer && kind == ProjKind::down ? &f : nullptr;
  }
};

class LoraBackward : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(11);
    x = random_normal({kRows, kIn}, rng);
    proj = {.weight = random_normal({kOut, kIn}, rng, 0.3f), .bias = random_normal({kOut}, rng), .layer = kLayer,
            .kind = ProjKind::down};
    lora.f = {.a = random_normal({kRank, kIn}, rng, 0.4f), .b = random_normal({kOut, kRank}, rng, 0.4f),
              .scale = kScale};
    d_out = random_normal({kRows, kOut}, rng);
    prior_a = random_normal({kRank, kIn}, rng);  // gradients accumulate onto what is there
    prior_b = random_normal({kOut, kRank}, rng);
  }
  // L = Σ d_out ⊙ linear(x), in double.
  double loss() {
    Tensor out = Tensor::empty({kRows, kOut}, DType::f32);
    linear(*cpu, x, proj, &lora, out);
    double l = 0;
    for (int64_t i = 0; i < out.numel(); ++i) l += double(d_out.data<float>()[i]) * out.data<float>()[i];
    return l;
  }
  // Central difference of loss() in every element of t; the step as f32 stores it.
  std::vector<double> numeric(Tensor& t) {
    std::vector<double> g(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) {
      float& v = t.data<float>()[i];
      const float v0 = v, h = 1e-2f * (1.0f + std::fabs(v0));
      v = v0 + h;
      const double up = loss();
      v = v0 - h;
      const double down = loss();
      v = v0;
      g[size_t(i)] = (up - down) / (double(v0 + h) - double(v0 - h));
    }
    return g;
  }
  // f32 forward products make the differences noisy at ~1e-4 of the terms; a wrong term is off by ~1e-1.
  static void expect_near(const Tensor& got, const std::vector<double>& want, const char* what) {
    for (int64_t i = 0; i < got.numel(); ++i)
      EXPECT_NEAR(got.data<float>()[i], want[size_t(i)], 1e-3 + 1e-3 * std::fabs(want[size_t(i)])) << what << "[" << i << "]";
  }

  std::unique_ptr<Backend> cpu = make_cpu_backend();
  Tensor x, d_out, prior_a, prior_b;
  Projection proj;
  OneProjection lora;
};

TEST_F(LoraBackward, MatchesFiniteDifferencesOfTheForward) {
  Tensor dx = Tensor::empty({kRows, kIn}, DType::f32);
  LoraGrads grads{.a = prior_a.clone(), .b = prior_b.clone()};
  linear_backward(*cpu, x, proj, &lora, d_out, &dx, &grads);
  expect_near(dx, numeric(x), "dx");
  std::vector<double> da = numeric(lora.f.a), db = numeric(lora.f.b);
  for (int64_t i = 0; i < prior_a.numel(); ++i) da[size_t(i)] += prior_a.data<float>()[i];
  for (int64_t i = 0; i < prior_b.numel(); ++i) db[size_t(i)] += prior_b.data<float>()[i];
  expect_near(grads.a, da, "dA (accumulated)");
  expect_near(grads.b, db, "dB (accumulated)");
}

TEST_F(LoraBackward, EqualsTheGradientsWrittenOutInDouble) {
  Tensor dx = Tensor::empty({kRows, kIn}, DType::f32);
  LoraGrads grads{.a = Tensor::zeros({kRank, kIn}, DType::f32), .b = Tensor::zeros({kOut, kRank}, DType::f32)};
  linear_backward(*cpu, x, proj, &lora, d_out, &dx, &grads);
  const auto at = [](const Tensor& t, int64_t r, int64_t c) { return double(t.data<float>()[r * t.dim(1) + c]); };
  for (int64_t r = 0; r < kRows; ++r) {
    double t[kRank] = {}, dt[kRank] = {};  // t = x·Aᵀ, dt = d_out·B
    for (int64_t k = 0; k < kRank; ++k)
      for (int64_t i = 0; i < kIn; ++i) t[k] += at(x, r, i) * at(lora.f.a, k, i);
    for (int64_t k = 0; k < kRank; ++k)
      for (int64_t o = 0; o < kOut; ++o) dt[k] += at(d_out, r, o) * at(lora.f.b, o, k);
    for (int64_t i = 0; i < kIn; ++i) {
      double want = 0;
      for (int64_t o = 0; o < kOut; ++o) want += at(d_out, r, o) * at(proj.weight, o, i);
      for (int64_t k = 0; k < kRank; ++k) want += kScale * dt[k] * at(lora.f.a, k, i);
      EXPECT_NEAR(at(dx, r, i), want, 1e-5 * (1 + std::fabs(want))) << "dx[" << r << "][" << i << "]";
    }
  }
  for (int64_t k = 0; k < kRank; ++k) {
    for (int64_t i = 0; i < kIn; ++i) {
      double want = 0;
      for (int64_t r = 0; r < kRows; ++r) {
        double dt = 0;
        for (int64_t o = 0; o < kOut; ++o) dt += at(d_out, r, o) * at(lora.f.b, o, k);
        want += kScale * dt * at(x, r, i);
      }
      EXPECT_NEAR(at(grads.a, k, i), want, 1e-5 * (1 + std::fabs(want))) << "dA[" << k << "][" << i << "]";
    }
    for (int64_t o = 0; o < kOut; ++o) {
      double want = 0;
      for (int64_t r = 0; r < kRows; ++r) {
        double t = 0;
        for (int64_t i = 0; i < kIn; ++i) t += at(x, r, i) * at(lora.f.a, k, i);
        want += kScale * at(d_out, r, o) * t;
      }
      EXPECT_NEAR(at(grads.b, o, k), want, 1e-5 * (1 + std::fabs(want))) << "dB[" << o << "][" << k << "]";
    }
  }
}

TEST_F(LoraBackward, AProjectionWithoutFactorsOnlyPassesTheGradientThroughW) {
  proj.layer = 0;  // the adapter has no factors here
  Tensor dx = Tensor::empty({kRows, kIn}, DType::f32), base_dx = Tensor::empty({kRows, kIn}, DType::f32);
  LoraGrads grads{.a = prior_a.clone(), .b = prior_b.clone()};
  linear_backward(*cpu, x, proj, &lora, d_out, &dx, &grads);
  linear_backward(*cpu, x, proj, nullptr, d_out, &base_dx, nullptr);
  for (int64_t i = 0; i < dx.numel(); ++i) EXPECT_EQ(dx.data<float>()[i], base_dx.data<float>()[i]);
  for (int64_t i = 0; i < prior_a.numel(); ++i) EXPECT_EQ(grads.a.data<float>()[i], prior_a.data<float>()[i]);
  for (int64_t i = 0; i < prior_b.numel(); ++i) EXPECT_EQ(grads.b.data<float>()[i], prior_b.data<float>()[i]);
  expect_near(dx, numeric(x), "dx without factors");
}

TEST_F(LoraBackward, FactorGradientsWithoutAnInputGradient) {
  LoraGrads with{.a = prior_a.clone(), .b = prior_b.clone()}, without{.a = prior_a.clone(), .b = prior_b.clone()};
  Tensor dx = Tensor::empty({kRows, kIn}, DType::f32);
  linear_backward(*cpu, x, proj, &lora, d_out, &dx, &with);
  linear_backward(*cpu, x, proj, &lora, d_out, nullptr, &without);
  for (int64_t i = 0; i < with.a.numel(); ++i) EXPECT_EQ(with.a.data<float>()[i], without.a.data<float>()[i]);
  for (int64_t i = 0; i < with.b.numel(); ++i) EXPECT_EQ(with.b.data<float>()[i], without.b.data<float>()[i]);
}

TEST_F(LoraBackward, MisshapedGradientIsAnInternalError) {
  LoraGrads grads{.a = Tensor::zeros({kRank + 1, kIn}, DType::f32), .b = prior_b.clone()};
  EXPECT_WICK_ERROR(linear_backward(*cpu, x, proj, &lora, d_out, nullptr, &grads), ErrorKind::internal, "matmul");
}

}  // namespace
}  // namespace wick::test

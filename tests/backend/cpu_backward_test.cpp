// The CPU backend's training ops (backend.h, "Backward twins"), each against its forward op by finite differences:
// L = Σ r ⊙ f(inputs) with random r, accumulated in double; the analytic gradient comes from the backward op with
// d_out = r, the numeric one from central differences of the forward op, element by element.
//
// Tolerance: |analytic − numeric| ≤ kAbsTol + kRelTol·|numeric| per element, with gradients of order 1. The forward
// ops compute in f32, so L carries rounding noise of about 1e-6 (√outputs · 2⁻²⁴ · |r|·|y|, |r|, |y| ≤ 1, ~100
// outputs); over a step h = 1e-2·(1 + |x|) that is ≈ 1e-4 of numeric error at worst, and the truncation error of
// central differences, h²·|f'''|/6, is of that order for the smooth ops here (softmax, silu, rmsnorm on inputs of
// order 1). The largest difference these tests see is 4e-5 (swiglu's gate); kAbsTol = 5e-4 leaves a margin of
// ten, while a wrong term in a backward (a missing softmax-Jacobian term, a sign, a factor of scale) is an error
// of order 0.1. Every check also asserts that the numeric gradient is far from zero, so no comparison is vacuous.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

constexpr double kAbsTol = 5e-4;
constexpr double kRelTol = 1e-3;

// Uniform magnitudes in [0.1, 1] with random signs: no zero an op could hide behind.
Tensor random_nonzero(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(0.1f, 1.0f);
  Tensor t = Tensor::empty(shape, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = (rng() & 1 ? 1.0f : -1.0f) * mag(rng);
  return t;
}

// Σ r ⊙ y in double.
double weighted_sum(const Tensor& r, const Tensor& y) {
  double s = 0.0;
  for (int64_t i = 0; i < r.numel(); ++i) s += double(r.data<float>()[i]) * y.data<float>()[i];
  return s;
}

// d loss / dx by central differences, element by element (x perturbed in place and restored).
Tensor numeric_gradient(Tensor& x, const std::function<double()>& loss) {
  Tensor g = Tensor::empty(x.shape(), DType::f32);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float x0 = p[i], h = 1e-2f * (1.0f + std::fabs(x0));
    const float up = x0 + h, down = x0 - h;
    p[i] = up;
    const double l_up = loss();
    p[i] = down;
    const double l_down = loss();
    p[i] = x0;
    g.data<float>()[i] = float((l_up - l_down) / (double(up) - double(down)));  // the step as represented
  }
  return g;
}

// a − b elementwise (the part of an accumulated gradient this call added).
Tensor minus(const Tensor& a, const Tensor& b) {
  Tensor d = Tensor::empty(a.shape(), DType::f32);
  for (int64_t i = 0; i < a.numel(); ++i) d.data<float>()[i] = a.data<float>()[i] - b.data<float>()[i];
  return d;
}

::testing::AssertionResult gradient_near(const Tensor& analytic, const Tensor& numeric) {
  if (analytic.shape() != numeric.shape())
    return ::testing::AssertionFailure() << "shape " << to_string(analytic.shape()) << " vs "
                                         << to_string(numeric.shape());
  double largest = 0.0;
  int bad = 0;
  std::ostringstream first;
  for (int64_t i = 0; i < numeric.numel(); ++i) {
    const double a = analytic.data<float>()[i], n = numeric.data<float>()[i];
    largest = std::max(largest, std::fabs(n));
    if (!(std::fabs(a - n) <= kAbsTol + kRelTol * std::fabs(n)) && bad++ < 5)
      first << " [" << i << "] analytic " << a << " numeric " << n << ";";
  }
  if (bad > 0) return ::testing::AssertionFailure() << bad << " elements differ:" << first.str();
  if (largest < 0.05) return ::testing::AssertionFailure() << "numeric gradient is nearly zero (" << largest << ")";
  return ::testing::AssertionSuccess();
}

class CpuBackward : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend();
};

// The gradients of L = Σ r ⊙ (alpha·op(a)·op(b) + beta·c) w.r.t. a and b, themselves matmuls, accumulated
// (beta = 1) into non-zero gradients — as linear's backward and the LoRA factors use them.
TEST_F(CpuBackward, MatmulGradientsInEveryTransposeCombination) {
  const int64_t m = 3, k = 5, n = 4;
  const float alpha = 0.7f;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "transpose_a " << ta << " transpose_b " << tb);
      Tensor a = random_nonzero(ta ? Shape{k, m} : Shape{m, k}, 1),
             b = random_nonzero(tb ? Shape{n, k} : Shape{k, n}, 2);
      const Tensor r = random_nonzero({m, n}, 3), c = random_nonzero({m, n}, 4);
      const MatmulParams p{.transpose_a = ta, .transpose_b = tb, .alpha = alpha, .beta = 0.5f};
      const auto loss = [&] {
        Tensor out = c.clone();
        be->matmul(a, b, out, p);
        return weighted_sum(r, out);
      };
      const Tensor da0 = random_nonzero(a.shape(), 5), db0 = random_nonzero(b.shape(), 6);
      Tensor da = da0.clone(), db = db0.clone();
      // d op(a) = alpha·r·op(b)ᵀ; d op(b) = alpha·op(a)ᵀ·r; a transposed operand takes the transpose of those.
      if (!ta)
        be->matmul(r, b, da, {.transpose_b = !tb, .alpha = alpha, .beta = 1.0f});
      else
        be->matmul(b, r, da, {.transpose_a = tb, .transpose_b = true, .alpha = alpha, .beta = 1.0f});
      if (!tb)
        be->matmul(a, r, db, {.transpose_a = !ta, .alpha = alpha, .beta = 1.0f});
      else
        be->matmul(r, a, db, {.transpose_a = true, .transpose_b = ta, .alpha = alpha, .beta = 1.0f});
      EXPECT_TRUE(gradient_near(minus(da, da0), numeric_gradient(a, loss))) << "a";
      EXPECT_TRUE(gradient_near(minus(db, db0), numeric_gradient(b, loss))) << "b";
    }
}

TEST_F(CpuBackward, MatmulEqualsNaiveTripleLoop) {
  const int64_t m = 7, k = 9, n = 6;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Tensor a = random_nonzero(ta ? Shape{k, m} : Shape{m, k}, 10),
                   b = random_nonzero(tb ? Shape{n, k} : Shape{k, n}, 11);
      const Tensor c = random_nonzero({m, n}, 12);
      Tensor out = c.clone();
      be->matmul(a, b, out, {.transpose_a = ta, .transpose_b = tb, .alpha = 2.0f, .beta = -0.5f});
      const float* ap = a.data<float>();
      const float* bp = b.data<float>();
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0.0;
          for (int64_t e = 0; e < k; ++e)
            s += double(ta ? ap[e * m + i] : ap[i * k + e]) * (tb ? bp[j * k + e] : bp[e * n + j]);
          const double want = 2.0 * s - 0.5 * c.data<float>()[i * n + j];
          EXPECT_NEAR(out.data<float>()[i * n + j], want, 1e-5) << ta << tb << " at " << i << "," << j;
        }
    }
}

// linear's backward as backend.h spells it out: dX = dY·W, dW += dYᵀ·X, checked against linear itself.
TEST_F(CpuBackward, LinearBackwardThroughMatmul) {
  Tensor x = random_nonzero({4, 6}, 20), w = random_nonzero({5, 6}, 21);
  const Tensor bias = random_nonzero({5}, 22), r = random_nonzero({4, 5}, 23);
  const auto loss = [&] {
    Tensor out = Tensor::empty({4, 5}, DType::f32);
    be->linear(x, w, bias, out);
    return weighted_sum(r, out);
  };
  Tensor dx = random_nonzero({4, 6}, 24);  // written: the old values must go
  const Tensor dw0 = random_nonzero({5, 6}, 25);
  Tensor dw = dw0.clone();
  be->matmul(r, w, dx);
  be->matmul(r, x, dw, {.transpose_a = true, .beta = 1.0f});
  EXPECT_TRUE(gradient_near(dx, numeric_gradient(x, loss)));
  EXPECT_TRUE(gradient_near(minus(dw, dw0), numeric_gradient(w, loss)));
}

TEST_F(CpuBackward, MatmulRejectsMismatchedShapes) {
  const Tensor a = random_nonzero({2, 3}, 1), b = random_nonzero({4, 5}, 2);
  Tensor out = Tensor::empty({2, 5}, DType::f32);
  EXPECT_WICK_ERROR(be->matmul(a, b, out), ErrorKind::internal, "matmul", "[2, 3]", "[4, 5]");
  EXPECT_WICK_ERROR(be->matmul(a, a, out, {.transpose_b = true}), ErrorKind::internal, "matmul", "[2, 5]");
}

TEST_F(CpuBackward, RmsNorm) {
  const int64_t rows = 3, n = 16;
  const float eps = 1e-5f;
  Tensor x = random_nonzero({rows, n}, 30);
  const Tensor w = random_nonzero({n}, 31), r = random_nonzero({rows, n}, 32);
  const auto loss = [&] {
    Tensor out = Tensor::empty({rows, n}, DType::f32);
    be->rmsnorm(x, w, eps, out);
    return weighted_sum(r, out);
  };
  Tensor dx = random_nonzero({rows, n}, 33);
  be->rmsnorm_backward(x, w, eps, r, dx);
  EXPECT_TRUE(gradient_near(dx, numeric_gradient(x, loss)));

  Tensor bad = Tensor::empty({rows, n}, DType::f32);
  EXPECT_WICK_ERROR(be->rmsnorm_backward(x, random_nonzero({n + 1}, 34), eps, r, bad), ErrorKind::internal,
                    "rmsnorm_backward", "[17]");
}

TEST_F(CpuBackward, Rope) {
  const int64_t n = 4, heads = 3, d = 8;
  Tensor x = random_nonzero({n, heads, d}, 40);
  const Tensor pos = Tensor::from_ints({9, 2, 31, 5}, {n}), r = random_nonzero({n, heads, d}, 41);
  const auto loss = [&] {
    Tensor y = x.clone();
    be->rope(y, pos, 10000.0);
    return weighted_sum(r, y);
  };
  Tensor dx = r.clone();
  be->rope_backward(dx, pos, 10000.0);
  EXPECT_TRUE(gradient_near(dx, numeric_gradient(x, loss)));
  // The transpose of a rotation is its inverse: rope_backward undoes rope.
  Tensor y = x.clone();
  be->rope(y, pos, 10000.0);
  be->rope_backward(y, pos, 10000.0);
  EXPECT_CLOSE(y, x, 1e-6);

  EXPECT_WICK_ERROR(be->rope_backward(dx, Tensor::from_ints({1, 2}, {2}), 10000.0), ErrorKind::internal,
                    "rope_backward");
}

TEST_F(CpuBackward, Swiglu) {
  const Shape shape{3, 10};
  Tensor gate = random_nonzero(shape, 50), up = random_nonzero(shape, 51);
  for (int64_t i = 0; i < gate.numel(); ++i) gate.data<float>()[i] *= 3.0f;  // into silu's curved part
  const Tensor r = random_nonzero(shape, 52);
  const auto loss = [&] {
    Tensor out = Tensor::empty(shape, DType::f32);
    be->swiglu(gate, up, out);
    return weighted_sum(r, out);
  };
  Tensor d_gate = random_nonzero(shape, 53), d_up = random_nonzero(shape, 54);
  be->swiglu_backward(gate, up, r, d_gate, d_up);
  EXPECT_TRUE(gradient_near(d_gate, numeric_gradient(gate, loss))) << "gate";
  EXPECT_TRUE(gradient_near(d_up, numeric_gradient(up, loss))) << "up";

  Tensor small = Tensor::empty({3, 9}, DType::f32);
  EXPECT_WICK_ERROR(be->swiglu_backward(gate, up, r, d_gate, small), ErrorKind::internal, "swiglu_backward", "[3, 9]");
}

// Causal GQA (4 query heads on 2 kv heads, head_dim 8) over a 12-row cache: queries at positions that are not
// 0..n−1 (a prefill chunk after cached tokens, then a decode-like query at 9), and a lone decode query.
TEST_F(CpuBackward, AttentionGroupedQueryOverCache) {
  const AttentionParams p{.num_heads = 4, .num_kv_heads = 2, .head_dim = 8, .scale = 0.6f};
  const int64_t cap = 12;
  for (const std::vector<int32_t>& positions : {std::vector<int32_t>{2, 5, 6, 9}, std::vector<int32_t>{9}}) {
    const int64_t n = int64_t(positions.size()), last = positions.back();
    SCOPED_TRACE(::testing::Message() << n << " queries, last at " << last);
    const Tensor pos = Tensor::from_ints(positions, {n});
    Tensor q = random_nonzero({n, 4, 8}, 60), k = random_nonzero({cap, 2, 8}, 61), v = random_nonzero({cap, 2, 8}, 62);
    const Tensor r = random_nonzero({n, 32}, 63);
    const auto loss = [&] {
      Tensor out = Tensor::empty({n, 32}, DType::f32);
      be->attention(q, k, v, pos, out, p);
      return weighted_sum(r, out);
    };
    const Tensor dk0 = random_nonzero({cap, 2, 8}, 64), dv0 = random_nonzero({cap, 2, 8}, 65);
    Tensor dq = random_nonzero({n, 4, 8}, 66), dk = dk0.clone(), dv = dv0.clone();
    be->attention_backward({.q = q, .k = k, .v = v, .positions = pos}, r, {.dq = dq, .dk = dk, .dv = dv}, p);
    EXPECT_TRUE(gradient_near(dq, numeric_gradient(q, loss))) << "q";
    // Rows past the last visible key have zero numeric gradient and must keep their old values.
    EXPECT_TRUE(gradient_near(minus(dk, dk0), numeric_gradient(k, loss))) << "k";
    EXPECT_TRUE(gradient_near(minus(dv, dv0), numeric_gradient(v, loss))) << "v";
    EXPECT_TRUE(same_rows(dk, dk0, last + 1, cap));
    EXPECT_TRUE(same_rows(dv, dv0, last + 1, cap));
  }
}

TEST_F(CpuBackward, AttentionRejectsMismatchedShapes) {
  const AttentionParams p{.num_heads = 4, .num_kv_heads = 2, .head_dim = 8, .scale = 0.5f};
  const Tensor q = random_nonzero({2, 4, 8}, 1), k = random_nonzero({12, 2, 8}, 2),
               pos = Tensor::from_ints({3, 4}, {2});
  Tensor dq = Tensor::empty({2, 4, 8}, DType::f32), dk = Tensor::empty({12, 1, 8}, DType::f32);
  const Tensor d_out = random_nonzero({2, 32}, 3);
  EXPECT_WICK_ERROR(
      be->attention_backward({.q = q, .k = k, .v = k, .positions = pos}, d_out, {.dq = dq, .dk = dk, .dv = dk}, p),
      ErrorKind::internal, "attention_backward", "dk [12, 1, 8]");
  Tensor dk_ok = Tensor::zeros({12, 2, 8}, DType::f32);
  EXPECT_WICK_ERROR(be->attention_backward({.q = q, .k = k, .v = k, .positions = Tensor::from_ints({3, 12}, {2})},
                                           d_out, {.dq = dq, .dk = dk_ok, .dv = dk_ok}, p),
                    ErrorKind::internal, "attention_backward", "context 13");
}

TEST_F(CpuBackward, CrossEntropy) {
  const int64_t rows = 4, classes = 7;
  const float scale = 0.37f;
  Tensor logits = random_nonzero({rows, classes}, 70);
  for (int64_t i = 0; i < logits.numel(); ++i) logits.data<float>()[i] *= 3.0f;
  const Tensor targets = Tensor::from_ints({3, -100, 0, 6}, {rows});
  const auto loss = [&] {
    Tensor scratch = Tensor::empty({rows, classes}, DType::f32);
    return double(scale) * be->cross_entropy(logits, targets, scale, scratch);
  };
  Tensor d = random_nonzero({rows, classes}, 71);  // written: an ignored row must become 0
  be->cross_entropy(logits, targets, scale, d);
  EXPECT_TRUE(gradient_near(d, numeric_gradient(logits, loss)));
  for (int64_t c = 0; c < classes; ++c) EXPECT_EQ(d.data<float>()[classes + c], 0.0f) << "ignored row, class " << c;
}

// Hand-computed: row 0 [1, 2, 3] → class 2: loss log(e + e² + e³) − 3; row 1 [0.5, −1, 2] → class 0:
// log(e^0.5 + e^−1 + e²) − 0.5; row 2 ignored. Gradients scale · (softmax − onehot), worked out in double.
TEST_F(CpuBackward, CrossEntropyMatchesHandComputedValues) {
  const Tensor logits = Tensor::from_floats({1, 2, 3, 0.5f, -1, 2, 4, 4, 4}, {3, 3});
  const Tensor targets = Tensor::from_ints({2, 0, -100}, {3});
  Tensor d = Tensor::empty({3, 3}, DType::f32);
  EXPECT_NEAR(be->cross_entropy(logits, targets, 0.5f, d), 0.4076059644443806 + 1.7413112966571571, 1e-6);
  const double want[9] = {0.09003057317038043,
                          0.24472847105479759,
                          -0.3347590442251783,
                          -0.8247096078599633,
                          0.03911257327068745,
                          0.7855970345892758,
                          0,
                          0,
                          0};
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(d.data<float>()[i], 0.5 * want[i], 1e-6) << i;
}

TEST_F(CpuBackward, CrossEntropyRejectsBadTargetsAndShapes) {
  const Tensor logits = random_nonzero({3, 4}, 80);
  Tensor d = Tensor::empty({3, 4}, DType::f32);
  EXPECT_WICK_ERROR(be->cross_entropy(logits, Tensor::from_ints({1, -100, 4}, {3}), 1.0f, d), ErrorKind::bad_input,
                    "row 2", "target 4");
  EXPECT_WICK_ERROR(be->cross_entropy(logits, Tensor::from_ints({-1, 0, 0}, {3}), 1.0f, d), ErrorKind::bad_input,
                    "row 0", "target -1");
  EXPECT_WICK_ERROR(be->cross_entropy(logits, Tensor::from_ints({1, 2}, {2}), 1.0f, d), ErrorKind::internal,
                    "cross_entropy", "targets [2]");
}

// Repeated ids add twice; rows no id names keep their old values.
TEST_F(CpuBackward, Embedding) {
  const int64_t vocab = 6, hidden = 5;
  Tensor table = random_nonzero({vocab, hidden}, 90);
  const Tensor ids = Tensor::from_ints({3, 1, 3, 0}, {4}), r = random_nonzero({4, hidden}, 91);
  const auto loss = [&] {
    Tensor out = Tensor::empty({4, hidden}, DType::f32);
    be->embedding(table, ids, out);
    return weighted_sum(r, out);
  };
  const Tensor d0 = random_nonzero({vocab, hidden}, 92);
  Tensor d = d0.clone();
  be->embedding_backward(ids, r, d);
  EXPECT_TRUE(gradient_near(minus(d, d0), numeric_gradient(table, loss)));
  EXPECT_TRUE(same_rows(d, d0, 2, 3));
  EXPECT_TRUE(same_rows(d, d0, 4, vocab));

  EXPECT_WICK_ERROR(be->embedding_backward(Tensor::from_ints({6}, {1}), r.rows(0, 1), d), ErrorKind::bad_input,
                    "token id 6");
  EXPECT_WICK_ERROR(be->embedding_backward(ids, random_nonzero({4, 4}, 93), d), ErrorKind::internal,
                    "embedding_backward", "[4, 4]");
}

// Dropout keeps about 1 − p of the elements, scales them by 1/(1 − p), draws the same mask for the same seed and
// shape (so applying it to a gradient is its backward), another mask for another seed, and may work in place.
TEST_F(CpuBackward, DropoutIsASeededMask) {
  const int64_t n = 20000;
  const float p = 0.25f;
  Tensor ones = Tensor::empty({100, n / 100}, DType::f32);
  for (int64_t i = 0; i < n; ++i) ones.data<float>()[i] = 1.0f;
  Tensor a = Tensor::empty(ones.shape(), DType::f32), b = Tensor::empty(ones.shape(), DType::f32);
  be->dropout(ones, p, 42, a);
  int64_t kept = 0, same_as_other_seed = 0;
  Tensor c = ones.clone();
  be->dropout(c, p, 42, c);  // in place
  be->dropout(ones, p, 43, b);
  for (int64_t i = 0; i < n; ++i) {
    const float v = a.data<float>()[i];
    ASSERT_TRUE(v == 0.0f || v == 1.0f / (1.0f - p)) << v;
    kept += v != 0.0f;
    same_as_other_seed += (v != 0.0f) == (b.data<float>()[i] != 0.0f);
    ASSERT_EQ(c.data<float>()[i], v) << "the same seed draws the same mask";
  }
  EXPECT_NEAR(double(kept) / n, 1.0 - p, 0.015);
  EXPECT_LT(same_as_other_seed, n - 1000) << "another seed draws another mask";
  EXPECT_WICK_ERROR(be->dropout(ones, 1.0f, 1, a), ErrorKind::internal, "dropout", "p");
  Tensor part = c.rows(0, 2);
  EXPECT_WICK_ERROR(be->dropout(ones, p, 1, part), ErrorKind::internal, "dropout");
}

}  // namespace
}  // namespace wick::test

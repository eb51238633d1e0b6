// The CPU backend with 8-bit weights (CpuWeights::int8): upload_weight quantises a matrix row by row (what
// quantize_q8_0 gives each row), and linear, embedding and matmul (d_out·W) take the q8_0 weight as the f32 matrix of
// its dequantised values — checked against the same ops on that f32 matrix, on odd shapes (rows that end in a
// partial block).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"
#include "wick/quant.h"

namespace wick::test {
namespace {

class CpuInt8Weights : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(CpuWeights::int8);
  std::unique_ptr<Backend> f32 = make_cpu_backend(CpuWeights::f32);
};

// upload_weight quantises any dtype, each row as quantize_q8_0 does; a q8_0 matrix (a merged weight) is kept.
TEST_F(CpuInt8Weights, UploadWeightQuantisesEachRow) {
  std::mt19937 rng(1);
  const Tensor w = random_normal({37, 45}, rng, 0.05f);
  for (const DType file : {DType::f32, DType::bf16, DType::f16}) {
    const Tensor host = w.to(file);
    const Tensor q = be->upload_weight(host);
    ASSERT_EQ(q.dtype(), DType::q8_0);
    ASSERT_EQ(q.shape(), host.shape());
    const Tensor widened = host.to(DType::f32);
    for (int64_t r = 0; r < 37; ++r) {
      Q8Block want[2];
      quantize_q8_0(widened.data<float>() + r * 45, want, 45);
      ASSERT_EQ(std::memcmp(q.data<Q8Block>() + r * 2, want, sizeof(want)), 0) << to_string(file) << " row " << r;
    }
    EXPECT_EQ(be->upload_weight(q).raw(), q.raw());
  }
  // Norms and biases go through upload(), in f32 as ever.
  EXPECT_EQ(be->upload(w, be->compute_dtype()).dtype(), DType::f32);
}

TEST_F(CpuInt8Weights, ANonFiniteWeightIsBadInputNamingItsPlace) {
  Tensor w = Tensor::zeros({3, 40}, DType::f32);
  w.data<float>()[2 * 40 + 33] = NAN;
  EXPECT_WICK_ERROR(be->upload_weight(w), ErrorKind::bad_input, "row 2 of [3, 40]", "element 33");
}

// linear on the q8_0 weight gives the bits of linear on its dequantised f32 matrix (in ≤ 2048: cpu_kernels.h), for
// one row (decode) and many (prefill), with a bias and an accumulating beta.
TEST_F(CpuInt8Weights, LinearEqualsLinearOnTheDequantisedMatrix) {
  std::mt19937 rng(2);
  const Tensor w = random_normal({70, 301}, rng, 0.05f), bias = random_normal({70}, rng);
  const Tensor q = be->upload_weight(w), deq = q.to(DType::f32);
  for (const int64_t rows : {1, 3, 17}) {
    const Tensor x = random_normal({rows, 301}, rng), prior = random_normal({rows, 70}, rng);
    Tensor got = prior.clone(), want = prior.clone();
    be->linear(x, q, bias, got, {.alpha = 0.5f, .beta = 1.0f});
    f32->linear(x, deq, bias, want, {.alpha = 0.5f, .beta = 1.0f});
    EXPECT_TRUE(same_bits(got, want)) << "rows " << rows;
    EXPECT_GT(std::fabs(got.data<float>()[0] - prior.data<float>()[0]), 0.0f);
  }
}

// The embedding dequantises the rows it looks up (the table is also a tied head).
TEST_F(CpuInt8Weights, EmbeddingDequantisesTheRowsItLooksUp) {
  std::mt19937 rng(3);
  const Tensor table = be->upload_weight(random_normal({50, 67}, rng)), deq = table.to(DType::f32);
  const Tensor ids = Tensor::from_ints({49, 0, 7, 7}, {4});
  Tensor out = Tensor::empty({4, 67}, DType::f32);
  be->embedding(table, ids, out);
  for (int64_t t = 0; t < 4; ++t)
    EXPECT_EQ(std::memcmp(out.data<float>() + t * 67, deq.data<float>() + ids.data<int32_t>()[t] * 67, 67 * 4), 0)
        << "token " << t;
  Tensor one = Tensor::empty({1, 67}, DType::f32);
  EXPECT_WICK_ERROR(be->embedding(table, Tensor::from_ints({50}, {1}), one), ErrorKind::bad_input, "50", "vocabulary");
}

// d_out·W with W in q8_0 (a LoRA backward through an 8-bit base), widened a panel of rows at a time: the product of
// the dequantised matrix up to f32 summation order (k = 300 > the 256-row panel), with op(a) plain or transposed.
TEST_F(CpuInt8Weights, MatmulByTheWeightEqualsMatmulByTheDequantisedMatrix) {
  std::mt19937 rng(4);
  const Tensor w = be->upload_weight(random_normal({300, 45}, rng, 0.05f)), deq = w.to(DType::f32);
  for (const bool ta : {false, true}) {
    const Tensor a = random_normal(ta ? Shape{300, 6} : Shape{6, 300}, rng), prior = random_normal({6, 45}, rng);
    Tensor got = prior.clone(), want = prior.clone();
    be->matmul(a, w, got, {.transpose_a = ta, .alpha = 2.0f, .beta = 0.5f});
    f32->matmul(a, deq, want, {.transpose_a = ta, .alpha = 2.0f, .beta = 0.5f});
    EXPECT_CLOSE(got, want, 1e-6);
  }
  Tensor out = Tensor::empty({6, 45}, DType::f32);
  EXPECT_WICK_ERROR(be->matmul(random_normal({6, 300}, rng), w, out, {.transpose_b = true}), ErrorKind::internal,
                    "q8_0 b");
}

}  // namespace
}  // namespace wick::test

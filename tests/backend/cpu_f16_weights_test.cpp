// The CPU backend with f16 weights kept as they are (CpuWeights::native): upload_weight keeps the matrix without a
// copy, and linear, embedding and matmul (d_out·W) take it as the f32 matrix of its widened values — checked against
// the same ops on that f32 matrix, on odd shapes.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "backend/backend.h"
#include "backend_test_util.h"
#include "test_util.h"

namespace wick::test {
namespace {

class CpuF16Weights : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be = make_cpu_backend(CpuWeights::native);
  std::unique_ptr<Backend> f32 = make_cpu_backend(CpuWeights::f32);
};

// An f16 (or bf16) matrix is kept as it is, its storage shared; CpuWeights::f32 widens it.
TEST_F(CpuF16Weights, UploadWeightKeepsTheMatrix) {
  std::mt19937 rng(1);
  for (const DType file : {DType::f16, DType::bf16}) {
    const Tensor host = random_normal({37, 45}, rng, 0.05f).to(file);
    const Tensor w = be->upload_weight(host);
    EXPECT_EQ(w.dtype(), file);
    EXPECT_EQ(w.raw(), host.raw()) << to_string(file);
    EXPECT_TRUE(same_bits(f32->upload_weight(host), host.to(DType::f32))) << to_string(file);
  }
}

// linear on the f16 weight gives the bits of linear on its widened f32 matrix (cpu_kernels.h), for one row (decode)
// and many (prefill), with a bias and an accumulating beta; in = 2500 spans two k blocks.
TEST_F(CpuF16Weights, LinearEqualsLinearOnTheWidenedMatrix) {
  std::mt19937 rng(2);
  for (const int64_t in : {301, 2500}) {
    const Tensor w = be->upload_weight(random_normal({70, in}, rng, 0.05f).to(DType::f16));
    const Tensor wide = w.to(DType::f32), bias = random_normal({70}, rng);
    for (const int64_t rows : {1, 3, 17}) {
      const Tensor x = random_normal({rows, in}, rng), prior = random_normal({rows, 70}, rng);
      Tensor got = prior.clone(), want = prior.clone();
      be->linear(x, w, bias, got, {.alpha = 0.5f, .beta = 1.0f});
      f32->linear(x, wide, bias, want, {.alpha = 0.5f, .beta = 1.0f});
      EXPECT_TRUE(same_bits(got, want)) << "in " << in << " rows " << rows;
    }
  }
}

// The embedding widens the rows it looks up (the table is also a tied head).
TEST_F(CpuF16Weights, EmbeddingWidensTheRowsItLooksUp) {
  std::mt19937 rng(3);
  const Tensor table = be->upload_weight(random_normal({50, 67}, rng).to(DType::f16)), wide = table.to(DType::f32);
  const Tensor ids = Tensor::from_ints({49, 0, 7, 7}, {4});
  Tensor out = Tensor::empty({4, 67}, DType::f32);
  be->embedding(table, ids, out);
  for (int64_t t = 0; t < 4; ++t)
    EXPECT_EQ(std::memcmp(out.data<float>() + t * 67, wide.data<float>() + ids.data<int32_t>()[t] * 67, 67 * 4), 0)
        << "token " << t;
}

// d_out·W with W in f16 (a LoRA backward through an f16 base), widened a panel of rows at a time: the product of the
// widened matrix up to f32 summation order (k = 300 > the 256-row panel), with op(a) plain or transposed.
TEST_F(CpuF16Weights, MatmulByTheWeightEqualsMatmulByTheWidenedMatrix) {
  std::mt19937 rng(4);
  const Tensor w = be->upload_weight(random_normal({300, 45}, rng, 0.05f).to(DType::f16)), wide = w.to(DType::f32);
  for (const bool ta : {false, true}) {
    const Tensor a = random_normal(ta ? Shape{300, 6} : Shape{6, 300}, rng), prior = random_normal({6, 45}, rng);
    Tensor got = prior.clone(), want = prior.clone();
    be->matmul(a, w, got, {.transpose_a = ta, .alpha = 2.0f, .beta = 0.5f});
    f32->matmul(a, wide, want, {.transpose_a = ta, .alpha = 2.0f, .beta = 0.5f});
    EXPECT_CLOSE(got, want, 1e-6);
  }
  Tensor out = Tensor::empty({6, 45}, DType::f32);
  EXPECT_WICK_ERROR(be->matmul(random_normal({6, 300}, rng), w, out, {.transpose_b = true}), ErrorKind::internal,
                    "f16 b");
}

}  // namespace
}  // namespace wick::test

// Helpers of the CUDA backend tests: a fixture with both backends, identical random inputs for them and a
// relative-error check.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include <memory>

#include "backend/backend.h"
#include "wick/dtype.h"
#include "wick/error.h"
#include "wick/tensor.h"

namespace wick::test {

// Random f32 values already rounded to bf16, so both backends see identical inputs.
inline Tensor random_bf16_values(const Shape& shape, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Tensor t = Tensor::empty(shape, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = bf16_to_f32(f32_to_bf16(dist(rng)));
  return t;
}

struct Compared {
  double rel_l2 = 0;  // ‖got − ref‖ / ‖ref‖
  bool finite = true;
};

inline Compared compare(const Tensor& got, const Tensor& ref) {
  double num = 0, den = 0;
  Compared c;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double g = got.data<float>()[i], r = ref.data<float>()[i];
    if (!std::isfinite(g)) c.finite = false;
    num += (g - r) * (g - r);
    den += r * r;
  }
  c.rel_l2 = std::sqrt(num / std::max(den, 1e-30));
  return c;
}

inline ::testing::AssertionResult close(const Tensor& got, const Tensor& ref, double tol) {
  const Compared c = compare(got, ref);
  if (!c.finite) return ::testing::AssertionFailure() << "NaN or inf in output";
  if (c.rel_l2 > tol) return ::testing::AssertionFailure() << "relative L2 error " << c.rel_l2 << " > " << tol;
  return ::testing::AssertionSuccess();
}

#define EXPECT_CLOSE(got, ref, tol) EXPECT_TRUE(close(got, ref, tol))

constexpr double kBf16Tol = 1e-2;  // bf16 range (DESIGN: relative error ≤ 1e-2, never NaN)

/// Whether rows [begin, end) of two f32 tensors hold the same floats.
inline bool same_rows(const Tensor& a, const Tensor& b, int64_t begin, int64_t end) {
  const int64_t row = a.numel() / a.dim(0);
  for (int64_t i = begin * row; i < end * row; ++i)
    if (a.data<float>()[i] != b.data<float>()[i]) return false;
  return true;
}

/// Both backends, the CUDA one under test and the CPU one as its reference; skipped (not failed) without a GPU.
class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      gpu = make_backend(Device::cuda);
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();
    }
    cpu = make_cpu_backend();
  }
  // The same host values on both backends.
  Tensor on_cpu(const Tensor& host) { return cpu->upload(host, host.dtype() == DType::i32 ? DType::i32 : DType::f32); }
  Tensor on_gpu(const Tensor& host) { return gpu->upload(host, host.dtype() == DType::i32 ? DType::i32 : DType::bf16); }

  std::unique_ptr<Backend> cpu, gpu;
};

}  // namespace wick::test

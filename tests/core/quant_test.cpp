// q8_0 (wick/quant.h): the quantiser's bounds checked block by block in double — the scale is the smallest f16 that
// covers the block's largest |v| (so nothing clamps), every value within half a step of its original, the last block of
// an odd row padded with zeros — and the q8_0 tensor's storage, views and conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "test_util.h"
#include "wick/dtype.h"
#include "wick/quant.h"
#include "wick/safetensors.h"
#include "wick/tensor.h"

namespace wick::test {
namespace {

// A row of n values of magnitudes around `scale` (normal), with a few outliers 10× larger.
std::vector<float> random_row(int64_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = dist(rng) * (i % 37 == 5 ? 10.0f : 1.0f);
  return v;
}

// Checks every block of one quantised row against its source; the first failure names the block.
::testing::AssertionResult well_quantised(const std::vector<float>& v, const std::vector<Q8Block>& q) {
  const int64_t n = int64_t(v.size());
  std::vector<float> back(v.size());
  dequantize_q8_0(q.data(), back.data(), n);
  for (int64_t b = 0; b < q8_blocks(n); ++b) {
    const int64_t first = b * kQ8Group, count = std::min<int64_t>(kQ8Group, n - first);
    double amax = 0;
    for (int64_t i = first; i < first + count; ++i) amax = std::max(amax, std::fabs(double(v[size_t(i)])));
    const double s = f16_to_f32(q[size_t(b)].scale);
    const double smallest = std::ldexp(1.0, -24);  // the f16 step below 2⁻¹⁴ (subnormal scales)
    if (s * 127 < amax || s > amax / 127 * (1 + std::ldexp(1.0, -10)) + smallest)
      return ::testing::AssertionFailure() << "block " << b << ": scale " << s << " for max |v| " << amax;
    for (int64_t i = 0; i < kQ8Group; ++i) {
      const int q8 = q[size_t(b)].q[i];
      if (i >= count) {
        if (q8 != 0) return ::testing::AssertionFailure() << "block " << b << ": padding value " << i << " is " << q8;
        continue;
      }
      const double value = v[size_t(first + i)], got = back[size_t(first + i)];
      if (got != double(q8) * s)  // exact in f32
        return ::testing::AssertionFailure() << "element " << first + i << ": dequantised " << got << " is not "
                                             << q8 << " · " << s;
      if (!(std::fabs(value - got) <= s / 2) || q8 < -127 || q8 > 127)
        return ::testing::AssertionFailure() << "element " << first + i << ": " << value << " became " << q8
                                             << " · " << s << " = " << got;
    }
  }
  return ::testing::AssertionSuccess();
}

TEST(Q8, EveryValueWithinHalfAStepOfTheSmallestCoveringScale) {
  std::mt19937 rng(1);
  // Scales from f16 subnormal ones (largest |v| below 7.8e-3) to large weights; rows with partial last blocks.
  for (const float scale : {1e-7f, 1e-5f, 2e-3f, 0.02f, 1.0f, 300.0f})
    for (const int64_t n : {1, 7, 31, 32, 33, 64, 100, 896 + 5}) {
      const std::vector<float> v = random_row(n, scale, rng);
      std::vector<Q8Block> q(size_t(q8_blocks(n)));
      std::memset(q.data(), 0x55, q.size() * sizeof(Q8Block));  // the quantiser writes every byte, padding included
      quantize_q8_0(v.data(), q.data(), n);
      EXPECT_TRUE(well_quantised(v, q)) << "scale " << scale << " n " << n;
    }
}

// Values on a block's grid come back exactly, the largest |v| as ±127 steps; a block of zeros has scale 0.
TEST(Q8, GridValuesAndZerosRoundTripExactly) {
  std::vector<float> v(64, 0.0f);
  const float step = 0.25f;  // an f16
  for (int i = 0; i < 32; ++i) v[size_t(i)] = step * float((i * 37) % 255 - 127);
  v[3] = 127 * step;
  std::vector<Q8Block> q(2);
  quantize_q8_0(v.data(), q.data(), 64);
  EXPECT_EQ(f16_to_f32(q[0].scale), step);
  EXPECT_EQ(q[1].scale, 0);
  std::vector<float> back(64);
  dequantize_q8_0(q.data(), back.data(), 64);
  EXPECT_EQ(back, v);
}

TEST(Q8, NonFiniteOrTooLargeValuesAreBadInput) {
  std::vector<float> v(40, 1.0f);
  std::vector<Q8Block> q(2);
  v[35] = std::nanf("");
  EXPECT_WICK_ERROR(quantize_q8_0(v.data(), q.data(), 40), ErrorKind::bad_input, "element 35", "finite");
  v[35] = -INFINITY;
  EXPECT_WICK_ERROR(quantize_q8_0(v.data(), q.data(), 40), ErrorKind::bad_input, "element 35", "finite");
  v[35] = 1e8f;  // 1e8 / 127 > 65504
  EXPECT_WICK_ERROR(quantize_q8_0(v.data(), q.data(), 40), ErrorKind::bad_input, "elements [32, 40)", "f16 scale");
}

TEST(Q8Tensor, StorageIsBlocksOfEachRow) {
  EXPECT_EQ(storage_bytes(DType::q8_0, {3, 64}), size_t(3 * 2 * 34));
  EXPECT_EQ(storage_bytes(DType::q8_0, {3, 65}), size_t(3 * 3 * 34));
  EXPECT_EQ(storage_bytes(DType::q8_0, {2, 3, 1}), size_t(6 * 34));
  EXPECT_EQ(storage_bytes(DType::q8_0, {5, 0}), size_t(0));
  EXPECT_EQ(storage_bytes(DType::bf16, {3, 65}), size_t(3 * 65 * 2));
  EXPECT_EQ(Tensor::empty({7, 33}, DType::q8_0).nbytes(), size_t(7 * 2 * 34));
  EXPECT_EQ(dtype_size(DType::q8_0), size_t(0));
  EXPECT_EQ(to_string(DType::q8_0), "q8_0");
}

// to(q8_0) quantises row by row (each row's last block padded), rows() views whole rows, to(f32) dequantises.
TEST(Q8Tensor, ConversionsAndRowViews) {
  std::mt19937 rng(5);
  const Tensor f = random_normal({5, 45}, rng, 0.1f);
  const Tensor q = f.to(DType::q8_0);
  ASSERT_EQ(q.dtype(), DType::q8_0);
  ASSERT_EQ(q.shape(), (Shape{5, 45}));
  const Tensor back = q.to(DType::f32);
  for (int64_t r = 0; r < 5; ++r) {
    std::vector<float> row(f.data<float>() + r * 45, f.data<float>() + (r + 1) * 45);
    std::vector<Q8Block> want(2);
    quantize_q8_0(row.data(), want.data(), 45);
    EXPECT_EQ(std::memcmp(q.data<Q8Block>() + r * 2, want.data(), 2 * sizeof(Q8Block)), 0) << "row " << r;
    EXPECT_TRUE(well_quantised(row, want)) << "row " << r;
    std::vector<float> deq(45);
    dequantize_q8_0(want.data(), deq.data(), 45);
    EXPECT_EQ(std::memcmp(back.data<float>() + r * 45, deq.data(), 45 * sizeof(float)), 0) << "row " << r;
  }
  const Tensor mid = q.rows(2, 4);
  EXPECT_EQ(mid.shape(), (Shape{2, 45}));
  EXPECT_EQ(mid.raw(), static_cast<const void*>(q.data<Q8Block>() + 2 * 2));
  EXPECT_EQ(std::memcmp(mid.to(DType::f32).raw(), back.data<float>() + 2 * 45, 2 * 45 * sizeof(float)), 0);
  // Through bf16 too (the loader's case: a bf16 file quantised), without an f32 copy of the whole tensor.
  const Tensor b = f.to(DType::bf16);
  const Tensor via = b.to(DType::q8_0), direct = b.to(DType::f32).to(DType::q8_0);
  EXPECT_EQ(std::memcmp(via.raw(), direct.raw(), via.nbytes()), 0);
  EXPECT_EQ(std::memcmp(q.clone().raw(), q.raw(), q.nbytes()), 0);
}

TEST(Q8Tensor, LayoutChangesAndOtherTypesAreRefused) {
  const Tensor q = Tensor::zeros({4, 64}, DType::q8_0);
  EXPECT_EQ(q.reshape({2, 2, 64}).nbytes(), q.nbytes());
  EXPECT_WICK_ERROR(q.reshape({8, 32}), ErrorKind::internal, "q8_0 keeps its rows' length");
  EXPECT_WICK_ERROR(Tensor::zeros({64}, DType::q8_0).rows(0, 1), ErrorKind::internal, "q8_0");
  EXPECT_WICK_ERROR(q.data<float>(), ErrorKind::internal, "q8_0");
  EXPECT_WICK_ERROR(q.data<uint16_t>(), ErrorKind::internal, "q8_0");
  EXPECT_WICK_ERROR(write_safetensors(temp_dir("q8") / "q.safetensors", {{"q", q}}), ErrorKind::bad_input, "'q'",
                    "q8_0", "no safetensors dtype");
}

}  // namespace
}  // namespace wick::test

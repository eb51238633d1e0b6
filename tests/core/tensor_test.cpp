// dtype conversions (bf16, f16) against independent references, and Tensor views.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "test_util.h"
#include "wick/dtype.h"
#include "wick/tensor.h"

namespace wick {
namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Reference bf16 rounding: of the two bf16 neighbours of f, the nearer in exact double
// arithmetic, ties to the even pattern; past the largest finite value "inf" stands for 2^128.
uint16_t bf16_reference(float f) {
  const uint16_t lo = uint16_t(bits_of(f) >> 16);  // truncation
  const uint16_t hi = uint16_t(lo + 1);            // next magnitude up
  auto value = [](uint16_t b) {
    const float v = bf16_to_f32(b);
    return std::isinf(v) ? std::copysign(0x1p128, double(v)) : double(v);
  };
  const double dlo = std::fabs(double(f) - value(lo));
  const double dhi = std::fabs(double(f) - value(hi));
  if (dlo != dhi) return dlo < dhi ? lo : hi;
  return (lo & 1) ? hi : lo;
}

TEST(Bf16, EveryPatternRoundTrips) {
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = bf16_to_f32(uint16_t(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f)))) << std::hex << b;
      EXPECT_EQ(f32_to_bf16(f) & 0x8000, b & 0x8000) << "NaN keeps its sign, pattern " << std::hex << b;
    } else {
      EXPECT_EQ(f32_to_bf16(f), b) << std::hex << b;
    }
  }
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);        // halfway, 0x3f80 is even
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);    // halfway, 0x3f82 is even
  EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // just above halfway
  EXPECT_EQ(f32_to_bf16(-1.0f - 3 * 0x1p-8f), 0xbf82);
  EXPECT_EQ(f32_to_bf16(2.0f - 0x1p-9f), 0x4000);        // rounding carries into the exponent
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // torch also rounds FLT_MAX to inf
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
}

TEST(Bf16, InfinityNanAndSubnormals) {
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits only in the low 16 bits must not truncate to infinity.
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(float_of(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(float_of(0xff800001u)))));
  EXPECT_EQ(f32_to_bf16(float_of(0x00200000u)), 0x0020);  // 2^-130, exact
  EXPECT_EQ(f32_to_bf16(float_of(0x00008000u)), 0x0000);  // halfway to the smallest subnormal: even is 0
  EXPECT_EQ(f32_to_bf16(float_of(0x00018000u)), 0x0002);
  EXPECT_EQ(bf16_to_f32(0x0001), float_of(0x00010000u));
}

TEST(Bf16, MatchesReferenceOnRandomFloats) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const float f = float_of(uint32_t(rng()));
    if (!std::isfinite(f)) continue;
    ASSERT_EQ(f32_to_bf16(f), bf16_reference(f)) << std::hex << bits_of(f);
  }
}

TEST(F16, EveryPatternRoundTrips) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f))
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << std::hex << h;
    else
      EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
  }
}

TEST(F16, KnownValues) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);                // largest finite half
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);                // halfway to 65536: even is inf
  EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);         // halfway, ties to even
  EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(f32_to_f16(2.0f - 0x1p-11f), 0x4000);         // carries into the exponent
  EXPECT_EQ(f32_to_f16(0x1p-14f), 0x0400);                // smallest normal
  EXPECT_EQ(f32_to_f16(0x1p-24f), 0x0001);                // smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0x0000);                // halfway to it: even is 0
  EXPECT_EQ(f32_to_f16(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(f32_to_f16(1023.5f * 0x1p-24f), 0x0400);      // largest subnormal rounds up to the smallest normal
  EXPECT_EQ(f32_to_f16(-0x1p-30f), 0x8000);               // underflows to -0
  EXPECT_EQ(f16_to_f32(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

#if defined(__FLT16_MANT_DIG__)
// The compiler's own float -> _Float16 conversion is the reference here.
TEST(F16, MatchesCompilerConversion) {
  std::mt19937 rng(11);
  auto check = [](float f) {
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &h, 2);
    ASSERT_EQ(f32_to_f16(f), want) << std::hex << bits_of(f);
  };
  for (int i = 0; i < 200000; ++i) {
    const float f = float_of(uint32_t(rng()));
    if (!std::isnan(f)) check(f);
  }
  // Dense sweep over the half range, where rounding decisions happen.
  for (uint32_t u = 0x33000000u; u <= 0x47800000u; u += 0x101u) {
    check(float_of(u));
    check(float_of(u | 0x80000000u));
  }
}
#endif

TEST(Tensor, ConvertsThroughEveryDtype) {
  const Tensor x = Tensor::from_floats({1.0f, -2.5f, 0.15625f, 65504.0f, 1.0f + 0x1p-8f, -0.0f}, {2, 3});
  const Tensor b = x.to(DType::bf16);
  const Tensor h = x.to(DType::f16);
  const uint16_t want_b[] = {0x3f80, 0xc020, 0x3e20, 0x4780, 0x3f80, 0x8000};
  const uint16_t want_h[] = {0x3c00, 0xc100, 0x3100, 0x7bff, 0x3c04, 0x8000};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(b.data<uint16_t>()[i], want_b[i]) << i;
    EXPECT_EQ(h.data<uint16_t>()[i], want_h[i]) << i;
  }
  EXPECT_EQ(h.to(DType::f32).data<float>()[1], -2.5f);
  EXPECT_EQ(b.to(DType::f16).data<uint16_t>()[0], 0x3c00);
  EXPECT_EQ(x.to(DType::i32).data<int32_t>()[1], -2);  // lrint: ties to even
}

TEST(Tensor, ReshapeAndRowsShareStorage) {
  Tensor t = Tensor::from_floats({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {4, 3});
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.shape(), (Shape{2, 3}));
  EXPECT_EQ(r.numel(), 6);
  EXPECT_EQ(r.data<float>()[0], 3.0f);
  r.data<float>()[0] = 42.0f;
  EXPECT_EQ(t.data<float>()[3], 42.0f);

  Tensor flat = t.reshape({12});
  EXPECT_EQ(flat.raw(), t.raw());
  EXPECT_EQ(flat.dim(-1), 12);
  Tensor empty_rows = t.rows(4, 4);
  EXPECT_EQ(empty_rows.numel(), 0);
  EXPECT_WICK_ERROR(t.reshape({5, 2}), ErrorKind::internal, "[4, 3]", "[5, 2]");
  EXPECT_WICK_ERROR(t.rows(2, 5), ErrorKind::internal, "[2, 5)");
  EXPECT_WICK_ERROR(t.rows(3, 2), ErrorKind::internal, "[3, 2)");
}

TEST(Tensor, ViewsKeepStorageAlive) {
  Tensor view;
  {
    const Tensor t = Tensor::from_ints({1, 2, 3, 4, 5, 6}, {3, 2});
    view = t.rows(2, 3).reshape({2});
  }
  EXPECT_EQ(view.data<int32_t>()[0], 5);  // AddressSanitizer catches a use after free here
  EXPECT_EQ(view.data<int32_t>()[1], 6);
  Tensor copy = view.clone();
  copy.data<int32_t>()[0] = 0;
  EXPECT_EQ(view.data<int32_t>()[0], 5);
}

TEST(Tensor, RejectsBadShapesAndTypedAccess) {
  EXPECT_WICK_ERROR(Tensor::empty({2, -1}, DType::f32), ErrorKind::bad_input, "[2, -1]");
  EXPECT_WICK_ERROR(Tensor::empty({int64_t(1) << 62, 8}, DType::f32), ErrorKind::bad_input, "overflows");
  EXPECT_WICK_ERROR(Tensor::from_floats({1, 2, 3}, {2, 2}), ErrorKind::bad_input, "3 values");
  const Tensor t = Tensor::zeros({2}, DType::bf16);
  EXPECT_WICK_ERROR(t.data<float>(), ErrorKind::internal, "bf16");
  EXPECT_EQ(t.data<uint16_t>()[1], 0);
  EXPECT_EQ(t.nbytes(), 4u);
}

}  // namespace
}  // namespace wick

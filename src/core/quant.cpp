// q8_0 quantisation (wick/quant.h): symmetric per block of 32, the scale rounded up to an f16 so that no value is
// clamped, and every value q·s exact in f32.
#include "wick/quant.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "wick/dtype.h"
#include "wick/error.h"

namespace wick {

namespace {

constexpr float kMaxQ = 127.0f;

// The smallest f16 s (bits) with kMaxQ · s ≥ amax (amax finite, ≥ 0), for the block of elements [first, end).
uint16_t scale_for(float amax, int64_t first, int64_t end) {
  if (amax == 0.0f) return 0;
  uint16_t s = f32_to_f16(amax / kMaxQ);
  // Round-to-nearest may have gone down; one f16 step up is then enough (f16 bit patterns of positive values are in
  // the order of their values). The products are exact in double.
  if (double(f16_to_f32(s)) * kMaxQ < double(amax)) ++s;
  if (s >= 0x7c00u)  // infinity: no f16 scale reaches
    fail(ErrorKind::bad_input, "q8_0: the block of elements [" + std::to_string(first) + ", " + std::to_string(end) +
                                   ") of a row reaches " + std::to_string(amax) +
                                   ", beyond what an f16 scale covers (127 · 65504)");
  return s;
}

}  // namespace

void quantize_q8_0(const float* src, Q8Block* dst, int64_t n) {
  for (int64_t b = 0; b * kQ8Group < n; ++b) {
    const float* v = src + b * kQ8Group;
    const int64_t count = std::min(kQ8Group, n - b * kQ8Group);
    float amax = 0.0f;
    for (int64_t i = 0; i < count; ++i) {
      if (!std::isfinite(v[i]))
        fail(ErrorKind::bad_input, "q8_0: element " + std::to_string(b * kQ8Group + i) + " of a row is " +
                                       std::to_string(v[i]) + " (only finite values can be quantised)");
      amax = std::max(amax, std::fabs(v[i]));
    }
    Q8Block& out = dst[b];
    out.scale = scale_for(amax, b * kQ8Group, b * kQ8Group + count);
    const double s = f16_to_f32(out.scale);
    for (int64_t i = 0; i < kQ8Group; ++i)  // |v / s| ≤ 127 by the choice of s
      out.q[i] = i < count && s > 0 ? int8_t(std::nearbyint(double(v[i]) / s)) : int8_t(0);
  }
}

void dequantize_q8_0(const Q8Block* src, float* dst, int64_t n) {
  for (int64_t b = 0; b * kQ8Group < n; ++b) {
    const float s = f16_to_f32(src[b].scale);
    const int64_t count = std::min(kQ8Group, n - b * kQ8Group);
    for (int64_t i = 0; i < count; ++i) dst[b * kQ8Group + i] = float(src[b].q[i]) * s;
  }
}

}  // namespace wick

// 8-bit weights (DType::q8_0): the block format and its conversions. A q8_0 tensor is stored row by row along its
// last dimension, each row as ⌈n / 32⌉ blocks of 32 consecutive values: an f16 scale s and 32 int8 values q, each
// value q·s — llama.cpp's Q8_0 block (34 bytes, 8.5 bits a weight). The CPU kernels' per-ISA files include this header
// for Q8Block alone and call nothing declared here (cpu_kernels_impl.h says why).
#pragma once

#include <cstdint>

namespace wick {

/// Values per q8_0 block, along a row.
inline constexpr int64_t kQ8Group = 32;

/// One block: value i is q[i] · scale. The last block of a row of n values (n not a multiple of 32) holds
/// n % 32 values and zeros after them.
struct Q8Block {
  uint16_t scale;       // f16 bits; ≥ 0
  int8_t q[kQ8Group];   // in [−127, 127]
};
static_assert(sizeof(Q8Block) == 34, "Q8Block is llama.cpp's block_q8_0: 2 + 32 bytes, no padding");

/// Blocks of one row of n values.
constexpr int64_t q8_blocks(int64_t n) { return (n + kQ8Group - 1) / kQ8Group; }

/// Quantises one row of n f32 values into q8_blocks(n) blocks, symmetric per block: the scale s is the smallest f16
/// with 127 · s ≥ max |v| of the block (0 for a block of zeros), and q = round(v / s) to nearest, ties to even, so
/// |v − q·s| ≤ s / 2 (and s ≤ max|v| / 127 · (1 + 2⁻¹⁰), or max|v| / 127 + 2⁻²⁴ where s is an f16 subnormal: a block
/// whose largest |v| is below 7.8·10⁻³). Throws Error(bad_input) for a NaN or ±inf, or a block whose largest |v|
/// exceeds 127 · 65504 (the largest f16 scale).
void quantize_q8_0(const float* src, Q8Block* dst, int64_t n);

/// Writes the n values of one row (q8_blocks(n) blocks) as f32: q · s, exact in f32 (an int8 times an f16).
void dequantize_q8_0(const Q8Block* src, float* dst, int64_t n);

}  // namespace wick

// Element types wick stores and the conversions between them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace wick {

/// Element type of a Tensor. bf16 and f16 are stored as uint16_t bit patterns. q8_0 (8-bit weights) is stored in
/// blocks of 32 values along each row of the last dimension (wick/quant.h); a tensor's bytes: storage_bytes().
enum class DType : uint8_t { f32, bf16, f16, i32, q8_0 };

/// What the CPU backend multiplies by (the GPU holds every weight in bf16 whatever this says).
enum class CpuWeights : uint8_t {
  /// Weight matrices stay in the file's dtype where the CPU kernels take it — bf16 or f16, read in place from the
  /// file's mapping (copied where the file leaves a tensor unaligned), half the memory of f32 — with f32 sums. On a
  /// CPU with AVX512_BF16 the activations meeting bf16 weights are rounded to bf16 (vdpbf16ps; logits about 3·10⁻³
  /// relative off the f32 reference); elsewhere, with WICK_CPU_ISA=avx512 and with f16 weights, every product is that
  /// of the f32 reference (a bf16 or f16 value widens to f32 exactly; only the order of the sums differs, and f16's is
  /// f32's). Other dtypes are widened to f32.
  native,
  /// Every weight widened to f32 at load (the reference: `--compute f32`).
  f32,
  /// Weight matrices (the projections, the embedding and the head) quantised to q8_0 at load (`--weights int8`):
  /// 8.5 bits a weight, each block of 32 along a row with its own f16 scale (wick/quant.h); the products take the
  /// dequantised weight, exact in f32, times f32 activations. Norms and biases stay f32.
  int8,
};

/// Bytes per element of an element type; 0 for q8_0, which has no whole bytes per element (see storage_bytes).
constexpr size_t dtype_size(DType t) {
  return t == DType::f32 || t == DType::i32 ? 4 : t == DType::q8_0 ? 0 : 2;
}

/// "f32", "bf16", "f16", "i32", "q8_0".
std::string_view to_string(DType t);

/// Parses "f32" / "bf16" / "f16" / "i32" (the element types a file holds; not q8_0); throws Error(bad_input) naming
/// `what` otherwise.
DType parse_dtype(std::string_view name, std::string_view what);

inline float bf16_to_f32(uint16_t bits) {
  uint32_t u = uint32_t(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float f);

/// Converts n elements of type `from` at src into f32 at dst (i32 converts by value; q8_0: src is one row of n values,
/// dequantize_q8_0).
void convert_to_f32(const void* src, DType from, float* dst, size_t n);
/// Converts n f32 values into type `to` at dst (rounding to nearest even; q8_0: dst is one row of n values,
/// quantize_q8_0).
void convert_from_f32(const float* src, DType to, void* dst, size_t n);

}  // namespace wick

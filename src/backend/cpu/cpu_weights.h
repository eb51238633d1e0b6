// The CPU's weight matrices in the forms it keeps them besides f32 — bf16 or f16 read in place (CpuWeights::native),
// q8_0 quantised at load (CpuWeights::int8) — for what its kernels (cpu_kernels.h, which take x·Wᵀ) do not do:
// quantising a matrix, and d_out·W of a backward pass, each weight widened to f32 exactly where it is used. Private to
// src/backend/cpu/.
#pragma once

#include "backend/backend.h"

namespace wick::cpu {

/// A q8_0 copy of a matrix [rows, cols] of any dtype (wick/quant.h), quantised row by row over the thread pool with no
/// f32 copy of the whole. Throws Error(bad_input) naming the row and element of a value that cannot be quantised.
Tensor quantize_weight(const Tensor& w);

/// out = alpha · op(a)·b + beta · out for b in bf16, f16 or q8_0 (a weight, in a backward pass: d_out·W) and a f32,
/// not transposed b. Shapes as Backend::matmul.
void matmul_narrow_b(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p);

/// Whether t is held in a type narrower than f32 that the kernels widen (a native or int8 weight).
inline bool is_narrow(const Tensor& t) {
  return t.dtype() == DType::bf16 || t.dtype() == DType::f16 || t.dtype() == DType::q8_0;
}

}  // namespace wick::cpu

// The products with a weight matrix the CPU keeps in bf16 (CpuWeights::native) that its kernels (cpu_kernels.h, which
// take x·Wᵀ) do not: d_out·W of a backward pass, each weight widened to f32 exactly where it is used. Private to
// src/backend/cpu/.
#pragma once

#include "backend/backend.h"

namespace wick::cpu {

/// out = alpha · op(a)·b + beta · out for b in bf16 or f16 (a weight, in a backward pass: d_out·W) and a f32, not
/// transposed b. Shapes as Backend::matmul.
void matmul_half_b(const Tensor& a, const Tensor& b, Tensor& out, const MatmulParams& p);

/// Whether t is held in a 16-bit float type (a native weight).
inline bool is_half(const Tensor& t) { return t.dtype() == DType::bf16 || t.dtype() == DType::f16; }

}  // namespace wick::cpu

// Elementwise kernels (elementwise.cu): bf16 in memory, f32 arithmetic, grid-stride loops.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace wick::cuda {

/// out = silu(gate) ⊙ up, n elements bf16.
void swiglu(const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream);
/// out = gelu(x), exact (erf) or, with `tanh`, its tanh approximation; n elements bf16 (out may alias x).
void gelu(const void* x, bool tanh, void* out, int64_t n, cudaStream_t stream);
/// out = a + b, n elements bf16 (out may alias a or b).
void add(const void* a, const void* b, void* out, int64_t n, cudaStream_t stream);
/// out[r, :] += bias, rows x n; out bf16 or f32 (out_f32), bias bf16.
void add_bias(void* out, bool out_f32, const void* bias, int64_t rows, int64_t n, cudaStream_t stream);

}  // namespace wick::cuda

// Flash attention on tensor cores (attention_prefill.cu): cuda::attention for many queries.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/attention.h"

namespace wick::cuda {

/// The largest head_dim attention_prefill takes: its D/8 + D/16 + 8 fragments per thread fit in registers up to it.
constexpr int64_t kPrefillMaxHeadDim = 128;

/// cuda::attention (attention.h) by tiled flash attention on tensor cores, 64 queries a block. False (nothing
/// launched) when head_dim is above kPrefillMaxHeadDim or not one the kernels are built for.
bool attention_prefill(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                       const AttentionShape& s, cudaStream_t stream);

}  // namespace wick::cuda

// Split-K flash decoding (attention_decode.cu): cuda::attention for a few queries.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/attention.h"

namespace wick::cuda {

/// cuda::attention (attention.h) by split-K flash decoding, launched chained (chain.cuh); any number of queries,
/// made for a few. Uses s.workspace for the partials when it holds them, else runs one split. False when head_dim is
/// not one it is built for.
bool attention_decode(const void* q, const void* k, const void* v, const int32_t* positions, void* out,
                      const AttentionShape& s, cudaStream_t stream);

}  // namespace wick::cuda

// An encoder's sentence embeddings from its token rows (encoder_pool.cu): Backend::encoder_pool.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/backend.h"

namespace wick::cuda {

struct EncoderPoolParams {
  const void* x = nullptr;         // [rows, n] bf16
  const int32_t* spans = nullptr;  // [sequences, 2] on the device: sequence s pools rows [spans[2s], spans[2s + 1])
  float* out = nullptr;            // [sequences, n] f32
  int64_t rows = 0, sequences = 0, n = 0;
  PoolMode mode = PoolMode::mean;
  bool normalize = false;  // divide each output row by max(‖row‖₂, 1e-12)
};

/// Queues the pooling: a block per sequence and 64 columns, then the normalisation. Spans are clamped to [0, rows]
/// (an end before its start is empty).
void encoder_pool(const EncoderPoolParams& p, cudaStream_t stream);

}  // namespace wick::cuda

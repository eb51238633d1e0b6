// backend.h's FusedRows on CUDA (fused_rows_ops.cpp): validates shapes and dtypes and launches the few-row kernels.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "backend/backend.h"

namespace wick {

/// The fused few-row ops on `stream`.
std::unique_ptr<FusedRows> make_cuda_fused_rows(cudaStream_t stream);

}  // namespace wick

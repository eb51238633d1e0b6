// backend.h's FusedDecode on CUDA (fused_decode.cpp): validates shapes and dtypes and launches the fused GEMVs.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "backend/backend.h"
#include "backend/cuda/device_allocator.h"

namespace wick {

/// The fused decode ops on `stream`; lora_scratch() allocates from `allocator`.
std::unique_ptr<FusedDecode> make_cuda_fused_decode(cudaStream_t stream,
                                                     std::shared_ptr<cuda::DeviceAllocator> allocator);

}  // namespace wick

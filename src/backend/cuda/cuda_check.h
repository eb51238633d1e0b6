// Error checks for CUDA runtime and cuBLAS calls: failures become wick::Error naming the call.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "wick/error.h"

namespace wick::cuda {

inline void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  const ErrorKind kind = err == cudaErrorMemoryAllocation ? ErrorKind::out_of_memory : ErrorKind::internal;
  fail(kind, std::string("CUDA: ") + what + ": " + cudaGetErrorString(err));
}

inline void check(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail(ErrorKind::internal, std::string("cuBLAS: ") + what + ": status " + std::to_string(int(status)));
}

/// After a kernel launch: reports a bad launch configuration at once (execution errors surface at the next sync).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

/// Makes `device` the calling thread's current device for the guard's life (memory freed or allocated, handles
/// destroyed, from a thread that works on another GPU), then puts the previous one back. Never throws (destructors
/// use it): where the device cannot be made current, the call it guards reports the error.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) noexcept {
    if (cudaGetDevice(&previous_) != cudaSuccess || previous_ == device || cudaSetDevice(device) != cudaSuccess) {
      cudaGetLastError();
      previous_ = -1;
    }
  }
  ~DeviceGuard() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

/// Streaming multiprocessors of the current device (how many blocks fill it).
inline int sm_count() {
  int device = 0, sms = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "multiprocessor count");
  return sms;
}

}  // namespace wick::cuda

#include "backend/cuda/device_allocator.h"

#include <algorithm>

#include "backend/cuda/cuda_check.h"

namespace wick::cuda {

namespace {
// Size classes: kSmallStep-byte steps up to kSmallClasses, then kStepsPerOctave steps per power of two, so reuse
// wastes at most 1 / kStepsPerOctave.
constexpr size_t kSmallStep = 512;
constexpr size_t kSmallClasses = size_t(1) << 20;
constexpr size_t kStepsPerOctave = 8;

size_t size_class(size_t bytes) {
  if (bytes <= kSmallClasses) return (bytes + kSmallStep - 1) / kSmallStep * kSmallStep;
  size_t top = size_t(1) << (63 - __builtin_clzll(bytes));
  const size_t step = top / kStepsPerOctave;
  return (bytes + step - 1) / step * step;
}
}  // namespace

DeviceAllocator::~DeviceAllocator() {
  const DeviceGuard guard(device_);
  for (auto& [size, blocks] : free_)
    for (void* p : blocks) cudaFree(p);
}

Tensor DeviceAllocator::allocate(const Shape& shape, DType dtype) {
  const size_t bytes = size_class(std::max<size_t>(size_t(shape_numel(shape)) * dtype_size(dtype), 1));
  void* p = nullptr;
  {
    std::lock_guard lock(mu_);
    auto it = free_.find(bytes);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
    }
    in_use_ += bytes;
    peak_in_use_ = std::max(peak_in_use_, in_use_);
  }
  if (!p) {
    const DeviceGuard guard(device_);
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaErrorMemoryAllocation) {  // retry once after returning cached blocks
      cudaGetLastError();
      release_cached();
      err = cudaMalloc(&p, bytes);
    }
    if (err != cudaSuccess) {
      std::lock_guard lock(mu_);
      in_use_ -= bytes;
    }
    check(err, ("cudaMalloc of " + std::to_string(bytes) + " bytes for tensor " + to_string(shape)).c_str());
    std::lock_guard lock(mu_);
    reserved_ += bytes;
  }
  auto self = shared_from_this();
  std::shared_ptr<const void> owner(p, [self, bytes](const void* q) { self->give_back(const_cast<void*>(q), bytes); });
  return Tensor::borrow(p, shape, dtype, std::move(owner), Device::cuda);
}

void DeviceAllocator::give_back(void* p, size_t bytes) {
  std::lock_guard lock(mu_);
  free_[bytes].push_back(p);
  in_use_ -= bytes;
}

size_t DeviceAllocator::reserved_bytes() const {
  std::lock_guard lock(mu_);
  return reserved_;
}

size_t DeviceAllocator::peak_in_use_bytes() const {
  std::lock_guard lock(mu_);
  return peak_in_use_;
}

size_t DeviceAllocator::in_use_bytes() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

void DeviceAllocator::release_cached() {
  const DeviceGuard guard(device_);
  std::lock_guard lock(mu_);
  for (auto& [size, blocks] : free_) {
    for (void* p : blocks) cudaFree(p);
    reserved_ -= size * blocks.size();
    blocks.clear();
  }
}

}  // namespace wick::cuda

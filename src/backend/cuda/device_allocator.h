// A caching allocator for device memory: freed blocks go to per-size free lists and are reused, so
// steady-state decoding allocates nothing from the driver. Everything returns to the driver when
// the allocator dies, which happens once the backend and every tensor it made are gone.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "wick/tensor.h"

namespace wick::cuda {

class DeviceAllocator : public std::enable_shared_from_this<DeviceAllocator> {
 public:
  /// Memory of GPU `device`.
  explicit DeviceAllocator(int device = 0) : device_(device) {}
  ~DeviceAllocator();
  /// Device memory for `shape` x `dtype`, owned by the returned tensor (and its views).
  Tensor allocate(const Shape& shape, DType dtype);
  /// Bytes held from the driver (in use + cached).
  size_t reserved_bytes() const;
  /// Bytes handed out and not yet freed.
  size_t in_use_bytes() const;
  /// The most bytes handed out at once (torch's max_memory_allocated).
  size_t peak_in_use_bytes() const;
  /// Returns every cached (free) block to the driver.
  void release_cached();

 private:
  void give_back(void* p, size_t bytes);

  int device_ = 0;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // size class -> free blocks
  size_t reserved_ = 0, in_use_ = 0, peak_in_use_ = 0;
};

}  // namespace wick::cuda

// Tensor: a shape, an element type, a device, and shared storage (owned or borrowed).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "wick/dtype.h"

namespace wick {

enum class Device : uint8_t { cpu, cuda };

using Shape = std::vector<int64_t>;

/// "[2, 3, 4]".
std::string to_string(const Shape& shape);
/// Product of the dimensions; throws Error(bad_input) on a negative dimension or overflow.
int64_t shape_numel(const Shape& shape);
/// Bytes a dense tensor of this shape and dtype occupies: numel · dtype_size, or for q8_0 ⌈last dimension / 32⌉
/// blocks of 34 bytes per row (wick/quant.h; a rank-0 q8_0 tensor is one row of one value).
size_t storage_bytes(DType dtype, const Shape& shape);

/// A dense, row-major tensor. Copying a Tensor shares its storage (cheap); clone() copies data.
/// Views (reshape, rows) share storage with their source and keep it alive.
class Tensor {
 public:
  Tensor() = default;

  /// Uninitialised storage on the CPU, 64-byte aligned.
  static Tensor empty(const Shape& shape, DType dtype);
  /// Zero-filled storage on the CPU.
  static Tensor zeros(const Shape& shape, DType dtype);
  /// Wraps memory owned elsewhere; `owner` is kept alive as long as any view of it is.
  static Tensor borrow(void* data, const Shape& shape, DType dtype, std::shared_ptr<const void> owner,
                       Device device = Device::cpu);
  /// A CPU f32 / i32 tensor holding a copy of `values`; numel(shape) must equal values.size().
  static Tensor from_floats(const std::vector<float>& values, const Shape& shape);
  static Tensor from_ints(const std::vector<int32_t>& values, const Shape& shape);

  bool defined() const { return defined_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return int(shape_.size()); }
  /// Size of dimension i; negative i counts from the end.
  int64_t dim(int i) const;
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return storage_bytes(dtype_, shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  /// Typed access; T must match the dtype (float: f32, int32_t: i32, uint16_t: bf16 or f16, Q8Block: q8_0).
  template <class T> T* data() {
    check_type(sizeof(T), std::is_floating_point_v<T>, std::is_signed_v<T>);
    return static_cast<T*>(data_);
  }
  template <class T> const T* data() const {
    check_type(sizeof(T), std::is_floating_point_v<T>, std::is_signed_v<T>);
    return static_cast<const T*>(data_);
  }

  /// Same storage, new shape with the same element count (q8_0: and the same last dimension, its rows' length).
  Tensor reshape(const Shape& shape) const;
  /// Rows [begin, end) along dimension 0, sharing storage (q8_0: of a tensor of rank ≥ 2).
  Tensor rows(int64_t begin, int64_t end) const;
  /// A CPU copy converted to `dtype` (a plain copy when the dtype is unchanged; to or from q8_0 row by row, without a
  /// whole f32 copy).
  Tensor to(DType dtype) const;
  /// A CPU copy with its own storage.
  Tensor clone() const;

 private:
  void check_type(size_t size, bool is_float, bool is_signed) const;

  Shape shape_;
  int64_t numel_ = 0;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  bool defined_ = false;
  void* data_ = nullptr;
  std::shared_ptr<const void> owner_;  // keeps the storage alive
};

}  // namespace wick

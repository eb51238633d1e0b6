#include "wick/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "wick/error.h"
#include "wick/quant.h"

namespace wick {

std::string to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(ErrorKind::bad_input, "shape " + to_string(shape) + " has a negative dimension");
    if (d != 0 && n > INT64_MAX / d) fail(ErrorKind::bad_input, "shape " + to_string(shape) + " overflows");
    n *= d;
  }
  return n;
}

size_t storage_bytes(DType dtype, const Shape& shape) {
  const int64_t n = shape_numel(shape);
  if (dtype != DType::q8_0) return size_t(n) * dtype_size(dtype);
  const int64_t row = shape.empty() ? 1 : shape.back();
  return row == 0 ? 0 : size_t(n / row) * size_t(q8_blocks(row)) * sizeof(Q8Block);
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.defined_ = true;
  const size_t bytes = (t.nbytes() + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes ? bytes : 64);
  if (!p) fail(ErrorKind::out_of_memory, "cannot allocate " + std::to_string(bytes) + " bytes for tensor " + to_string(shape));
  t.data_ = p;
  t.owner_ = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::borrow(void* data, const Shape& shape, DType dtype, std::shared_ptr<const void> owner, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.numel_ = shape_numel(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.defined_ = true;
  t.data_ = data;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::from_floats(const std::vector<float>& values, const Shape& shape) {
  Tensor t = empty(shape, DType::f32);
  if (size_t(t.numel()) != values.size())
    fail(ErrorKind::bad_input, std::to_string(values.size()) + " values do not fill shape " + to_string(shape));
  std::memcpy(t.data_, values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_ints(const std::vector<int32_t>& values, const Shape& shape) {
  Tensor t = empty(shape, DType::i32);
  if (size_t(t.numel()) != values.size())
    fail(ErrorKind::bad_input, std::to_string(values.size()) + " values do not fill shape " + to_string(shape));
  std::memcpy(t.data_, values.data(), t.nbytes());
  return t;
}

int64_t Tensor::dim(int i) const {
  const int r = rank();
  const int k = i < 0 ? i + r : i;
  if (k < 0 || k >= r)
    fail(ErrorKind::internal, "dimension " + std::to_string(i) + " out of range for shape " + to_string(shape_));
  return shape_[size_t(k)];
}

void Tensor::check_type(size_t size, bool is_float, bool is_signed) const {
  bool ok = false;
  switch (dtype_) {
    case DType::f32: ok = is_float && size == 4; break;
    case DType::i32: ok = !is_float && is_signed && size == 4; break;
    case DType::bf16:
    case DType::f16: ok = !is_float && !is_signed && size == 2; break;
    case DType::q8_0: ok = !is_float && !is_signed && size == sizeof(Q8Block); break;
  }
  if (!ok) fail(ErrorKind::internal, "typed access does not match tensor dtype " + std::string(to_string(dtype_)));
}

Tensor Tensor::reshape(const Shape& shape) const {
  const auto last = [](const Shape& s) { return s.empty() ? int64_t(1) : s.back(); };
  if (shape_numel(shape) != numel_ || (dtype_ == DType::q8_0 && last(shape) != last(shape_)))
    fail(ErrorKind::internal, "cannot reshape " + to_string(shape_) + " to " + to_string(shape) +
                                  (dtype_ == DType::q8_0 ? " (q8_0 keeps its rows' length)" : ""));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  if (rank() < (dtype_ == DType::q8_0 ? 2 : 1) || begin < 0 || end < begin || end > shape_[0])
    fail(ErrorKind::internal, "rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") out of range for " +
                                  to_string(shape_) + " " + std::string(wick::to_string(dtype_)));
  Tensor t = *this;
  const int64_t row = shape_[0] ? numel_ / shape_[0] : 0;
  const size_t row_bytes = shape_[0] ? nbytes() / size_t(shape_[0]) : 0;
  t.shape_[0] = end - begin;
  t.numel_ = row * (end - begin);
  t.data_ = static_cast<std::byte*>(data_) + size_t(begin) * row_bytes;
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (device_ != Device::cpu) fail(ErrorKind::internal, "Tensor::to needs a CPU tensor");
  if (dtype == dtype_) return clone();
  Tensor out = empty(shape_, dtype);
  const size_t n = size_t(numel_);
  if (dtype == DType::q8_0 || dtype_ == DType::q8_0) {  // row by row through one f32 row
    const int64_t row = shape_.empty() ? 1 : shape_.back(), rows = row ? numel_ / row : 0;
    const size_t in_bytes = rows ? nbytes() / size_t(rows) : 0, out_bytes = rows ? out.nbytes() / size_t(rows) : 0;
    std::vector<float> buf(static_cast<size_t>(row));
    for (int64_t r = 0; r < rows; ++r) {
      convert_to_f32(static_cast<const std::byte*>(data_) + size_t(r) * in_bytes, dtype_, buf.data(), size_t(row));
      convert_from_f32(buf.data(), dtype, static_cast<std::byte*>(out.data_) + size_t(r) * out_bytes, size_t(row));
    }
    return out;
  }
  if (dtype == DType::f32) {
    convert_to_f32(data_, dtype_, out.data<float>(), n);
  } else if (dtype_ == DType::f32) {
    convert_from_f32(static_cast<const float*>(data_), dtype, out.data_, n);
  } else {
    Tensor tmp = to(DType::f32);
    convert_from_f32(tmp.data<float>(), dtype, out.data_, n);
  }
  return out;
}

Tensor Tensor::clone() const {
  if (device_ != Device::cpu) fail(ErrorKind::internal, "Tensor::clone needs a CPU tensor");
  Tensor out = empty(shape_, dtype_);
  if (numel_) std::memcpy(out.data_, data_, nbytes());
  return out;
}

}  // namespace wick

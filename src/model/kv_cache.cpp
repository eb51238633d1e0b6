#include "wick/kv_cache.h"

#include "wick/error.h"

namespace wick {

namespace {
Tensor layer_view(const Tensor& t, int64_t layer) {
  const int64_t layers = t.dim(0);
  if (layer < 0 || layer >= layers) fail(ErrorKind::internal, "KV cache layer " + std::to_string(layer) + " out of range");
  return t.reshape({layers, t.numel() / layers}).rows(layer, layer + 1).reshape({t.dim(1), t.dim(2), t.dim(3)});
}
}  // namespace

KVCache::KVCache(Tensor keys, Tensor values) : keys_(std::move(keys)), values_(std::move(values)) {
  if (keys_.rank() != 4 || keys_.shape() != values_.shape())
    fail(ErrorKind::internal, "KV cache tensors must be [layers, capacity, kv_heads, head_dim] and alike");
}

void KVCache::truncate(int64_t n) {
  if (n < 0 || n > length_)
    fail(ErrorKind::bad_input, "KV cache: cannot truncate to " + std::to_string(n) + " positions (holds " +
                                   std::to_string(length_) + ")");
  length_ = n;
}

KVCache KVCache::copy() const {
  KVCache c(keys_.clone(), values_.clone());
  c.length_ = length_;
  return c;
}

Tensor KVCache::keys(int64_t layer) const { return layer_view(keys_, layer); }
Tensor KVCache::values(int64_t layer) const { return layer_view(values_, layer); }

KVBlockPool::KVBlockPool(Tensor keys, Tensor values, int64_t block_size)
    : keys_(std::move(keys)), values_(std::move(values)), block_size_(block_size) {
  if (keys_.rank() != 4 || keys_.shape() != values_.shape() || block_size_ < 1 || keys_.dim(1) % block_size_ != 0)
    fail(ErrorKind::internal, "KV block pool tensors must be [layers, blocks · block_size, kv_heads, head_dim] and alike");
}

Tensor KVBlockPool::keys(int64_t layer) const { return layer_view(keys_, layer); }
Tensor KVBlockPool::values(int64_t layer) const { return layer_view(values_, layer); }

void KVCache::advance(int64_t n) {
  if (n < 0 || length_ + n > capacity())
    fail(ErrorKind::internal, "KV cache advanced past its capacity");
  length_ += n;
}

}  // namespace wick

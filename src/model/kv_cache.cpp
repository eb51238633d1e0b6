#include "wick/kv_cache.h"

#include "wick/error.h"

namespace wick {

namespace {

Tensor layer_view(const std::vector<Tensor>& shards, int64_t layer, int shard) {
  if (shard < 0 || size_t(shard) >= shards.size())
    fail(ErrorKind::internal, "KV cache shard " + std::to_string(shard) + " out of range");
  const Tensor& t = shards[size_t(shard)];
  const int64_t layers = t.dim(0);
  if (layer < 0 || layer >= layers) fail(ErrorKind::internal, "KV cache layer " + std::to_string(layer) + " out of range");
  return t.reshape({layers, t.numel() / layers}).rows(layer, layer + 1).reshape({t.dim(1), t.dim(2), t.dim(3)});
}

// Every shard [layers, rows, kv_heads, head_dim], keys and values alike, the shards alike but for their device.
bool alike(const std::vector<Tensor>& keys, const std::vector<Tensor>& values) {
  if (keys.empty() || keys.size() != values.size()) return false;
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i].rank() != 4 || keys[i].shape() != values[i].shape() || keys[i].shape() != keys[0].shape() ||
        keys[i].dtype() != keys[0].dtype())
      return false;
  return true;
}

std::vector<Tensor> one(Tensor t) {
  std::vector<Tensor> v;
  v.push_back(std::move(t));
  return v;
}

}  // namespace

KVCache::KVCache(Tensor keys, Tensor values) : KVCache(one(std::move(keys)), one(std::move(values))) {}

KVCache::KVCache(std::vector<Tensor> keys, std::vector<Tensor> values)
    : keys_(std::move(keys)), values_(std::move(values)) {
  if (!alike(keys_, values_))
    fail(ErrorKind::internal, "KV cache tensors must be [layers, capacity, kv_heads, head_dim] and alike");
}

void KVCache::truncate(int64_t n) {
  if (n < 0 || n > length_)
    fail(ErrorKind::bad_input, "KV cache: cannot truncate to " + std::to_string(n) + " positions (holds " +
                                   std::to_string(length_) + ")");
  length_ = n;
}

KVCache KVCache::copy() const {
  std::vector<Tensor> k, v;
  for (size_t i = 0; i < keys_.size(); ++i) {
    k.push_back(keys_[i].clone());
    v.push_back(values_[i].clone());
  }
  KVCache c(std::move(k), std::move(v));
  c.length_ = length_;
  return c;
}

Tensor KVCache::keys(int64_t layer, int shard) const { return layer_view(keys_, layer, shard); }
Tensor KVCache::values(int64_t layer, int shard) const { return layer_view(values_, layer, shard); }

void KVCache::advance(int64_t n) {
  if (n < 0 || length_ + n > capacity())
    fail(ErrorKind::internal, "KV cache advanced past its capacity");
  length_ += n;
}

KVBlockPool::KVBlockPool(Tensor keys, Tensor values, int64_t block_size)
    : KVBlockPool(one(std::move(keys)), one(std::move(values)), block_size) {}

KVBlockPool::KVBlockPool(std::vector<Tensor> keys, std::vector<Tensor> values, int64_t block_size)
    : keys_(std::move(keys)), values_(std::move(values)), block_size_(block_size) {
  if (!alike(keys_, values_) || block_size_ < 1 || keys_[0].dim(1) % block_size_ != 0)
    fail(ErrorKind::internal, "KV block pool tensors must be [layers, blocks · block_size, kv_heads, head_dim] and alike");
}

Tensor KVBlockPool::keys(int64_t layer, int shard) const { return layer_view(keys_, layer, shard); }
Tensor KVBlockPool::values(int64_t layer, int shard) const { return layer_view(values_, layer, shard); }

int64_t KVBlockPool::bytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < keys_.size(); ++i) n += int64_t(keys_[i].nbytes() + values_[i].nbytes());
  return n;
}

}  // namespace wick

// Key/value caches: one sequence's contiguous cache (KVCache), or fixed-size blocks of many sequences (KVBlockPool)
// that each sequence addresses through its block table.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "wick/tensor.h"

namespace wick {

/// Keys and values of one sequence for every layer, on the model's device. Move-only: the
/// storage can be large; copy() is the explicit, expensive duplicate. A model split over several devices (tensor
/// parallelism) keeps one shard per device: that device's KV heads.
class KVCache {
 public:
  KVCache() = default;
  KVCache(Tensor keys, Tensor values);
  /// One [layers, capacity, kv_heads / shards, head_dim] pair per shard, alike.
  KVCache(std::vector<Tensor> keys, std::vector<Tensor> values);
  KVCache(KVCache&&) noexcept = default;
  KVCache& operator=(KVCache&&) noexcept = default;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  /// Positions filled so far.
  int64_t length() const { return length_; }
  /// Positions the cache can hold.
  int64_t capacity() const { return keys_.empty() ? 0 : keys_[0].dim(1); }
  /// Shards (1 unless the model is split over several devices).
  int shards() const { return int(keys_.size()); }
  /// Forgets positions [n, length); cached data before n stays valid (n ≤ length).
  void truncate(int64_t n);
  void clear() { length_ = 0; }
  /// A deep copy (CPU caches only for now).
  KVCache copy() const;

  /// Layer views [capacity, kv_heads, head_dim] of a shard (for the model's forward pass).
  Tensor keys(int64_t layer, int shard = 0) const;
  Tensor values(int64_t layer, int shard = 0) const;
  /// Marks n more positions as filled.
  void advance(int64_t n);

 private:
  std::vector<Tensor> keys_;    // per shard [layers, capacity, kv_heads, head_dim]
  std::vector<Tensor> values_;  // per shard [layers, capacity, kv_heads, head_dim]
  int64_t length_ = 0;
};

/// Keys and values of many sequences in fixed-size blocks, on the model's device: position p of a sequence whose
/// block table is `blocks` lives in block blocks[p / block_size()], row p % block_size(). Which sequence owns which
/// block is the caller's (engine/ keeps the reference counts and the free list); the model only reads and writes
/// rows through block tables (Model::forward_paged). Move-only. A model split over several devices keeps one shard
/// per device (its KV heads), addressed by the same block tables.
class KVBlockPool {
 public:
  KVBlockPool() = default;
  KVBlockPool(Tensor keys, Tensor values, int64_t block_size);
  /// One [layers, blocks · block_size, kv_heads / shards, head_dim] pair per shard, alike.
  KVBlockPool(std::vector<Tensor> keys, std::vector<Tensor> values, int64_t block_size);
  KVBlockPool(KVBlockPool&&) noexcept = default;
  KVBlockPool& operator=(KVBlockPool&&) noexcept = default;
  KVBlockPool(const KVBlockPool&) = delete;
  KVBlockPool& operator=(const KVBlockPool&) = delete;

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return block_size_ > 0 && !keys_.empty() ? keys_[0].dim(1) / block_size_ : 0; }
  int64_t layers() const { return keys_.empty() ? 0 : keys_[0].dim(0); }
  /// Shards (1 unless the model is split over several devices).
  int shards() const { return int(keys_.size()); }
  /// Layer views [num_blocks · block_size, kv_heads, head_dim] of a shard: row b · block_size + i is row i of block b.
  Tensor keys(int64_t layer, int shard = 0) const;
  Tensor values(int64_t layer, int shard = 0) const;
  /// Bytes of keys and values together, every shard's.
  int64_t bytes() const;

 private:
  std::vector<Tensor> keys_;    // per shard [layers, num_blocks · block_size, kv_heads, head_dim]
  std::vector<Tensor> values_;  // per shard, alike
  int64_t block_size_ = 0;
};

}  // namespace wick

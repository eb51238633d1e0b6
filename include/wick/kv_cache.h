// Key/value caches: one sequence's contiguous cache (KVCache), or fixed-size blocks of many sequences (KVBlockPool)
// that each sequence addresses through its block table.
#pragma once

#include <cstdint>
#include <span>

#include "wick/tensor.h"

namespace wick {

/// Keys and values of one sequence for every layer, on the model's device. Move-only: the
/// storage can be large; copy() is the explicit, expensive duplicate.
class KVCache {
 public:
  KVCache() = default;
  KVCache(Tensor keys, Tensor values);
  KVCache(KVCache&&) noexcept = default;
  KVCache& operator=(KVCache&&) noexcept = default;
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  /// Positions filled so far.
  int64_t length() const { return length_; }
  /// Positions the cache can hold.
  int64_t capacity() const { return keys_.defined() ? keys_.dim(1) : 0; }
  /// Forgets positions [n, length); cached data before n stays valid (n ≤ length).
  void truncate(int64_t n);
  void clear() { length_ = 0; }
  /// A deep copy (CPU caches only for now).
  KVCache copy() const;

  /// Layer views [capacity, kv_heads, head_dim] (for the model's forward pass).
  Tensor keys(int64_t layer) const;
  Tensor values(int64_t layer) const;
  /// Marks n more positions as filled.
  void advance(int64_t n);

 private:
  Tensor keys_;    // [layers, capacity, kv_heads, head_dim]
  Tensor values_;  // [layers, capacity, kv_heads, head_dim]
  int64_t length_ = 0;
};

/// Keys and values of many sequences in fixed-size blocks, on the model's device: position p of a sequence whose
/// block table is `blocks` lives in block blocks[p / block_size()], row p % block_size(). Which sequence owns which
/// block is the caller's (engine/ keeps the reference counts and the free list); the model only reads and writes
/// rows through block tables (Model::forward_paged). Move-only.
class KVBlockPool {
 public:
  KVBlockPool() = default;
  KVBlockPool(Tensor keys, Tensor values, int64_t block_size);
  KVBlockPool(KVBlockPool&&) noexcept = default;
  KVBlockPool& operator=(KVBlockPool&&) noexcept = default;
  KVBlockPool(const KVBlockPool&) = delete;
  KVBlockPool& operator=(const KVBlockPool&) = delete;

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return block_size_ > 0 ? keys_.dim(1) / block_size_ : 0; }
  int64_t layers() const { return keys_.defined() ? keys_.dim(0) : 0; }
  /// Layer views [num_blocks · block_size, kv_heads, head_dim]: row b · block_size + i is row i of block b.
  Tensor keys(int64_t layer) const;
  Tensor values(int64_t layer) const;
  /// Bytes of keys and values together.
  int64_t bytes() const { return keys_.nbytes() + values_.nbytes(); }

 private:
  Tensor keys_;    // [layers, num_blocks · block_size, kv_heads, head_dim]
  Tensor values_;  // [layers, num_blocks · block_size, kv_heads, head_dim]
  int64_t block_size_ = 0;
};

}  // namespace wick

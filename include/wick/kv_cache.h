// Per-sequence key/value cache.
#pragma once

#include <cstdint>

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

}  // namespace wick

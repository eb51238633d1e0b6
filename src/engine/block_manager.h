// Who holds which KV block: reference counts, the free list, and the prefix table that lets sequences with a common
// prompt prefix under the same adapter version share the blocks that hold it.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace wick {

class LoraSource;

/// The bookkeeping of a KVBlockPool's blocks (the pool's tensors are the model's). A block is free, held (reference
/// count > 0), or cached: full, registered in the prefix table and held by nobody, kept until its space is needed
/// (least recently released first). Only full blocks are shared, and a full block is never written again, so
/// sharing needs no copy on write. Not thread-safe: the engine's step owns it.
class BlockManager {
 public:
  BlockManager(int64_t num_blocks, int64_t block_size);

  int64_t num_blocks() const { return int64_t(refs_.size()); }
  int64_t block_size() const { return block_size_; }
  /// Blocks a sequence may take now: free ones plus cached ones nobody holds (evicted on demand).
  int64_t available() const { return int64_t(free_.size() + evictable_.size()); }
  /// Blocks some sequence holds.
  int64_t held() const { return held_; }
  /// Blocks in the prefix table (held or not).
  int64_t cached() const { return int64_t(entries_.size()); }

  /// A block with reference count 1: a free one, else the least recently released cached one (dropped from the
  /// prefix table). nullopt when every block is held.
  std::optional<int32_t> allocate();
  /// One more holder of `block` (a sequence sharing a cached block).
  void retain(int32_t block);
  /// One holder less; at zero the block becomes cached (if registered) or free.
  void release(int32_t block);

  /// The identity of a registered full block: what its positions hold depends on it alone.
  using ChainId = uint64_t;
  static constexpr ChainId kRoot = 0;  // the "parent" of a sequence's first block

  /// The cached blocks that continue `parent` with `tokens` (whole blocks of them, in order) under `lora`, as far as
  /// they match: each is retained for the caller. Their chain ids go to `chain` (one per block returned).
  std::vector<int32_t> match(const LoraSource* lora, std::span<const int32_t> tokens, std::vector<ChainId>& chain);
  /// Registers `block`, which now holds `tokens` (one whole block) after the chain `parent` under `lora` (kept
  /// alive while the entry exists, so that its address names this adapter version only). When an equal entry
  /// exists (another sequence computed the same prefix), that one stays and `block` remains unregistered. Returns
  /// the chain id of the entry.
  ChainId register_full(int32_t block, ChainId parent, const std::shared_ptr<const LoraSource>& lora,
                        std::span<const int32_t> tokens);

 private:
  struct Key {
    ChainId parent;
    const LoraSource* lora;
    std::vector<int32_t> tokens;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const;
  };
  struct Entry {
    int32_t block;
    ChainId id;
    std::shared_ptr<const LoraSource> lora;
  };
  void forget(int32_t block);  // drops the block's prefix-table entry

  int64_t block_size_;
  std::vector<int32_t> refs_;                            // per block
  std::vector<const Key*> key_of_;                       // per block: its entry's key, or null
  std::vector<std::list<int32_t>::iterator> lru_pos_;    // per block, valid while in evictable_
  std::vector<int32_t> free_;                            // never-registered blocks nobody holds
  std::list<int32_t> evictable_;                         // cached blocks nobody holds, least recently released first
  std::unordered_map<Key, Entry, KeyHash> entries_;
  ChainId next_id_ = 1;
  int64_t held_ = 0;
};

}  // namespace wick

#include "engine/block_manager.h"

#include <algorithm>
#include <functional>

#include "wick/error.h"

namespace wick {

size_t BlockManager::KeyHash::operator()(const Key& k) const {
  size_t h = std::hash<uint64_t>()(k.parent) ^ (std::hash<const void*>()(k.lora) * 0x9e3779b97f4a7c15ull);
  for (int32_t t : k.tokens) h = (h ^ size_t(uint32_t(t))) * 0x100000001b3ull;
  return h;
}

BlockManager::BlockManager(int64_t num_blocks, int64_t block_size)
    : block_size_(block_size),
      refs_(size_t(num_blocks), 0),
      key_of_(size_t(num_blocks), nullptr),
      lru_pos_(size_t(num_blocks)) {
  if (num_blocks < 1 || block_size < 1)
    fail(ErrorKind::bad_input, "KV blocks: " + std::to_string(num_blocks) + " blocks of " + std::to_string(block_size) +
                                   " positions (both must be at least 1)");
  free_.resize(size_t(num_blocks));
  for (int64_t b = 0; b < num_blocks; ++b) free_[size_t(b)] = int32_t(num_blocks - 1 - b);  // block 0 first
}

void BlockManager::forget(int32_t block) {
  const Key* key = key_of_[size_t(block)];
  if (!key) return;
  key_of_[size_t(block)] = nullptr;
  entries_.erase(*key);
}

std::optional<int32_t> BlockManager::allocate() {
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!evictable_.empty()) {
    b = evictable_.front();
    evictable_.pop_front();
    forget(b);  // its chain id dies with it: blocks registered after it can no longer be reached by match()
  } else {
    return std::nullopt;
  }
  refs_[size_t(b)] = 1;
  ++held_;
  return b;
}

void BlockManager::retain(int32_t block) {
  int32_t& r = refs_.at(size_t(block));
  if (r == 0) {  // a cached block taken up again
    evictable_.erase(lru_pos_[size_t(block)]);
    ++held_;
  }
  ++r;
}

void BlockManager::release(int32_t block) {
  int32_t& r = refs_.at(size_t(block));
  if (r <= 0) fail(ErrorKind::internal, "KV blocks: block " + std::to_string(block) + " released more often than held");
  if (--r > 0) return;
  --held_;
  if (key_of_[size_t(block)]) lru_pos_[size_t(block)] = evictable_.insert(evictable_.end(), block);
  else free_.push_back(block);
}

std::vector<int32_t> BlockManager::match(const LoraSource* lora, std::span<const int32_t> tokens,
                                         std::vector<ChainId>& chain) {
  std::vector<int32_t> out;
  ChainId parent = kRoot;
  Key key{.parent = kRoot, .lora = lora, .tokens = {}};
  for (size_t at = 0; at + size_t(block_size_) <= tokens.size(); at += size_t(block_size_)) {
    key.parent = parent;
    key.tokens.assign(tokens.begin() + long(at), tokens.begin() + long(at) + block_size_);
    const auto it = entries_.find(key);
    if (it == entries_.end()) break;
    retain(it->second.block);
    out.push_back(it->second.block);
    chain.push_back(it->second.id);
    parent = it->second.id;
  }
  return out;
}

BlockManager::ChainId BlockManager::register_full(int32_t block, ChainId parent,
                                                  const std::shared_ptr<const LoraSource>& lora,
                                                  std::span<const int32_t> tokens) {
  if (int64_t(tokens.size()) != block_size_)
    fail(ErrorKind::internal, "KV blocks: a block registered with " + std::to_string(tokens.size()) + " tokens");
  Key key{.parent = parent, .lora = lora.get(), .tokens = std::vector<int32_t>(tokens.begin(), tokens.end())};
  const auto [it, inserted] = entries_.try_emplace(std::move(key), Entry{.block = block, .id = next_id_, .lora = lora});
  if (!inserted) return it->second.id;
  ++next_id_;
  forget(block);  // (a block is registered once; defensive)
  key_of_[size_t(block)] = &it->first;
  return it->second.id;
}

}  // namespace wick

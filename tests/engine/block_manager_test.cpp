// BlockManager: reference counts, the free list, the prefix table keyed by (chain, adapter version, tokens), and
// eviction of cached blocks nobody holds (least recently released first) with the chains that hang off them.
#include <gtest/gtest.h>

#include <memory>

#include "engine/block_manager.h"
#include "model/linear.h"
#include "test_util.h"
#include "wick/error.h"

namespace wick::test {
namespace {

// Any LoraSource works as an adapter identity; the manager only compares addresses (and keeps them alive).
class NoFactors final : public LoraSource {
 public:
  const LoraFactors* factors(int, ProjKind) const override { return nullptr; }
};

TEST(BlockManager, AllocateRetainReleaseAndAccounting) {
  BlockManager m(3, 4);
  EXPECT_EQ(m.available(), 3);
  const int32_t a = *m.allocate(), b = *m.allocate(), c = *m.allocate();
  EXPECT_EQ(std::vector<int32_t>({a, b, c}), std::vector<int32_t>({0, 1, 2}));
  EXPECT_FALSE(m.allocate().has_value()) << "every block is held";
  EXPECT_EQ(m.held(), 3);
  m.retain(b);
  m.release(b);
  EXPECT_EQ(m.held(), 3) << "b still has a holder";
  m.release(b);
  EXPECT_EQ(m.held(), 2);
  EXPECT_EQ(*m.allocate(), b);
  for (int32_t x : {a, b, c}) m.release(x);
  EXPECT_EQ(m.held(), 0);
  EXPECT_EQ(m.available(), 3);
  EXPECT_WICK_ERROR(m.release(a), ErrorKind::internal, "released more often than held");
  EXPECT_WICK_ERROR(BlockManager(0, 4), ErrorKind::bad_input, "0 blocks of 4 positions");
}

TEST(BlockManager, PrefixesMatchOnlyUnderTheSameAdapterVersionAndChain) {
  BlockManager m(8, 2);
  const auto v1 = std::make_shared<NoFactors>(), v2 = std::make_shared<NoFactors>();
  const std::vector<int32_t> tokens{1, 2, 3, 4, 5};
  const int32_t b0 = *m.allocate(), b1 = *m.allocate();
  const auto c0 = m.register_full(b0, BlockManager::kRoot, v1, std::span(tokens).first(2));
  const auto c1 = m.register_full(b1, c0, v1, std::span(tokens).subspan(2, 2));
  EXPECT_EQ(m.cached(), 2);

  std::vector<BlockManager::ChainId> chain;
  EXPECT_EQ(m.match(v1.get(), tokens, chain), std::vector<int32_t>({b0, b1}));
  EXPECT_EQ(chain, std::vector<BlockManager::ChainId>({c0, c1}));
  EXPECT_EQ(m.held(), 2);
  chain.clear();
  EXPECT_TRUE(m.match(v2.get(), tokens, chain).empty()) << "another version of the adapter";
  EXPECT_TRUE(m.match(nullptr, tokens, chain).empty()) << "the base model";
  const std::vector<int32_t> other_first{9, 2, 3, 4};
  EXPECT_TRUE(m.match(v1.get(), other_first, chain).empty()) << "block 1's tokens after another first block";

  // An equal entry registered again keeps the first block; the new one stays private.
  const int32_t dup = *m.allocate();
  EXPECT_EQ(m.register_full(dup, BlockManager::kRoot, v1, std::span(tokens).first(2)), c0);
  EXPECT_EQ(m.cached(), 2);
  m.release(dup);
  EXPECT_EQ(m.available(), 8 - 2) << "the duplicate went back to the free list";
}

TEST(BlockManager, CachedBlocksAreEvictedLeastRecentlyReleasedFirstAndTheirChainsDie) {
  BlockManager m(2, 1);
  const auto v = std::make_shared<NoFactors>();
  const std::vector<int32_t> t{7, 8};
  const int32_t x = *m.allocate(), y = *m.allocate();
  const auto cx = m.register_full(x, BlockManager::kRoot, v, std::span(t).first(1));
  m.register_full(y, cx, v, std::span(t).subspan(1, 1));
  m.release(y);  // released first: evicted first
  m.release(x);
  EXPECT_EQ(m.available(), 2);
  EXPECT_EQ(m.held(), 0);
  EXPECT_EQ(*m.allocate(), y);
  EXPECT_EQ(m.cached(), 1);
  std::vector<BlockManager::ChainId> chain;
  EXPECT_EQ(m.match(v.get(), t, chain), std::vector<int32_t>({x})) << "x is still cached; y's entry is gone";
  m.release(x);
  EXPECT_EQ(*m.allocate(), x);  // evicts x: nothing of the chain can be found any more
  EXPECT_EQ(m.cached(), 0);
  chain.clear();
  EXPECT_TRUE(m.match(v.get(), t, chain).empty());
  // The adapter stays alive exactly as long as an entry names it.
  std::weak_ptr<const NoFactors> weak;
  {
    auto temp = std::make_shared<NoFactors>();
    weak = temp;
    m.release(x);
    const int32_t z = *m.allocate();
    m.register_full(z, BlockManager::kRoot, temp, std::span(t).first(1));
  }
  EXPECT_FALSE(weak.expired());
}

}  // namespace
}  // namespace wick::test

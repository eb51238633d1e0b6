// AdapterRegistry: many adapters resident, swaps while other threads run requests, no leaks.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <unistd.h>

#include "adapter_test_util.h"

namespace wick::test {
namespace {

class Registry : public ::testing::Test {
 protected:
  void SetUp() override {
    model = Model::load(fixture("models/tiny-tied"));
    registry = std::make_unique<AdapterRegistry>(model);
  }
  std::shared_ptr<Model> model;
  std::unique_ptr<AdapterRegistry> registry;
  const std::vector<std::vector<int32_t>> rows{{5, 6, 7, 8, 9, 10}};
};

TEST_F(Registry, LoadAddActivateListUnload) {
  const auto dir = temp_dir("reg") / "from-disk";
  LoraAdapter::random("x", all_projections(4, 8), *model, 1)->save(dir);
  const auto disk = registry->load(dir);
  EXPECT_EQ(disk->info().name, "from-disk");
  EXPECT_EQ(disk->info().source, dir);
  registry->add(LoraAdapter::random("mem", all_projections(2, 4), *model, 2));
  EXPECT_WICK_ERROR(registry->add(LoraAdapter::random("mem", all_projections(2, 4), *model, 3)), ErrorKind::bad_input,
                    "'mem'", "already loaded");
  EXPECT_WICK_ERROR(registry->load(dir, "mem"), ErrorKind::bad_input, "already loaded");

  const auto list = registry->list();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "from-disk");
  EXPECT_EQ(list[1].name, "mem");
  EXPECT_EQ(list[1].rank, 2);
  EXPECT_EQ(list[1].lora_modules, 14);
  EXPECT_EQ(list[1].targets.size(), 7u);
  // 2 layers × (A [2, 64] ×6 + A [2, 160]) + (B [64|32|32|64|160|160|64, 2]).
  EXPECT_EQ(list[1].parameter_count, 2 * (2 * (64 * 6 + 160) + 2 * (64 + 32 + 32 + 64 + 160 + 160 + 64)));
  EXPECT_EQ(list[1].bytes, list[1].parameter_count * 4);

  const Tensor base = model->logits(rows);
  registry->activate("mem");
  EXPECT_EQ(registry->active(), "mem");
  EXPECT_EQ(model->current_adapter(), registry->get("mem"));
  const Tensor with_mem = model->logits(rows, model->active_lora().get());
  EXPECT_TRUE(bit_equal(with_mem, model->logits(rows, &registry->get("mem")->source())));
  EXPECT_FALSE(bit_equal(with_mem, base));
  registry->activate("from-disk");
  EXPECT_EQ(registry->active(), "from-disk");
  EXPECT_WICK_ERROR(registry->activate("nope"), ErrorKind::not_found, "'nope'");
  EXPECT_EQ(registry->active(), "from-disk") << "a failed activation changes nothing";
  registry->deactivate();
  EXPECT_EQ(registry->active(), "");
  EXPECT_TRUE(bit_equal(model->logits(rows, model->active_lora().get()), base));

  registry->activate("mem");
  EXPECT_TRUE(registry->unload("mem")) << "unloading the adapter in effect deactivates it";
  EXPECT_FALSE(model->has_adapter());
  EXPECT_FALSE(registry->unload("mem"));
  EXPECT_EQ(registry->get("mem"), nullptr);
  EXPECT_EQ(registry->list().size(), 1u);
}

// put() adds a name or replaces its version; the replaced version stays with whoever holds it, and a version in
// effect is replaced in effect.
TEST_F(Registry, PutReplacesAVersionInPlace) {
  const auto v1 = LoraAdapter::random("live", all_projections(4, 8), *model, 1);
  const auto v2 = LoraAdapter::random("live", all_projections(4, 8), *model, 2);
  EXPECT_EQ(registry->put(v1), nullptr);
  registry->activate("live");
  const std::shared_ptr<const LoraSource> held = model->active_lora();
  EXPECT_EQ(registry->put(v2), v1);
  EXPECT_EQ(model->current_adapter(), v2) << "the version in effect was replaced in effect";
  EXPECT_EQ(held.get(), &v1->source()) << "a request's snapshot keeps the old version";
  EXPECT_EQ(registry->list().size(), 1u);
  registry->deactivate();
  EXPECT_EQ(registry->put(v1), v2);
  EXPECT_FALSE(model->has_adapter()) << "an inactive name stays inactive";
  const auto tied_other = Model::load(fixture("models/tiny-untied"));
  EXPECT_WICK_ERROR(registry->put(LoraAdapter::random("other", all_projections(4, 8), *tied_other, 3)),
                    ErrorKind::bad_input, "model");
  EXPECT_WICK_ERROR(registry->put(nullptr), ErrorKind::bad_input, "no adapter");
}

// Requests on several threads take a snapshot of the adapter in effect, as the Generator does, and decode
// with it while another thread swaps between adapters and the base model. Each request must produce
// exactly what its snapshot produces alone: a swap never reaches a request in flight. Under ASan this
// catches use-after-free of swapped-out adapters; under TSan, races on the swap pointer.
TEST_F(Registry, SwapsNeverReachRequestsInFlight) {
  const std::vector<std::string> names{"a", "b", "c"};
  std::map<const LoraSource*, std::vector<int32_t>> expected;  // by snapshot: its greedy output
  const std::vector<int32_t> prompt{7, 8, 9, 10};
  constexpr int64_t kTokens = 12;
  expected[nullptr] = greedy(*model, nullptr, prompt, kTokens);
  for (size_t i = 0; i < names.size(); ++i) {
    registry->add(LoraAdapter::random(names[i], all_projections(4, 16), *model, 10 + i));
    expected[&registry->get(names[i])->source()] = greedy(*model, &registry->get(names[i])->source(), prompt, kTokens);
  }
  ASSERT_NE(expected[nullptr], expected[&registry->get("a")->source()]) << "the adapters must change the output";

  std::atomic<bool> stop{false};
  std::atomic<int> requests{0}, mismatches{0}, swaps{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t)
    workers.emplace_back([&] {
      while (!stop.load()) {
        const std::shared_ptr<const LoraSource> snapshot = model->active_lora();
        if (greedy(*model, snapshot.get(), prompt, kTokens) != expected.at(snapshot.get())) ++mismatches;
        ++requests;
      }
    });
  std::thread swapper([&] {
    for (int i = 0; requests.load() < 60 || i < 2000; ++i) {
      if (i % 4 == 3) registry->deactivate();
      else registry->activate(names[size_t(i % 4)]);
      ++swaps;
    }
    stop = true;
  });
  swapper.join();
  for (auto& w : workers) w.join();
  EXPECT_EQ(mismatches.load(), 0) << "of " << requests.load() << " requests during " << swaps.load() << " swaps";
}

// Unloading an adapter that requests still hold frees nothing until the last of them finishes.
TEST_F(Registry, UnloadWaitsForHolders) {
  registry->add(LoraAdapter::random("held", all_projections(4, 8), *model, 1));
  registry->activate("held");
  std::weak_ptr<const LoraSource> weak;
  {
    const std::shared_ptr<const LoraSource> snapshot = model->active_lora();
    weak = snapshot;
    const Tensor before = model->logits(rows, snapshot.get());
    EXPECT_TRUE(registry->unload("held"));
    EXPECT_FALSE(weak.expired());
    EXPECT_TRUE(bit_equal(model->logits(rows, snapshot.get()), before));
  }
  EXPECT_TRUE(weak.expired());
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif
#else
constexpr bool kAsan = false;
#endif

int64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * int64_t(::sysconf(_SC_PAGESIZE));
}

// Loading from disk, activating and unloading 1000 times leaves resident memory flat.
TEST_F(Registry, LoadUnloadThousandTimesKeepsMemoryFlat) {
  if (kAsan) GTEST_SKIP() << "ASan's quarantine holds freed memory; LeakSanitizer checks leaks there";
  const auto dir = temp_dir("rss") / "adapter";
  LoraAdapter::random("x", all_projections(8, 16), *model, 1)->save(dir);
  auto cycle = [&] {
    registry->load(dir, "x");
    registry->activate("x");
    registry->unload("x");
  };
  for (int i = 0; i < 100; ++i) cycle();  // warm the allocator
  const int64_t before = resident_bytes();
  for (int i = 0; i < 1000; ++i) cycle();
  const int64_t growth = resident_bytes() - before;
  const int64_t adapter_bytes = LoraAdapter::load(dir, *model)->info().bytes;
  EXPECT_LT(growth, 2 * adapter_bytes + (1 << 20)) << "RSS grew by " << growth << " bytes over 1000 load/unload cycles";
}

}  // namespace
}  // namespace wick::test

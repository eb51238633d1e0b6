// The engine against one sequence at a time: any mix of prompt lengths and adapters, decoded together with chunked
// prefills, prefix sharing and preemption, gives each request the greedy tokens it gets alone through a contiguous
// KV cache (Model::forward); and every block comes back to the pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <stdexcept>

#include "model/linear.h"
#include "test_util.h"
#include "wick/adapter.h"
#include "wick/engine.h"
#include "wick/error.h"

namespace wick::test {
namespace {

std::shared_ptr<Model> tiny() { return Model::load(fixture("models/tiny-untied")); }

std::shared_ptr<const LoraAdapter> adapter(const Model& model, const char* name, uint64_t seed) {
  LoraConfig config;
  config.r = 4;
  config.lora_alpha = 16;
  config.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return LoraAdapter::random(name, config, model, seed);
}

int32_t argmax(std::span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// How a GreedySink takes its logits: whole rows; summaries of the best id; or summaries it declines every other
// position (the whole row follows).
enum class Takes { rows, summaries, some_summaries };

// Greedy for a fixed number of tokens; records what it chose.
class GreedySink final : public TokenSink {
 public:
  explicit GreedySink(int64_t n, Takes takes = Takes::rows) : n_(n), takes_(takes) {}
  std::optional<int32_t> next_token(std::span<const float> logits) override {
    ++rows_seen;
    return take(argmax(logits));
  }
  std::optional<SummaryAsk> summary_ask() override {
    if (takes_ == Takes::rows) return std::nullopt;
    return SummaryAsk{.count = 3};
  }
  SummaryAnswer next_token(const LogitSummary& s) override {
    EXPECT_EQ(s.ids.size(), 3u);
    if (takes_ == Takes::some_summaries && ids.size() % 2 == 1) return {};
    return {.decided = true, .next = take(s.ids[0])};
  }
  std::vector<int32_t> ids;
  int64_t rows_seen = 0;

 private:
  std::optional<int32_t> take(int32_t id) {
    ids.push_back(id);
    if (int64_t(ids.size()) == n_) return std::nullopt;
    return id;
  }
  int64_t n_;
  Takes takes_;
};

std::vector<int32_t> greedy_alone(const Model& model, const std::vector<int32_t>& prompt, int64_t n,
                                  const LoraSource* lora) {
  KVCache cache = model.make_cache(int64_t(prompt.size()) + n);
  std::vector<int32_t> ids;
  Tensor logits = model.forward(std::vector<SequenceInput>{{prompt, &cache}}, {.lora = lora});
  while (true) {
    ids.push_back(argmax(std::span<const float>(logits.data<float>(), size_t(logits.dim(1)))));
    if (int64_t(ids.size()) == n) return ids;
    const std::vector<int32_t> one{ids.back()};
    logits = model.forward(std::vector<SequenceInput>{{one, &cache}}, {.lora = lora});
  }
}

struct Req {
  std::vector<int32_t> prompt{};
  std::shared_ptr<const LoraAdapter> adapter{};
  int64_t n = 100;
};

std::vector<Req> mixed_requests(const Model& model) {
  const auto a = adapter(model, "a", 1), b = adapter(model, "b", 2);
  std::mt19937 rng(5);
  std::vector<Req> out;
  const std::shared_ptr<const LoraAdapter> adapters[] = {a, nullptr, b};
  for (int i = 0; i < 7; ++i) {
    Req r{.adapter = adapters[i % 3], .n = 40 + 10 * i};
    const int len = 1 + int(rng() % 40);
    for (int t = 0; t < len; ++t) r.prompt.push_back(int32_t(rng() % 384));
    out.push_back(r);
  }
  return out;
}

// Runs `reqs` through an engine; returns each request's tokens. Request i's sink takes takes[i % size] (rows when
// none is given).
std::vector<std::vector<int32_t>> run_engine(Engine& engine, const std::vector<Req>& reqs,
                                             const std::vector<Takes>& takes = {Takes::rows},
                                             std::vector<std::shared_ptr<GreedySink>>* kept = nullptr) {
  std::vector<std::shared_ptr<GreedySink>> sinks;
  for (const Req& r : reqs) {
    sinks.push_back(std::make_shared<GreedySink>(r.n, takes[sinks.size() % takes.size()]));
    engine.submit({.prompt = r.prompt, .max_new_tokens = r.n, .lora = LoraAdapter::shared_source(r.adapter),
                   .sink = sinks.back()});
  }
  engine.run();
  std::vector<std::vector<int32_t>> out;
  for (const auto& s : sinks) out.push_back(s->ids);
  if (kept) *kept = sinks;
  return out;
}

void expect_as_alone(const Model& model, const std::vector<Req>& reqs, const std::vector<std::vector<int32_t>>& got) {
  for (size_t i = 0; i < reqs.size(); ++i)
    EXPECT_EQ(got[i], greedy_alone(model, reqs[i].prompt, reqs[i].n, reqs[i].adapter ? &reqs[i].adapter->source() : nullptr))
        << "request " << i;
}

void expect_pool_whole(const Engine& engine) {
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.blocks_held, 0) << "every block is back";
  EXPECT_EQ(s.waiting + s.running, 0);
}

TEST(Engine, MixedAdaptersAndLengthsDecodeAsEachAlone) {
  auto model = tiny();
  const std::vector<Req> reqs = mixed_requests(*model);
  Engine engine(model, {.block_size = 8, .num_blocks = 256});
  expect_as_alone(*model, reqs, run_engine(engine, reqs));
  expect_pool_whole(engine);
  EXPECT_EQ(engine.stats().finished, int64_t(reqs.size()));
  EXPECT_EQ(engine.stats().preemptions, 0);
  EXPECT_EQ(engine.stats().steps, 100) << "all seven ran together: as many steps as the longest needs tokens";
}

// The engine over a model split over two ranks (tensor parallelism, the CPU's host collective): the same mix of
// adapters and lengths gives the whole model's greedy tokens (f32 weights, where the split changes only the order of
// f32 additions).
TEST(Engine, ASplitModelDecodesMixedAdaptersAsTheWholeModel) {
  const auto whole = Model::load(fixture("models/tiny-untied"), {.cpu_weights = CpuWeights::f32});
  const auto split = Model::load(fixture("models/tiny-untied"), {.cpu_weights = CpuWeights::f32, .tensor_parallel = 2});
  const std::vector<Req> reqs = mixed_requests(*split);  // the same seeds: each model's copy of the same adapters
  Engine engine(split, {.block_size = 8, .num_blocks = 256});
  const std::vector<std::vector<int32_t>> got = run_engine(engine, reqs);
  expect_as_alone(*whole, mixed_requests(*whole), got);
  expect_pool_whole(engine);
}

TEST(Engine, SinksChooseFromSummariesAsFromWholeRows) {
  auto model = tiny();
  const std::vector<Req> reqs = mixed_requests(*model);
  Engine engine(model, {.block_size = 8, .num_blocks = 256});
  std::vector<std::shared_ptr<GreedySink>> sinks;
  expect_as_alone(*model, reqs, run_engine(engine, reqs, {Takes::summaries, Takes::rows, Takes::some_summaries}, &sinks));
  EXPECT_EQ(sinks[0]->rows_seen, 0) << "a sink decided by its summaries never gets a row";
  EXPECT_EQ(sinks[1]->rows_seen, reqs[1].n);
  EXPECT_EQ(sinks[2]->rows_seen, reqs[2].n / 2) << "a row follows each declined summary";
  expect_pool_whole(engine);
}

// Follows given tokens (teacher forcing) and keeps what it was shown: whole rows, or the summaries' best ids and
// their logits.
class ForcedSink final : public TokenSink {
 public:
  ForcedSink(std::vector<int32_t> follow, bool summaries) : follow_(std::move(follow)), summaries_(summaries) {}
  std::optional<int32_t> next_token(std::span<const float> logits) override {
    rows.emplace_back(logits.begin(), logits.end());
    return step();
  }
  std::optional<SummaryAsk> summary_ask() override {
    if (!summaries_) return std::nullopt;
    return SummaryAsk{.count = 2};
  }
  SummaryAnswer next_token(const LogitSummary& s) override {
    best.push_back(s.ids[0]);
    best_value.push_back(s.values[0]);
    return {.decided = true, .next = step()};
  }
  std::vector<std::vector<float>> rows;
  std::vector<int32_t> best;
  std::vector<float> best_value;

 private:
  std::optional<int32_t> step() {
    if (++taken_ == follow_.size()) return std::nullopt;
    return follow_[taken_ - 1];
  }
  std::vector<int32_t> follow_;
  bool summaries_;
  size_t taken_ = 0;
};

// Greedy; keeps each position's whole row.
class RecordingSink final : public TokenSink {
 public:
  explicit RecordingSink(int64_t n) : n_(n) {}
  std::optional<int32_t> next_token(std::span<const float> logits) override {
    rows.emplace_back(logits.begin(), logits.end());
    ids.push_back(argmax(logits));
    if (int64_t(ids.size()) == n_) return std::nullopt;
    return ids.back();
  }
  std::vector<int32_t> ids;
  std::vector<std::vector<float>> rows;

 private:
  int64_t n_;
};

// The rows of one request decoded alone through a contiguous KV cache (Model::forward), following `follow`.
std::vector<std::vector<float>> forced_alone(const Model& model, const std::vector<int32_t>& prompt,
                                             const std::vector<int32_t>& follow, const LoraSource* lora) {
  KVCache cache = model.make_cache(int64_t(prompt.size() + follow.size()));
  std::vector<std::vector<float>> rows;
  Tensor logits = model.forward(std::vector<SequenceInput>{{prompt, &cache}}, {.lora = lora});
  for (size_t t = 0;; ++t) {
    rows.emplace_back(logits.data<float>(), logits.data<float>() + logits.dim(1));
    if (t + 1 == follow.size()) return rows;
    const std::vector<int32_t> one{follow[t]};
    logits = model.forward(std::vector<SequenceInput>{{one, &cache}}, {.lora = lora});
  }
}

double relative_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// The engine on a GPU (recorded decode steps, the row gather of adapters, summaries of the rows) against the CPU
// engine, both following the CPU's greedy tokens: every position's logits within bf16 tolerance — 3e-2 relative L2,
// or within 1.5× of the error of the same request decoded alone on the GPU through a contiguous cache (bf16 error
// grows along a sequence; the plain ops round each projection, and an adapter's term, to bf16 where the fused
// one-token kernels keep f32) — and the GPU's best id the CPU's wherever the CPU's top two are not a bf16-level tie,
// through whole rows and through summaries. Skipped without a GPU.
TEST(Engine, CudaLogitsAndBestIdsMatchTheCpuEngine) {
  std::shared_ptr<Model> gpu;
  try {
    gpu = Model::load(fixture("models/tiny-untied"), {.device = Device::cuda});
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  auto cpu = tiny();
  std::vector<Req> on_cpu = mixed_requests(*cpu), on_gpu = mixed_requests(*gpu);  // the same adapters, per model
  for (size_t i = 0; i < on_gpu.size(); ++i) on_cpu[i].n = on_gpu[i].n = 30;
  Engine cpu_engine(cpu, {.block_size = 8, .num_blocks = 256}), gpu_engine(gpu, {.block_size = 8, .num_blocks = 256});
  std::vector<std::shared_ptr<RecordingSink>> want;
  for (const Req& r : on_cpu) {
    want.push_back(std::make_shared<RecordingSink>(r.n));
    cpu_engine.submit({.prompt = r.prompt, .max_new_tokens = r.n, .lora = LoraAdapter::shared_source(r.adapter),
                       .sink = want.back()});
  }
  cpu_engine.run();
  std::vector<std::vector<std::vector<float>>> alone;  // the GPU's contiguous-cache rows, per request
  for (size_t i = 0; i < on_gpu.size(); ++i)
    alone.push_back(forced_alone(*gpu, on_gpu[i].prompt, want[i]->ids,
                                 on_gpu[i].adapter ? &on_gpu[i].adapter->source() : nullptr));
  int64_t ties = 0;
  double worst = 0, worst_alone = 0;
  for (const bool summaries : {false, true}) {
    std::vector<std::shared_ptr<ForcedSink>> got;
    for (size_t i = 0; i < on_gpu.size(); ++i) {
      got.push_back(std::make_shared<ForcedSink>(want[i]->ids, summaries));
      gpu_engine.submit({.prompt = on_gpu[i].prompt, .max_new_tokens = on_gpu[i].n,
                         .lora = LoraAdapter::shared_source(on_gpu[i].adapter), .sink = got.back()});
    }
    gpu_engine.run();
    for (size_t i = 0; i < got.size(); ++i) {
      const auto& ref = want[i]->rows;
      ASSERT_EQ((summaries ? got[i]->best.size() : got[i]->rows.size()), ref.size()) << "request " << i;
      for (size_t t = 0; t < ref.size(); ++t) {
        const int32_t cpu_best = want[i]->ids[t];
        int32_t gpu_best = 0;
        if (summaries) {
          gpu_best = got[i]->best[t];
          EXPECT_NEAR(got[i]->best_value[t], ref[t][size_t(gpu_best)], 3e-2 * (1 + std::fabs(ref[t][size_t(cpu_best)])))
              << "request " << i << " position " << t;
        } else {
          gpu_best = argmax(got[i]->rows[t]);
          const double error = relative_l2(got[i]->rows[t], ref[t]), error_alone = relative_l2(alone[i][t], ref[t]);
          worst = std::max(worst, error), worst_alone = std::max(worst_alone, error_alone);
          EXPECT_LE(error, std::max(3e-2, 1.5 * error_alone)) << "request " << i << " position " << t;
        }
        if (gpu_best == cpu_best) continue;
        ++ties;
        const float top = ref[t][size_t(cpu_best)], gap = top - ref[t][size_t(gpu_best)];
        EXPECT_LT(gap, 0.05f * std::fabs(top)) << "request " << i << " position " << t << ": GPU chose " << gpu_best
                                               << ", CPU " << cpu_best << " — not a near-tie";
      }
    }
    expect_pool_whole(gpu_engine);
  }
  std::cout << "CUDA engine: logits' relative L2 error vs the CPU engine at most " << worst << " (alone through a "
            << "contiguous cache: " << worst_alone << "); best ids part from the CPU's at " << ties << " near-ties\n";
  EXPECT_GT(gpu->paged_graphs_recorded(), 0);
}

TEST(Engine, ChunkedPrefillsUnderASmallStepBudget) {
  auto model = tiny();
  const std::vector<Req> reqs = mixed_requests(*model);
  Engine engine(model, {.block_size = 4, .num_blocks = 512, .max_step_tokens = 5});
  expect_as_alone(*model, reqs, run_engine(engine, reqs));
  expect_pool_whole(engine);
}

TEST(Engine, PreemptionWhenThePoolRunsOutChangesNoOutput) {
  auto model = tiny();
  const std::vector<Req> reqs = mixed_requests(*model);
  // The largest request needs ⌈(40 + 100) / 8⌉ = 18 blocks; 30 hold two of them at most.
  Engine engine(model, {.block_size = 8, .num_blocks = 30});
  expect_as_alone(*model, reqs, run_engine(engine, reqs));
  EXPECT_GT(engine.stats().preemptions, 0) << "the pool was meant to run out";
  expect_pool_whole(engine);
}

TEST(Engine, PrefixesAreSharedOnlyUnderTheSameAdapterVersion) {
  auto model = tiny();
  const auto a = adapter(*model, "a", 1), a_again = adapter(*model, "a", 1);  // equal factors, another version
  std::vector<int32_t> prefix;
  for (int i = 0; i < 24; ++i) prefix.push_back(int32_t(10 + 3 * i));
  auto with_tail = [&](std::vector<int32_t> tail) {
    std::vector<int32_t> p = prefix;
    p.insert(p.end(), tail.begin(), tail.end());
    return p;
  };
  Engine engine(model, {.block_size = 8, .num_blocks = 64});
  auto hits_of = [&](const Req& r) {
    const int64_t before = engine.stats().prefix_hit_tokens;
    const auto out = run_engine(engine, {r});
    expect_as_alone(*model, {r}, out);
    return engine.stats().prefix_hit_tokens - before;
  };
  EXPECT_EQ(hits_of({.prompt = with_tail({1, 2}), .adapter = nullptr, .n = 20}), 0);
  EXPECT_EQ(hits_of({.prompt = with_tail({3}), .adapter = nullptr, .n = 20}), 24) << "three whole blocks of the prefix";
  EXPECT_EQ(hits_of({.prompt = with_tail({3}), .adapter = a, .n = 20}), 0) << "computed under the base model only";
  EXPECT_EQ(hits_of({.prompt = with_tail({4, 5, 6}), .adapter = a, .n = 20}), 24);
  EXPECT_EQ(hits_of({.prompt = with_tail({4}), .adapter = a_again, .n = 20}), 0) << "a new version never reuses";
  EXPECT_EQ(hits_of({.prompt = prefix, .adapter = nullptr, .n = 5}), 16) << "the last token is always computed";
  expect_pool_whole(engine);
  EXPECT_GT(engine.stats().blocks_cached, 0);
}

// Requests submitted together with a common prefix compute it once: the others wait for its blocks (a step, or as
// many as the first needs under a small step budget) instead of computing them beside it — a shared system prompt,
// a request's n choices. Their tokens are unchanged; a prefix under another adapter version is still its own.
TEST(Engine, ACommonPrefixArrivingTogetherIsComputedOnce) {
  auto model = tiny();
  const auto a = adapter(*model, "a", 1);
  std::vector<int32_t> prefix;
  for (int i = 0; i < 40; ++i) prefix.push_back(int32_t(7 + 5 * i));  // five blocks of 8
  std::vector<Req> reqs;
  for (int i = 0; i < 6; ++i) {  // the base model: one computes the prefix, five take it
    Req r{.prompt = prefix, .adapter = nullptr, .n = 12};
    for (int t = 0; t <= i; ++t) r.prompt.push_back(int32_t(300 + 11 * i + t));
    reqs.push_back(r);
  }
  for (int i = 0; i < 2; ++i) reqs.push_back({.prompt = reqs[size_t(i)].prompt, .adapter = a, .n = 12});  // its own
  reqs.push_back({.prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, .adapter = nullptr, .n = 12});                 // no match
  for (const int64_t budget : {512, 13}) {
    Engine engine(model, {.block_size = 8, .num_blocks = 256, .max_step_tokens = budget});
    expect_as_alone(*model, reqs, run_engine(engine, reqs));
    const EngineStats s = engine.stats();
    EXPECT_EQ(s.prefix_hit_tokens, (5 + 1) * 40) << "budget " << budget << ": five base requests and one under a";
    EXPECT_GT(s.prefix_waits, 0) << "budget " << budget;
    expect_pool_whole(engine);
  }
  Engine unshared(model, {.block_size = 8, .num_blocks = 256, .share_prefixes = false});
  expect_as_alone(*model, reqs, run_engine(unshared, reqs));
  EXPECT_EQ(unshared.stats().prefix_hit_tokens, 0);
  EXPECT_EQ(unshared.stats().prefix_waits, 0);
}

TEST(Engine, CancelledAndFailedRequestsEndAloneAndGiveTheirBlocksBack) {
  auto model = tiny();
  const std::vector<Req> reqs = mixed_requests(*model);
  Engine engine(model, {.block_size = 8, .num_blocks = 256});
  // Throws where `at` says: choosing from the row (0), asking for a summary (1), choosing from the summary (2).
  class Throwing final : public TokenSink {
   public:
    explicit Throwing(int at) : at_(at) {}
    std::optional<int32_t> next_token(std::span<const float>) override { throw std::runtime_error("sink failed"); }
    std::optional<SummaryAsk> summary_ask() override {
      if (at_ == 1) throw std::runtime_error("ask failed");
      return at_ == 2 ? std::optional<SummaryAsk>(SummaryAsk{}) : std::nullopt;
    }
    SummaryAnswer next_token(const LogitSummary&) override { throw std::runtime_error("summary failed"); }

   private:
    int at_;
  };
  std::vector<std::shared_ptr<GreedySink>> sinks;
  std::vector<uint64_t> ids;
  for (const Req& r : reqs) {
    sinks.push_back(std::make_shared<GreedySink>(r.n));
    ids.push_back(engine.submit({.prompt = r.prompt, .max_new_tokens = r.n,
                                 .lora = LoraAdapter::shared_source(r.adapter), .sink = sinks.back()}));
  }
  std::vector<uint64_t> bad;
  for (int at = 0; at < 3; ++at)
    bad.push_back(engine.submit({.prompt = {1, 2, 3}, .max_new_tokens = 4, .sink = std::make_shared<Throwing>(at)}));
  for (int i = 0; i < 10; ++i) engine.step();
  engine.cancel(ids[2]);
  engine.cancel(ids[5]);
  engine.cancel(987654);  // unknown: ignored
  engine.run();
  for (uint64_t id : bad) EXPECT_TRUE(engine.error(id) != nullptr) << "the failing sink of request " << id;
  EXPECT_TRUE(engine.error(ids[0]) == nullptr);
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto alone = greedy_alone(*model, reqs[i].prompt, reqs[i].n, reqs[i].adapter ? &reqs[i].adapter->source() : nullptr);
    if (i == 2 || i == 5) {
      EXPECT_LT(sinks[i]->ids.size(), alone.size()) << "request " << i << " was cancelled";
      EXPECT_TRUE(std::equal(sinks[i]->ids.begin(), sinks[i]->ids.end(), alone.begin())) << "request " << i;
    } else {
      EXPECT_EQ(sinks[i]->ids, alone) << "request " << i;
    }
  }
  expect_pool_whole(engine);
}

TEST(Engine, BadRequestsAreRefusedWithTheReason) {
  auto model = tiny();
  Engine engine(model, {.block_size = 8, .num_blocks = 4});
  auto sink = std::make_shared<GreedySink>(1);
  EXPECT_WICK_ERROR(engine.submit({.prompt = {}, .sink = sink}), ErrorKind::bad_input, "the prompt is empty");
  EXPECT_WICK_ERROR(engine.submit({.prompt = {1}, .sink = nullptr}), ErrorKind::bad_input, "no token sink");
  EXPECT_WICK_ERROR(engine.submit({.prompt = {1}, .max_new_tokens = 0, .sink = sink}), ErrorKind::bad_input,
                    "max_new_tokens must be at least 1");
  EXPECT_WICK_ERROR(engine.submit({.prompt = {1, 384}, .sink = sink}), ErrorKind::bad_input,
                    "token id 384 is outside the vocabulary [0, 384)");
  EXPECT_WICK_ERROR(engine.submit({.prompt = std::vector<int32_t>(30, 1), .max_new_tokens = 3, .sink = sink}),
                    ErrorKind::bad_input, "it needs 5 blocks of 8 positions; the pool has 4");
  EXPECT_WICK_ERROR(engine.submit({.prompt = {1}, .max_new_tokens = 300, .sink = sink}), ErrorKind::bad_input,
                    "exceed the model's context of 256");
  EXPECT_FALSE(engine.step()) << "nothing was queued";
  EXPECT_WICK_ERROR(Engine(model, {.num_blocks = 0}), ErrorKind::bad_input, "0 blocks");
  EXPECT_WICK_ERROR(Engine(model, {.max_step_tokens = 0}), ErrorKind::bad_input, "max_step_tokens");
}

}  // namespace
}  // namespace wick::test

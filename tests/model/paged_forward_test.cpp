// Model::forward_paged: keys and values in a pool's blocks through block tables, each sequence with its own adapter,
// against the contiguous KV cache of Model::forward run one sequence at a time (the reference path).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "model_test_util.h"
#include "test_util.h"
#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/model.h"

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

int32_t argmax(const Tensor& logits, int64_t row) {
  const float* p = logits.data<float>() + row * logits.dim(1);
  return int32_t(std::max_element(p, p + logits.dim(1)) - p);
}

// One sequence decoded alone through a contiguous cache: the logits of its prompt's last token, then of each
// greedy step; the ids chosen.
struct Alone {
  std::vector<Tensor> logits;
  std::vector<int32_t> ids;
};

Alone decode_alone(const Model& model, const std::vector<int32_t>& prompt, int steps, const LoraSource* lora) {
  KVCache cache = model.make_cache(int64_t(prompt.size()) + steps + 1);
  Alone out;
  out.logits.push_back(model.forward(std::vector<SequenceInput>{{prompt, &cache}}, {.lora = lora}));
  for (int s = 0; s < steps; ++s) {
    out.ids.push_back(argmax(out.logits.back(), 0));
    const std::vector<int32_t> one{out.ids.back()};
    out.logits.push_back(model.forward(std::vector<SequenceInput>{{one, &cache}}, {.lora = lora}));
  }
  return out;
}

// A sequence of the paged batch: its block table (blocks scattered over the pool) and its tokens so far.
struct Paged {
  std::vector<int32_t> prompt{};
  const LoraSource* lora = nullptr;
  std::vector<int32_t> blocks{};
  std::vector<int32_t> ids{};
  int64_t past = 0;
};

TEST(PagedForward, OneSequenceEqualsTheContiguousCacheBitForBit) {
  auto model = tiny();
  const std::vector<int32_t> prompt{5, 17, 42, 99, 103, 250, 77, 12, 8, 301};
  const Alone alone = decode_alone(*model, prompt, 30, nullptr);
  KVBlockPool pool = model->make_block_pool(16, 4);
  const std::vector<int32_t> blocks{11, 3, 14, 0, 7, 9, 2, 15, 5, 1, 12};  // out of order on purpose
  std::vector<int32_t> tokens = prompt;
  int64_t past = 0;
  for (size_t s = 0; s < alone.logits.size(); ++s) {
    const std::vector<PagedSequence> batch{{.tokens = tokens, .past = past, .blocks = blocks}};
    const Tensor logits = model->forward_paged(pool, batch);
    ASSERT_TRUE(same_bits(logits, alone.logits[s])) << "step " << s;
    past += int64_t(tokens.size());
    if (s < alone.ids.size()) tokens = {alone.ids[s]};
  }
}

// Sequences of different lengths, each with its own adapter or none, decoded together for 100 tokens: each gets
// the greedy tokens it gets alone, and logits within f32 rounding of a different GEMM shape.
TEST(PagedForward, MixedAdaptersInOneBatchDecodeAsEachAlone) {
  auto model = tiny();
  const auto a = adapter(*model, "a", 1), b = adapter(*model, "b", 2);
  std::vector<Paged> seqs = {{.prompt = {5, 17, 42, 99}, .lora = &a->source()},
                             {.prompt = {301, 7, 7, 19, 250, 64, 12, 88, 91}, .lora = nullptr},
                             {.prompt = {2, 300}, .lora = &b->source()},
                             {.prompt = {33, 34, 35, 36, 37, 38}, .lora = &a->source()}};
  constexpr int kSteps = 100;
  constexpr int64_t kBlock = 8, kBlocksEach = 14;  // 14 · 8 ≥ 9 + 100 positions
  KVBlockPool pool = model->make_block_pool(int64_t(seqs.size()) * kBlocksEach, kBlock);
  std::vector<int32_t> order(size_t(pool.num_blocks()));
  std::iota(order.begin(), order.end(), 0);
  std::reverse(order.begin(), order.end());  // interleaved tables: sequence i takes every 4th block, from the end
  for (size_t i = 0; i < seqs.size(); ++i)
    for (int64_t j = 0; j < kBlocksEach; ++j) seqs[i].blocks.push_back(order[size_t(j) * seqs.size() + i]);

  std::vector<Alone> alone;
  for (const Paged& s : seqs) alone.push_back(decode_alone(*model, s.prompt, kSteps, s.lora));
  for (int step = 0; step <= kSteps; ++step) {
    std::vector<std::vector<int32_t>> tokens;
    std::vector<PagedSequence> batch;
    for (Paged& s : seqs) tokens.push_back(step == 0 ? s.prompt : std::vector<int32_t>{s.ids.back()});
    for (size_t i = 0; i < seqs.size(); ++i)
      batch.push_back({.tokens = tokens[i], .past = seqs[i].past, .blocks = seqs[i].blocks, .lora = seqs[i].lora});
    const Tensor logits = model->forward_paged(pool, batch);
    ASSERT_EQ(logits.dim(0), int64_t(seqs.size()));
    for (size_t i = 0; i < seqs.size(); ++i) {
      const Tensor want = alone[i].logits[size_t(step)];
      EXPECT_LE(relative_max_error(logits.rows(int64_t(i), int64_t(i) + 1), want), 1e-5) << "sequence " << i << " step " << step;
      seqs[i].past += int64_t(tokens[i].size());
      seqs[i].ids.push_back(argmax(logits, int64_t(i)));
    }
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].ids.pop_back();  // the token after the last step, which the alone run does not take
    EXPECT_EQ(seqs[i].ids, alone[i].ids) << "sequence " << i;
  }
  EXPECT_NE(alone[0].ids, alone[1].ids) << "the adapters change the output (the test would be vacuous)";
}

// Two sequences read one prompt's blocks (a shared prefix): each continues as if it had computed the prefix itself.
TEST(PagedForward, SequencesShareThePrefixBlocksTheyOnlyRead) {
  auto model = tiny();
  const std::vector<int32_t> prefix{5, 17, 42, 99, 103, 250, 77, 12};  // two whole blocks of 4
  KVBlockPool pool = model->make_block_pool(8, 4);
  const std::vector<int32_t> first{6, 0};
  model->forward_paged(pool, std::vector<PagedSequence>{{.tokens = prefix, .past = 0, .blocks = first}});
  const std::vector<int32_t> a_tail{301, 8, 9}, b_tail{44, 45};
  const std::vector<int32_t> a_blocks{6, 0, 3}, b_blocks{6, 0, 5};
  const Tensor both = model->forward_paged(pool, std::vector<PagedSequence>{{.tokens = a_tail, .past = 8, .blocks = a_blocks},
                                                                           {.tokens = b_tail, .past = 8, .blocks = b_blocks}},
                                           LogitsFor::every_token);
  for (const auto& [tail, row0] : {std::pair{a_tail, int64_t(0)}, std::pair{b_tail, int64_t(3)}}) {
    std::vector<int32_t> whole = prefix;
    whole.insert(whole.end(), tail.begin(), tail.end());
    KVCache cache = model->make_cache(int64_t(whole.size()));
    const Tensor alone = model->forward(std::vector<SequenceInput>{{whole, &cache}}, {.logits = LogitsFor::every_token});
    const int64_t n = int64_t(tail.size());
    EXPECT_LE(relative_max_error(both.rows(row0, row0 + n), alone.rows(int64_t(prefix.size()), int64_t(whole.size()))), 1e-5);
  }
}

// ||a - b|| / ||b|| over every element.
double relative_l2(const Tensor& a, const Tensor& b) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < b.numel(); ++i) {
    const double d = double(a.data<float>()[i]) - double(b.data<float>()[i]);
    num += d * d;
    den += double(b.data<float>()[i]) * double(b.data<float>()[i]);
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// A batch on CUDA (bf16 weights, activations and pool) against the CPU's paged pass: within the bf16 bound of a
// whole forward pass (relative L2 3e-2, as CudaModel's tests; the largest single logit moves 1-2 %), for every step
// of the prompts plus 20 tokens, fed the CPU's greedy tokens so that both see the same inputs. Skipped without a GPU.
void expect_cuda_matches_cpu(size_t sequences, bool adapters) {
  std::shared_ptr<Model> gpu;
  try {
    gpu = Model::load(fixture("models/tiny-untied"), {.device = Device::cuda});
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  auto cpu = tiny();
  const auto a_cpu = adapter(*cpu, "a", 1), a_gpu = adapter(*gpu, "a", 1);
  std::vector<std::vector<int32_t>> tokens(sequences), tables(sequences);
  for (size_t i = 0; i < sequences; ++i)  // prompts of 1 to 7 tokens
    for (size_t t = 0; t <= i % 7; ++t) tokens[i].push_back(int32_t((i * 37 + t * 11 + 5) % 300));
  const int32_t blocks = int32_t(8 * sequences);  // 28 positions at most per sequence: 7 blocks of 4
  KVBlockPool cpu_pool = cpu->make_block_pool(blocks, 4), gpu_pool = gpu->make_block_pool(blocks, 4);
  for (int32_t b = 0; b < blocks; ++b) tables[size_t(b) % sequences].push_back(blocks - 1 - b);
  std::vector<int64_t> past(sequences, 0);
  for (int step = 0; step <= 20; ++step) {
    std::vector<PagedSequence> on_cpu, on_gpu;
    for (size_t i = 0; i < sequences; ++i) {
      const bool with = adapters && i % 3 != 1;
      on_cpu.push_back({.tokens = tokens[i], .past = past[i], .blocks = tables[i], .lora = with ? &a_cpu->source() : nullptr});
      on_gpu.push_back({.tokens = tokens[i], .past = past[i], .blocks = tables[i], .lora = with ? &a_gpu->source() : nullptr});
    }
    const Tensor want = cpu->forward_paged(cpu_pool, on_cpu), got = gpu->forward_paged(gpu_pool, on_gpu);
    EXPECT_LE(relative_l2(got, want), 3e-2) << "step " << step << ", " << sequences << " sequences";
    for (size_t i = 0; i < sequences; ++i) {
      past[i] += int64_t(tokens[i].size());
      tokens[i] = {argmax(want, int64_t(i))};
    }
  }
}

// Three sequences, two with the adapter (the row gather of adapters, the plain ops).
TEST(PagedForward, CudaMatchesTheCpu) { expect_cuda_matches_cpu(3, true); }

// No adapters: the few-row kernels, over 5 sequences (their prompts a 15-token prefill, one launch of each kernel
// too) and 13 (the prefill through the plain ops, every step in the few-row kernels at 13 rows, in the step recorded
// for 16).
TEST(PagedForward, CudaWithoutAdaptersMatchesTheCpu) {
  expect_cuda_matches_cpu(5, false);
  expect_cuda_matches_cpu(13, false);
}

// Whether row 0's best two logits are within 2 % of the best's magnitude (bf16 rounding may swap them).
bool near_tie(const Tensor& logits) {
  std::vector<float> row(logits.data<float>(), logits.data<float>() + logits.dim(1));
  std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<>());
  return row[0] - row[1] < 0.02f * std::fabs(row[0]);
}

// One sequence decoding one token at a time over a pool (a batch of one in the engine) runs the fused one-token
// kernels of a contiguous cache's step, reading its keys through the block table: on CUDA, its logits at every step
// equal those of the same sequence decoded through a contiguous cache within bf16 rounding (the two passes differ in
// their attention kernels, prefill included: 0.4-2 % relative L2 measured; a key read from a wrong row moves them
// by tens of percent), and so do the greedy ids wherever the reference's best two are not a bf16-level tie — with no
// adapter, with one, and with the adapter changing mid-sequence (one recorded step serves every adapter). Skipped
// without a GPU.
TEST(PagedForward, CudaOneSequenceRunsTheOneTokenStepOverItsBlockTable) {
  std::shared_ptr<Model> gpu;
  try {
    gpu = Model::load(fixture("models/tiny-untied"), {.device = Device::cuda});
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  const auto a = adapter(*gpu, "a", 1);
  const std::vector<int32_t> prompt{301, 7, 7, 19, 250, 64, 12};
  constexpr int kSteps = 40;
  KVBlockPool pool = gpu->make_block_pool(24, 4);
  std::vector<int32_t> blocks;
  for (int32_t b = 23; b >= 0; b -= 2) blocks.push_back(b);  // scattered, every other block
  for (const int adapters : {0, 1, 2}) {  // none; a; none for the first half, then a
    const auto lora_at = [&](int step) -> const LoraSource* {
      return adapters == 1 || (adapters == 2 && step >= kSteps / 2) ? &a->source() : nullptr;
    };
    // The reference: the contiguous cache, the adapter changing at the same step.
    KVCache cache = gpu->make_cache(int64_t(prompt.size()) + kSteps + 1);
    std::vector<Tensor> want{gpu->forward(std::vector<SequenceInput>{{prompt, &cache}}, {.lora = lora_at(0)})};
    std::vector<int32_t> ids;
    for (int s = 1; s <= kSteps; ++s) {
      ids.push_back(argmax(want.back(), 0));
      const std::vector<int32_t> one{ids.back()};
      want.push_back(gpu->forward(std::vector<SequenceInput>{{one, &cache}}, {.lora = lora_at(s)}));
    }
    const int64_t recorded = gpu->decode_graphs_recorded(), paged_recorded = gpu->paged_graphs_recorded();
    Tensor got = gpu->forward_paged(pool, std::vector<PagedSequence>{{.tokens = prompt, .blocks = blocks,
                                                                      .lora = lora_at(0)}});
    EXPECT_LE(relative_l2(got, want[0]), 3e-2) << "prompt, adapters " << adapters;
    for (int s = 1; s <= kSteps; ++s) {
      const std::vector<int32_t> one{ids[size_t(s - 1)]};
      got = gpu->forward_paged(pool, std::vector<PagedSequence>{{.tokens = one,
                                                                 .past = int64_t(prompt.size()) + s - 1,
                                                                 .blocks = blocks,
                                                                 .lora = lora_at(s)}});
      EXPECT_LE(relative_l2(got, want[size_t(s)]), 3e-2) << "step " << s << ", adapters " << adapters;
      if (s < kSteps && !near_tie(want[size_t(s)])) {
        EXPECT_EQ(argmax(got, 0), ids[size_t(s)]) << "step " << s << ", adapters " << adapters;
      }
    }
    // The steps ran the one-token kernels (recorded for the pool once, then replayed), not the batched step.
    EXPECT_EQ(gpu->paged_graphs_recorded(), paged_recorded) << "adapters " << adapters;
    EXPECT_LE(gpu->decode_graphs_recorded() - recorded, adapters == 0 ? 1 : 2) << "adapters " << adapters;
    if (adapters == 0) {
      EXPECT_EQ(gpu->decode_graphs_recorded() - recorded, 1);
    }
  }
}

TEST(PagedForward, BadBatchesAreRefusedBeforeAnythingIsWritten) {
  auto model = tiny();
  KVBlockPool pool = model->make_block_pool(4, 4);
  const Tensor before = pool.keys(0).clone();
  const std::vector<int32_t> five{1, 2, 3, 4, 5}, one{7}, table{0, 1}, short_table{0}, outside{0, 9}, other{1, 2};
  const std::vector<int32_t> bad_id{1, 999999};
  auto run = [&](std::vector<PagedSequence> batch) { model->forward_paged(pool, batch); };
  EXPECT_WICK_ERROR(run({}), ErrorKind::bad_input, "empty batch");
  EXPECT_WICK_ERROR(run({{.tokens = five, .past = 0, .blocks = short_table}}), ErrorKind::bad_input,
                    "sequence 0: its block table has 1 blocks of 4 positions; 5 need 2");
  EXPECT_WICK_ERROR(run({{.tokens = five, .past = 0, .blocks = outside}}), ErrorKind::bad_input,
                    "block 9 is outside the pool [0, 4)");
  EXPECT_WICK_ERROR(run({{.tokens = bad_id, .past = 0, .blocks = table}}), ErrorKind::bad_input,
                    "token id 999999 is outside the vocabulary");
  EXPECT_WICK_ERROR(run({{.tokens = one, .past = 0, .blocks = table}, {.tokens = five, .past = 0, .blocks = table}}),
                    ErrorKind::bad_input, "sequences 0 and 1 both write pool row 0 (block 0)");
  EXPECT_WICK_ERROR(run({{.tokens = one, .past = -1, .blocks = table}}), ErrorKind::bad_input, "negative past length");
  const std::vector<int32_t> big_table{0, 1, 2, 3};
  const std::vector<int32_t> many(300, 1);
  KVBlockPool big = model->make_block_pool(100, 4);
  std::vector<int32_t> long_table(100);
  std::iota(long_table.begin(), long_table.end(), 0);
  EXPECT_WICK_ERROR(model->forward_paged(big, std::vector<PagedSequence>{{.tokens = many, .past = 0, .blocks = long_table}}),
                    ErrorKind::bad_input, "exceed max_position_embeddings");
  EXPECT_TRUE(same_bits(pool.keys(0), before)) << "a refused batch wrote into the pool";

  auto other_shape = Model::load(fixture("models/tiny-seqcls"));  // 2 layers, tiny-untied 3
  ASSERT_NE(other_shape->config().num_layers, model->config().num_layers);
  KVBlockPool foreign = other_shape->make_block_pool(4, 4);
  EXPECT_WICK_ERROR(model->forward_paged(foreign, std::vector<PagedSequence>{{.tokens = one, .past = 0, .blocks = other}}),
                    ErrorKind::bad_input, "was not made for this model");
  EXPECT_WICK_ERROR(model->make_block_pool(0, 4), ErrorKind::bad_input, "0 blocks of 4 positions");
}

}  // namespace
}  // namespace wick::test

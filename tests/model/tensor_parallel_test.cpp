// Tensor parallelism on the CPU (the reference for the GPUs' NCCL path): a model split over 2 or 4 ranks against the
// same model whole — logits, greedy tokens, adapters (one and mixed), the paged pass and hidden states — and the
// refusals of what cannot be split. The ranks add their partial sums in another order than one device's GEMM does,
// so logits agree to f32 rounding, not bit for bit; the models load with f32 weights (CpuWeights::f32), as the CPU's
// bf16-weight path rounds activations to bf16, where a last-bit difference of a sum can flip a rounding (~4·10⁻³).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

#include "backend/collective.h"
#include "model/training.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/logit_summary.h"
#include "wick/model.h"
#include "wick/random_model.h"

namespace wick::test {
namespace {

std::shared_ptr<const LoraAdapter> tp_adapter(const Model& model, const char* name, uint64_t seed, bool saves = false) {
  LoraConfig config;
  config.r = 4;
  config.lora_alpha = 16;
  config.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  if (saves) config.modules_to_save = {"lm_head", "embed_tokens"};
  return LoraAdapter::random(name, config, model, seed);
}

LoadOptions tp_options(int ranks) { return {.cpu_weights = CpuWeights::f32, .tensor_parallel = ranks}; }

int32_t tp_argmax(const Tensor& logits, int64_t row) {
  const float* p = logits.data<float>() + row * logits.dim(1);
  return int32_t(std::max_element(p, p + logits.dim(1)) - p);
}

// Greedy decoding through a contiguous cache: every step's logits and the ids chosen.
std::pair<std::vector<Tensor>, std::vector<int32_t>> tp_greedy(const Model& model, const std::vector<int32_t>& prompt,
                                                               int steps, const LoraSource* lora) {
  KVCache cache = model.make_cache(int64_t(prompt.size()) + steps + 1);
  std::vector<Tensor> logits{model.forward(std::vector<SequenceInput>{{prompt, &cache}}, {.lora = lora})};
  std::vector<int32_t> ids;
  for (int s = 0; s < steps; ++s) {
    ids.push_back(tp_argmax(logits.back(), 0));
    const std::vector<int32_t> one{ids.back()};
    logits.push_back(model.forward(std::vector<SequenceInput>{{one, &cache}}, {.lora = lora}));
  }
  return {logits, ids};
}

// A random model whose split over two ranks the GPU's fused kernels take (each rank's heads·head_dim, hidden and MLP
// multiples of 32, as the few-row kernels need), with a vocabulary that does not divide by 2.
std::filesystem::path few_row_model() {
  static const std::filesystem::path dir = tp_random_model(
      "tp-few-rows", {.vocab = 501, .hidden = 128, .ffn = 256, .heads = 4, .kv_heads = 2, .head_dim = 32}, DType::bf16,
      11);
  return dir;
}

// The logits of each step of decoding `ids` after `prompt` through a contiguous cache (the prompt's last first).
std::vector<Tensor> tp_forced(const Model& model, const std::vector<int32_t>& prompt, const std::vector<int32_t>& ids) {
  KVCache cache = model.make_cache(int64_t(prompt.size() + ids.size()) + 1);
  std::vector<Tensor> logits{model.forward(std::vector<SequenceInput>{{prompt, &cache}})};
  for (const int32_t id : ids) {
    const std::vector<int32_t> one{id};
    logits.push_back(model.forward(std::vector<SequenceInput>{{one, &cache}}));
  }
  return logits;
}

// A device summary of row `r` of `logits` (a split model's: each rank's slice reduced on its GPU, merged on the host)
// against the host's summary of the same row, within the tolerance of a rerun of the step on the GPU.
void expect_summary_of(const LogitSummary& got, const Tensor& logits, int64_t r, int32_t count,
                       const std::vector<int32_t>& gather, const std::string& where) {
  const int64_t n = logits.dim(1);
  const LogitSummary want =
      summarize_logits(std::span<const float>(logits.data<float>() + r * n, size_t(n)), count, gather);
  ASSERT_EQ(got.ids.size(), want.ids.size()) << where;
  EXPECT_EQ(got.ids[0], want.ids[0]) << where;
  EXPECT_EQ(got.vocab, n) << where;
  EXPECT_NEAR(got.max, want.max, 1e-3 * std::fabs(want.max)) << where;
  EXPECT_NEAR(got.sum_exp, want.sum_exp, 1e-3 * want.sum_exp) << where;
  ASSERT_EQ(got.gathered_ids, want.gathered_ids) << where;
  for (size_t i = 0; i < gather.size(); ++i)
    EXPECT_NEAR(got.gathered[i], want.gathered[i], 1e-3 * std::max(1.0f, std::fabs(want.gathered[i]))) << where;
}

TEST(TensorParallel, TwoRanksGiveTheLogitsOfTheWholeModel) {
  for (const char* name : {"models/tiny-tied", "models/tiny-untied"}) {
    const auto whole = Model::load(fixture(name), tp_options(1));
    const auto split = Model::load(fixture(name), tp_options(2));
    EXPECT_EQ(split->tensor_parallel(), 2);
    const std::vector<std::vector<int32_t>> rows{{5, 17, 42, 99, 103, 250, 77, 12}, {1, 2, 3, 4, 5, 6, 7, 8}};
    const Tensor want = whole->logits(rows), got = split->logits(rows);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(relative_max_error(got, want), 1e-5) << name;
  }
}

TEST(TensorParallel, FourRanksWithAShortLastVocabularySlice) {
  const auto whole = Model::load(four_way_model(), tp_options(1));
  const auto split = Model::load(four_way_model(), tp_options(4));
  const std::vector<std::vector<int32_t>> rows{{0, 250, 251, 500, 750, 999, 1000, 3}};  // ids on every rank
  EXPECT_LE(relative_max_error(split->logits(rows), whole->logits(rows)), 1e-5);
  const auto two = Model::load(four_way_model(), tp_options(2));
  EXPECT_LE(relative_max_error(two->logits(rows), whole->logits(rows)), 1e-5);
}

TEST(TensorParallel, GreedyTokensOver64StepsEqualTheWholeModels) {
  const auto whole = Model::load(fixture("models/tiny-untied"), tp_options(1));
  const auto split = Model::load(fixture("models/tiny-untied"), tp_options(2));
  const std::vector<int32_t> prompt{5, 17, 42, 99};
  const auto [want_logits, want] = tp_greedy(*whole, prompt, 64, nullptr);
  const auto [got_logits, got] = tp_greedy(*split, prompt, 64, nullptr);
  EXPECT_EQ(got, want);
  for (size_t s = 0; s < want_logits.size(); ++s)
    EXPECT_LE(relative_max_error(got_logits[s], want_logits[s]), 1e-5) << "step " << s;
}

TEST(TensorParallel, AnAdapterSplitAsTheBaseGivesTheWholeModelsTokens) {
  const auto whole = Model::load(fixture("models/tiny-untied"), tp_options(1));
  const auto split = Model::load(fixture("models/tiny-untied"), tp_options(2));
  // The same seed, the same factors: one adapter for each model.
  const auto a_whole = tp_adapter(*whole, "a", 3), a_split = tp_adapter(*split, "a", 3);
  const std::vector<int32_t> prompt{9, 8, 7, 6, 5};
  const auto [want_logits, want] = tp_greedy(*whole, prompt, 64, &a_whole->source());
  const auto [got_logits, got] = tp_greedy(*split, prompt, 64, &a_split->source());
  EXPECT_EQ(got, want);
  for (size_t s = 0; s < want_logits.size(); ++s)
    EXPECT_LE(relative_max_error(got_logits[s], want_logits[s]), 1e-5) << "step " << s;
  const auto [base_logits, base] = tp_greedy(*split, prompt, 64, nullptr);
  EXPECT_NE(base, got) << "the adapter changes the output (the test would be vacuous)";
  // An adapter that replaces the embedding and the head (modules_to_save) is split over the vocabulary as they are.
  const auto s_whole = tp_adapter(*whole, "s", 4, true), s_split = tp_adapter(*split, "s", 4, true);
  const std::vector<std::vector<int32_t>> rows{prompt};
  EXPECT_LE(relative_max_error(split->logits(rows, &s_split->source()), whole->logits(rows, &s_whole->source())), 1e-5);
}

TEST(TensorParallel, PagedBatchesOfMixedAdaptersMatchTheWholeModel) {
  const auto whole = Model::load(fixture("models/tiny-untied"), tp_options(1));
  const auto split = Model::load(fixture("models/tiny-untied"), tp_options(2));
  const auto a_whole = tp_adapter(*whole, "a", 1), a_split = tp_adapter(*split, "a", 1);
  const auto b_whole = tp_adapter(*whole, "b", 2), b_split = tp_adapter(*split, "b", 2);
  KVBlockPool whole_pool = whole->make_block_pool(16, 4), split_pool = split->make_block_pool(16, 4);
  EXPECT_EQ(split_pool.shards(), 2);
  const std::vector<std::vector<int32_t>> prompts{{5, 17, 42, 99, 3}, {301, 7, 7}, {2, 300, 11, 12, 13, 14}};
  const std::vector<std::vector<int32_t>> blocks{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}};
  std::vector<int64_t> past(3, 0);
  std::vector<std::vector<int32_t>> next = prompts;
  for (int step = 0; step < 8; ++step) {
    std::vector<PagedSequence> wb, sb;
    const LoraSource* wl[] = {&a_whole->source(), nullptr, &b_whole->source()};
    const LoraSource* sl[] = {&a_split->source(), nullptr, &b_split->source()};
    for (size_t i = 0; i < 3; ++i) {
      wb.push_back({.tokens = next[i], .past = past[i], .blocks = blocks[i], .lora = wl[i]});
      sb.push_back({.tokens = next[i], .past = past[i], .blocks = blocks[i], .lora = sl[i]});
    }
    const Tensor want = whole->forward_paged(whole_pool, wb), got = split->forward_paged(split_pool, sb);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(relative_max_error(got, want), 1e-5) << "step " << step;
    for (size_t i = 0; i < 3; ++i) {
      past[i] += int64_t(next[i].size());
      next[i] = {tp_argmax(want, int64_t(i))};
      EXPECT_EQ(tp_argmax(got, int64_t(i)), next[i][0]) << "sequence " << i << " step " << step;
    }
  }
  // A pool made for the whole model is refused by the split one, and the other way round.
  std::vector<PagedSequence> one{{.tokens = prompts[0], .past = 0, .blocks = blocks[0]}};
  EXPECT_THROW(split->forward_paged(whole_pool, one), Error);
  EXPECT_THROW(whole->forward_paged(split_pool, one), Error);
}

TEST(TensorParallel, HiddenStatesOfASplitModelEqualTheWholeModels) {
  const auto whole = Model::load(fixture("models/tiny-untied"), tp_options(1));
  const auto split = Model::load(fixture("models/tiny-untied"), tp_options(2));
  const std::vector<int32_t> a{5, 17, 42}, b{1, 2, 3, 4, 5};
  const std::vector<std::span<const int32_t>> seqs{a, b};
  EXPECT_LE(relative_max_error(split->hidden_states(seqs), whole->hidden_states(seqs)), 1e-5);
}

TEST(TensorParallel, AClassifiersHeadStaysWholeOnEveryRank) {
  const auto whole = Model::load(fixture("models/tiny-seqcls"), tp_options(1));
  const auto split = Model::load(fixture("models/tiny-seqcls"), tp_options(2));
  const std::vector<std::vector<int32_t>> rows{{5, 17, 42, 99}, {1, 2, 3, 4}};
  const Tensor want = whole->logits(rows), got = split->logits(rows);
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_LE(relative_max_error(got, want), 1e-5);
}

TEST(TensorParallel, CountsThatDoNotDivideAreRefusedByName) {
  // tiny: 6 heads, 2 KV heads.
  EXPECT_WICK_ERROR(Model::load(fixture("models/tiny-untied"), tp_options(4)), ErrorKind::bad_input,
                    "--tensor-parallel 4", "num_attention_heads (6)");
  EXPECT_WICK_ERROR(Model::load(fixture("models/tiny-untied"), tp_options(3)), ErrorKind::bad_input,
                    "--tensor-parallel 3", "num_key_value_heads (2)");
  EXPECT_WICK_ERROR(Model::load(fixture("models/tiny-untied"), tp_options(0)), ErrorKind::bad_input,
                    "--tensor-parallel 0");
}

// Merging an adapter into a split model (each rank's share into its share of the weights, modules_to_save's head and
// embedding slices swapped in) gives the whole model's merged logits and greedy tokens; unmerging puts every rank's
// base tensors back bit for bit.
TEST(TensorParallel, AMergedAdapterGivesTheWholeMergedModelAndUnmergesExactly) {
  const auto whole = Model::load(fixture("models/tiny-untied"), tp_options(1));
  const auto split = Model::load(fixture("models/tiny-untied"), tp_options(2));
  const std::vector<std::vector<int32_t>> rows{{5, 17, 42, 99}, {1, 2, 3, 300}};
  const Tensor before = split->logits(rows);
  for (const bool saves : {false, true}) {
    const auto a_whole = tp_adapter(*whole, "a", 5, saves), a_split = tp_adapter(*split, "a", 5, saves);
    const Tensor unmerged = split->logits(rows, &a_split->source());
    whole->merge_adapter(a_whole);
    split->merge_adapter(a_split);
    EXPECT_EQ(split->merged_lora().get(), &a_split->source());
    const Tensor merged = split->logits(rows);
    EXPECT_LE(relative_max_error(merged, whole->logits(rows)), 1e-5) << (saves ? "saves" : "factors");
    EXPECT_LE(relative_max_error(merged, unmerged), 1e-5) << "merged as the adapter gives unmerged";
    const std::vector<int32_t> prompt{9, 8, 7};
    EXPECT_EQ(tp_greedy(*split, prompt, 16, nullptr).second, tp_greedy(*whole, prompt, 16, nullptr).second);
    whole->unmerge_lora();
    EXPECT_EQ(split->unmerge_lora().get(), &a_split->source());
    EXPECT_LE(relative_max_error(split->logits(rows), before), 0.0) << "unmerged: the base, bit for bit";
  }
}

// A split model's weights, exported, are the whole model's: every share joined back (rows of the column-split
// projections, columns of the row-split ones, the vocabulary slices without their padding), bit for bit; with an
// adapter merged, the whole merged model's (each rank's merge the same sums); the folder loads and runs as the whole.
TEST(TensorParallel, AnExportedSplitModelIsTheWholeModel) {
  for (const char* name : {"models/tiny-untied", "models/tiny-tied", "models/tiny-seqcls"}) {
    const auto whole = Model::load(fixture(name), tp_options(1)), split = Model::load(fixture(name), tp_options(2));
    const auto want = whole->state_dict(), got = split->state_dict();
    ASSERT_EQ(got.size(), want.size()) << name;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].first, want[i].first);
      ASSERT_EQ(got[i].second.shape(), want[i].second.shape()) << got[i].first;
      EXPECT_LE(relative_max_error(got[i].second, want[i].second), 0.0) << name << " " << got[i].first;
    }
  }
  // Four ranks, a vocabulary that does not divide: the last slice's padding dropped.
  const auto want4 = Model::load(four_way_model(), tp_options(1))->state_dict();
  const auto got4 = Model::load(four_way_model(), tp_options(4))->state_dict();
  ASSERT_EQ(got4.size(), want4.size());
  for (size_t i = 0; i < got4.size(); ++i)
    EXPECT_LE(relative_max_error(got4[i].second, want4[i].second), 0.0) << "4 ranks " << got4[i].first;
  const auto whole = Model::load(fixture("models/tiny-untied"), tp_options(1));
  const auto split = Model::load(fixture("models/tiny-untied"), tp_options(2));
  whole->merge_adapter(tp_adapter(*whole, "a", 9));
  split->merge_adapter(tp_adapter(*split, "a", 9));
  const auto want = whole->state_dict(), got = split->state_dict();
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LE(relative_max_error(got[i].second, want[i].second), 1e-6) << "merged " << got[i].first;
  const std::filesystem::path dir = temp_dir("tp-export");
  split->save_pretrained(dir);
  const std::vector<std::vector<int32_t>> rows{{5, 17, 42, 99}};
  EXPECT_LE(relative_max_error(Model::load(dir, tp_options(1))->logits(rows), whole->logits(rows)), 1e-5);
}

TEST(TensorParallel, TrainingASplitModelIsRefusedByName) {
  const auto split = Model::load(fixture("models/tiny-untied"), tp_options(2));
  const auto a = tp_adapter(*split, "a", 1);
  const std::vector<int32_t> ids{5, 17, 42, 99}, labels{5, 17, 42, 99};
  const std::vector<TrainSequence> batch{{ids, labels}};
  EXPECT_WICK_ERROR(ModelTraining::loss(*split, batch, a->source()), ErrorKind::unsupported, "training",
                    "split over 2 devices");
}

// `dir` split over two GPUs (NCCL), or, on a machine with one, both ranks on GPU 0 joined through the host
// (WICK_TP_ONE_GPU; `one_gpu` set).
std::shared_ptr<Model> cuda_split(const std::filesystem::path& dir, bool& one_gpu) {
  const auto load = [&] { return Model::load(dir, {.device = Device::cuda, .tensor_parallel = 2}); };
  one_gpu = false;
  try {
    return load();
  } catch (const Error& e) {
    if (std::string(e.what()).find("does not exist") == std::string::npos) throw;
  }
  one_gpu = true;
  setenv("WICK_TP_ONE_GPU", "1", 1);
  std::shared_ptr<Model> split = load();
  unsetenv("WICK_TP_ONE_GPU");
  return split;
}

// On CUDA: the split model's device code — its share of the weights and KV heads, its slice of the head, an adapter's
// shares — over NCCL where the machine has two GPUs, else with both ranks on GPU 0 joined through the host
// (WICK_TP_ONE_GPU): within bf16 tolerance of the whole model on the GPU, with its greedy tokens.
TEST(TensorParallel, CudaSplitMatchesTheWholeCudaModel) {
  std::shared_ptr<Model> whole;
  try {
    whole = Model::load(fixture("models/tiny-untied"), {.device = Device::cuda});
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  bool one_gpu = false;
  const std::shared_ptr<Model> split = cuda_split(fixture("models/tiny-untied"), one_gpu);
  const auto a_whole = tp_adapter(*whole, "a", 3), a_split = tp_adapter(*split, "a", 3);
  const std::vector<std::vector<int32_t>> rows{{5, 17, 42, 99, 103, 250, 77, 12}, {1, 2, 3, 4, 5, 6, 7, 8}};
  for (const LoraSource* l : {static_cast<const LoraSource*>(nullptr), &a_split->source()}) {
    const Tensor want = whole->logits(rows, l ? &a_whole->source() : nullptr), got = split->logits(rows, l);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(relative_l2_error(got, want), 3e-2) << (l ? "adapter" : "base");
  }
  const std::vector<int32_t> prompt{9, 8, 7, 6, 5};
  // One-token steps with the adapter: the fused one-token kernels, the adapter's shares in the same sums.
  EXPECT_EQ(tp_greedy(*split, prompt, 32, &a_split->source()).second,
            tp_greedy(*whole, prompt, 32, &a_whole->source()).second);
  // The paged pass: a prompt, then one-token steps of two sequences (one with the adapter), which over NCCL replay
  // each rank's recorded step (the all-reduces inside the graphs).
  KVBlockPool pool = split->make_block_pool(16, 4);
  split->record_paged_steps(pool, 2);
  if (one_gpu) EXPECT_EQ(split->paged_graphs_recorded(), 0) << "ranks joined through the host record nothing";
  else EXPECT_GT(split->paged_graphs_recorded(), 0);
  const std::vector<int32_t> other{4, 44, 144};
  const std::vector<std::vector<int32_t>> blocks{{0, 1, 2, 3, 4, 5}, {6, 7, 8, 9, 10, 11}};
  const auto [want_a, ids_a] = tp_greedy(*whole, prompt, 12, &a_whole->source());
  const auto [want_b, ids_b] = tp_greedy(*whole, other, 12, nullptr);
  std::vector<std::vector<int32_t>> next{prompt, other};
  std::vector<int64_t> past{0, 0};
  for (int step = 0; step <= 12; ++step) {
    std::vector<PagedSequence> batch{
        {.tokens = next[0], .past = past[0], .blocks = blocks[0], .lora = &a_split->source()},
        {.tokens = next[1], .past = past[1], .blocks = blocks[1], .lora = nullptr}};
    const Tensor got = split->forward_paged(pool, batch);
    EXPECT_LE(relative_l2_error(got.rows(0, 1), want_a[size_t(step)]), 3e-2) << "step " << step;
    EXPECT_LE(relative_l2_error(got.rows(1, 2), want_b[size_t(step)]), 3e-2) << "step " << step;
    if (step == 12) break;
    for (int i = 0; i < 2; ++i) past[size_t(i)] += int64_t(next[size_t(i)].size());
    next = {{ids_a[size_t(step)]}, {ids_b[size_t(step)]}};  // the whole model's tokens: the contexts stay alike
  }
}

// On CUDA, a split the fused kernels take, against the whole model at every step of its greedy tokens (within bf16
// tolerance): a short prompt through the few-row kernels, one-token steps of a sequence in its own cache through the
// fused one-token kernels (over NCCL each rank's recorded step), and steps of a paged batch of two through the
// few-row kernels — the projections that end a layer's halves adding into the stream in their epilogue (rank 0 its
// part, the others theirs into zeros) before the all-reduce — and their logits read whole (each rank's slice downloaded
// and joined) and as summaries (each slice reduced on its rank's GPU, merged on the host).
TEST(TensorParallel, CudaSplitThroughTheFusedKernelsMatchesTheWholeModel) {
  std::shared_ptr<Model> whole;
  try {
    whole = Model::load(few_row_model(), {.device = Device::cuda});
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  bool one_gpu = false;
  const std::shared_ptr<Model> split = cuda_split(few_row_model(), one_gpu);
  const std::vector<int32_t> prompt{9, 8, 7, 6, 5, 400, 3};
  const auto [want, ids] = tp_greedy(*whole, prompt, 24, nullptr);
  const std::vector<Tensor> got = tp_forced(*split, prompt, ids);
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size(); ++s) EXPECT_LE(relative_l2_error(got[s], want[s]), 3e-2) << "step " << s;
  if (one_gpu) EXPECT_EQ(split->decode_graphs_recorded(), 0) << "ranks joined through the host record nothing";
  else EXPECT_GT(split->decode_graphs_recorded(), 0);
  // The first step read as a summary (what the Generator asks for on a GPU): each rank reduces its slice.
  const std::vector<int32_t> gather{0, 250, 251, 500};  // both ends of both slices
  KVCache cache = split->make_cache(16);
  split->forward(std::vector<SequenceInput>{{prompt, &cache}});
  const std::vector<int32_t> first{ids[0]};
  expect_summary_of(split->forward_summary({first, &cache}, {}, {.count = 8, .gather = gather}).summary, got[1], 0, 8,
                    gather, "forward_summary");

  KVBlockPool pool = split->make_block_pool(32, 4);
  const std::vector<int32_t> other{4, 44, 144, 500};
  const auto [want_b, ids_b] = tp_greedy(*whole, other, 12, nullptr);
  const std::vector<std::vector<int32_t>> blocks{{0, 1, 2, 3, 4, 5, 6, 7}, {8, 9, 10, 11, 12, 13}};
  std::vector<std::vector<int32_t>> next{prompt, other};
  std::vector<int64_t> past{0, 0};
  for (int step = 0; step <= 12; ++step) {
    std::vector<PagedSequence> batch{{.tokens = next[0], .past = past[0], .blocks = blocks[0]},
                                     {.tokens = next[1], .past = past[1], .blocks = blocks[1]}};
    const Tensor logits = split->forward_paged(pool, batch);
    EXPECT_LE(relative_l2_error(logits.rows(0, 1), want[size_t(step)]), 3e-2) << "step " << step;
    EXPECT_LE(relative_l2_error(logits.rows(1, 2), want_b[size_t(step)]), 3e-2) << "step " << step;
    // The same step again, read as summaries (the engine's reads on a GPU): it writes the same keys and values.
    std::vector<Model::RowRead> reads(2);
    for (Model::RowRead& r : reads) r.summary = {.count = 8, .gather = gather};
    const std::vector<Model::SummaryResult> read = split->forward_paged_read(pool, batch, reads);
    for (int64_t i = 0; i < 2; ++i)
      expect_summary_of(read[size_t(i)].summary, logits, i, 8, gather, "paged read, step " + std::to_string(step));
    if (step == 12) break;
    for (int i = 0; i < 2; ++i) past[size_t(i)] += int64_t(next[size_t(i)].size());
    next = {{ids[size_t(step)]}, {ids_b[size_t(step)]}};
  }
}

// A split over more GPUs than the machine has fails at load, naming the GPU, without waiting on the ranks that did
// start (no collective is made before every rank's backend exists).
TEST(TensorParallel, MoreRanksThanGpusIsAClearErrorNotAHang) {
  try {
    Model::load(fixture("models/tiny-untied"), {.device = Device::cuda});
  } catch (const Error& e) {
    GTEST_SKIP() << e.what();
  }
  try {
    Model::load(four_way_model(), {.device = Device::cuda, .tensor_parallel = 4});
    GTEST_SKIP() << "this machine has 4 GPUs or more";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not exist (this machine has"), std::string::npos) << e.what();
  }
}

TEST(HostCollective, SumsAcrossThreadsInRankOrder) {
  constexpr int kRanks = 3;
  const auto c = make_host_collective(kRanks);
  std::vector<Tensor> x;
  for (int r = 0; r < kRanks; ++r) x.push_back(Tensor::from_floats({float(r), 1.0f, 10.0f * float(r), 0.5f}, {4}));
  std::vector<std::thread> threads;
  for (int r = 0; r < kRanks; ++r)
    threads.emplace_back([&, r] { c->all_reduce(x[size_t(r)], r); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < kRanks; ++r)
    EXPECT_EQ(std::vector<float>(x[size_t(r)].data<float>(), x[size_t(r)].data<float>() + 4),
              (std::vector<float>{3.0f, 3.0f, 30.0f, 1.5f}));
}

TEST(HostCollective, AnAbortEndsTheWaitOfTheRanksThatCame) {
  const auto c = make_host_collective(3);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)  // rank 2 never comes
    threads.emplace_back([&, r] {
      Tensor x = Tensor::zeros({4}, DType::f32);
      try {
        c->all_reduce(x, r);
      } catch (const Error& e) {
        if (std::string(e.what()).find("another rank failed") != std::string::npos) ++failed;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  c->abort();
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 2);
}

}  // namespace
}  // namespace wick::test

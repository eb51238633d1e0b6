// The Trainer on a tiny model (CPU): it learns (a memorised set), resumes exactly, continues from an adapter,
// publishes into a live registry, and refuses bad options and mismatched checkpoints before touching anything.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "test_util.h"
#include "wick/generator.h"
#include "wick/safetensors.h"
#include "wick/train.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;

// Sequences of pre-tokenised ids (the tiny model has no tokenizer), one JSON line each.
fs::path write_data(const fs::path& dir, const std::vector<std::vector<int32_t>>& rows) {
  std::string text;
  for (const auto& r : rows) {
    text += "{\"input_ids\": [";
    for (size_t i = 0; i < r.size(); ++i) {
      if (i) text += ',';
      text += std::to_string(r[i]);
    }
    text += "]}\n";
  }
  write_file(dir / "data.jsonl", text);
  return dir / "data.jsonl";
}

std::vector<std::vector<int32_t>> memorisation_rows() {
  // No id below 4: the tiny model's EOS ids (2, 3) are masked while generating with ignore_eos.
  return {{5, 17, 42, 99, 103, 250, 77, 12, 8, 301, 64, 102},
          {9, 14, 120, 33, 47, 200, 18, 5, 71, 300, 11},
          {150, 4, 61, 88, 23, 6, 143, 90, 37, 222}};
}

std::map<std::string, Tensor> read_adapter(const fs::path& dir) {
  const auto f = SafetensorsFile::open(dir / "adapter_model.safetensors");
  std::map<std::string, Tensor> out;
  for (const auto& e : f->entries()) out[e.name] = f->tensor(e.name).to(DType::f32);
  return out;
}

bool bit_equal(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [key, t] : a) {
    const auto it = b.find(key);
    if (it == b.end() || it->second.shape() != t.shape() || std::memcmp(t.raw(), it->second.raw(), t.nbytes()) != 0)
      return false;
  }
  return true;
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model = Model::load(fixture("models/tiny-untied"));
    dir = temp_dir("trainer");
  }
  TrainOptions options(const fs::path& out) const {
    TrainOptions o;
    o.data = dir / "data.jsonl";
    o.out = out;
    o.targets = {"all-linear"};
    o.rank = 8;
    o.lr = 1e-2;
    o.batch_size = 3;
    o.max_grad_norm = 1.0;
    return o;
  }
  std::shared_ptr<Model> model;
  fs::path dir;
};

// The loss falls below a tenth of its start, and the adapter, loaded as any PEFT adapter is, continues each
// memorised sequence greedily from its first two tokens.
TEST_F(TrainerTest, MemorisesASmallSet) {
  const auto rows = memorisation_rows();
  write_data(dir, rows);
  TrainOptions o = options(dir / "out");
  o.steps = 150;
  o.schedule = "constant";
  Trainer trainer(model, nullptr, o);
  trainer.run();
  const auto& h = trainer.history();
  ASSERT_EQ(int64_t(h.size()), 150);
  EXPECT_LT(h.back().loss, 0.1 * h.front().loss) << "first " << h.front().loss << ", last " << h.back().loss;

  const auto adapter = LoraAdapter::load(dir / "out", *model, "memorised");
  model->apply_adapter(adapter);
  const Generator gen(model);
  GenerateParams p{.max_tokens = 8, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  for (const auto& r : rows) {
    const std::vector<int32_t> prompt(r.begin(), r.begin() + 2);
    const GenerateResult g = gen.generate(prompt, p);
    EXPECT_EQ(g.output_ids, std::vector<int32_t>(r.begin() + 2, r.begin() + 10));
  }
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "train_log.csv", "loss.svg"})
    EXPECT_TRUE(fs::exists(dir / "out" / f)) << f;
}

// 10 steps, and 5 + 5 with a checkpoint between: the same adapter bit for bit (shuffled data, a batch that does
// not divide the set, accumulation and a warmed-up cosine schedule, so every piece of state matters).
TEST_F(TrainerTest, ResumeIsExact) {
  auto rows = memorisation_rows();
  rows.push_back({1, 2, 3, 4, 5});
  rows.push_back({6, 7, 8, 9, 10, 11, 12});
  write_data(dir, rows);
  auto opts = [&](const fs::path& out) {
    TrainOptions o = options(out);
    o.steps = 10;
    o.batch_size = 2;
    o.grad_accum = 2;
    o.schedule = "cosine";
    o.warmup_steps = 2;
    o.weight_decay = 0.1;
    o.max_grad_norm = 0.5;
    return o;
  };
  Trainer whole(model, nullptr, opts(dir / "whole"));
  whole.run();

  TrainOptions first = opts(dir / "parts");
  first.checkpoint_every = 5;
  Trainer part(model, nullptr, first);
  part.run([](const StepReport& r) { return r.step < 5; });
  ASSERT_EQ(part.steps_done(), 5);
  ASSERT_TRUE(fs::exists(dir / "parts" / "checkpoint-5" / "trainer_state.json"));

  TrainOptions second = opts(dir / "parts");
  second.resume = dir / "parts" / "checkpoint-5";
  Trainer rest(model, nullptr, second);
  EXPECT_EQ(rest.steps_done(), 5);
  rest.run();
  EXPECT_TRUE(bit_equal(read_adapter(dir / "whole"), read_adapter(dir / "parts")));
  ASSERT_EQ(rest.history().size(), whole.history().size());
  for (size_t i = 0; i < whole.history().size(); ++i) EXPECT_EQ(rest.history()[i].loss, whole.history()[i].loss);
}

TEST_F(TrainerTest, ResumeRefusesAnotherAdapterShapeModelOrData) {
  write_data(dir, memorisation_rows());
  TrainOptions o = options(dir / "out");
  o.steps = 1;
  o.checkpoint_every = 1;
  Trainer(model, nullptr, o).run();
  const fs::path ck = dir / "out" / "checkpoint-1";

  TrainOptions rank = options(dir / "out2");
  rank.resume = ck;
  rank.rank = 4;
  EXPECT_WICK_ERROR(Trainer(model, nullptr, rank), ErrorKind::bad_input, "--resume", "another shape");

  const auto tied = Model::load(fixture("models/tiny-tied"));
  TrainOptions other = options(dir / "out2");
  other.resume = ck;
  EXPECT_WICK_ERROR(Trainer(tied, nullptr, other), ErrorKind::bad_input, "--resume", "another model");

  write_data(dir, {{1, 2, 3, 4}});
  TrainOptions data = options(dir / "out2");
  data.resume = ck;
  EXPECT_WICK_ERROR(Trainer(model, nullptr, data), ErrorKind::bad_input, "--resume", "other data");
  EXPECT_FALSE(fs::exists(dir / "out2" / "adapter_model.safetensors"));
}

// Training continues from an adapter folder: its factors are the start, its shape wins over --rank.
TEST_F(TrainerTest, ContinuesFromAnAdapter) {
  write_data(dir, memorisation_rows());
  TrainOptions o = options(dir / "a");
  o.steps = 3;
  Trainer(model, nullptr, o).run();
  TrainOptions more = options(dir / "b");
  more.init_adapter = dir / "a";
  more.rank = 2;
  more.steps = 1;
  Trainer next(model, nullptr, more);
  EXPECT_TRUE(bit_equal(next.tensors(), read_adapter(dir / "a")));
  EXPECT_EQ(next.tensors().begin()->second.dim(0), 8) << "the adapter's rank, not --rank";
}

TEST_F(TrainerTest, EvalLossIsTheMeanOverTargetTokens) {
  write_data(dir, memorisation_rows());
  write_file(dir / "eval.jsonl", "{\"input_ids\": [5, 17, 42, 99]}\n{\"input_ids\": [1, 2, 3], \"labels\": [1, -100, 3]}\n");
  TrainOptions o = options(dir / "out");
  o.steps = 2;
  o.eval_data = dir / "eval.jsonl";
  o.eval_every = 1;
  Trainer trainer(model, nullptr, o);
  trainer.run();
  ASSERT_TRUE(trainer.history()[0].eval_loss && trainer.history()[1].eval_loss);
  // The same mean from logits: −log softmax at each target (3 + 1 of them).
  const auto adapter = trainer.adapter();
  const Tensor a = model->logits({{5, 17, 42, 99}}, &adapter->source()), b = model->logits({{1, 2, 3}}, &adapter->source());
  auto nll = [](const Tensor& logits, int64_t row, int32_t target) {
    const int64_t v = logits.dim(2);
    const float* l = logits.data<float>() + row * v;
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < v; ++i) mx = std::max(mx, double(l[i]));
    for (int64_t i = 0; i < v; ++i) sum += std::exp(double(l[i]) - mx);
    return mx + std::log(sum) - l[target];
  };
  const double want = (nll(a, 0, 17) + nll(a, 1, 42) + nll(a, 2, 99) + nll(b, 1, 3)) / 4;
  EXPECT_NEAR(*trainer.history()[1].eval_loss, want, 1e-5 * want);
  EXPECT_NEAR(trainer.evaluate(), want, 1e-5 * want);
}

TEST_F(TrainerTest, BadOptionsNameTheirFlagAndWriteNothing) {
  write_data(dir, memorisation_rows());
  const fs::path out = dir / "never";
  auto expect_bad = [&](auto change, const char* flag) {
    TrainOptions o = options(out);
    change(o);
    EXPECT_WICK_ERROR(Trainer(model, nullptr, o), ErrorKind::bad_input, flag);
  };
  expect_bad([](TrainOptions& o) { o.rank = 0; }, "--rank");
  expect_bad([](TrainOptions& o) { o.lr = 0; }, "--lr");
  expect_bad([](TrainOptions& o) { o.lr = -1e-3; }, "--lr");
  expect_bad([](TrainOptions& o) { o.targets = {"q_proj", "foo_proj"}; }, "--targets");
  expect_bad([](TrainOptions& o) { o.batch_size = 0; }, "--batch-size");
  expect_bad([](TrainOptions& o) { o.grad_accum = 0; }, "--grad-accum");
  expect_bad([](TrainOptions& o) { o.max_grad_norm = -1; }, "--max-grad-norm");
  expect_bad([](TrainOptions& o) { o.betas = {0.9, 1.0}; }, "--betas");
  expect_bad([](TrainOptions& o) { o.schedule = "step"; }, "--schedule");
  expect_bad([](TrainOptions& o) { o.warmup_ratio = 1.5; }, "--warmup");
  expect_bad([](TrainOptions& o) { o.eval_every = 5; }, "--eval-every");
  expect_bad([](TrainOptions& o) { o.layers = {7}; }, "layers_to_transform");
  EXPECT_FALSE(fs::exists(out)) << "nothing is created before the options and data are checked";

  TrainOptions file = options(dir / "data.jsonl");  // --out is a file
  EXPECT_WICK_ERROR(Trainer(model, nullptr, file), ErrorKind::bad_input, "--out", "not a folder");
  TrainOptions ro = options("/proc/wick-train-out");
  EXPECT_WICK_ERROR(Trainer(model, nullptr, ro), ErrorKind::bad_input, "--out");
}

TEST_F(TrainerTest, BadDataNamesTheFileAndLine) {
  const fs::path out = dir / "never";
  TrainOptions o = options(out);
  write_file(dir / "data.jsonl", "{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 2\n");
  EXPECT_WICK_ERROR(Trainer(model, nullptr, o), ErrorKind::corrupt, "data.jsonl", "line 2");
  write_file(dir / "data.jsonl", "\n\n");
  EXPECT_WICK_ERROR(Trainer(model, nullptr, o), ErrorKind::bad_input, "data.jsonl", "no examples");
  write_file(dir / "data.jsonl", "{\"input_ids\": [1, 2, 3], \"labels\": [1, -100, -100]}\n");
  EXPECT_WICK_ERROR(Trainer(model, nullptr, o), ErrorKind::bad_input, "line 1", "no target tokens");
  write_file(dir / "data.jsonl", "{\"text\": \"hello\"}\n");
  EXPECT_WICK_ERROR(Trainer(model, nullptr, o), ErrorKind::bad_input, "line 1", "tokenizer");
  EXPECT_FALSE(fs::exists(out));
}

// A trained adapter published while a generation runs: the generation finishes with the version it started with
// (its output equals that version's alone), and the next request gets the new version. Runs under TSan in CI.
TEST_F(TrainerTest, PublishReachesOnlyNewRequests) {
  write_data(dir, memorisation_rows());
  TrainOptions o = options(dir / "out");
  o.steps = 4;
  Trainer trainer(model, nullptr, o);
  auto registry = std::make_shared<AdapterRegistry>(model);
  trainer.step();
  trainer.publish(*registry, "live");
  registry->activate("live");
  const auto v1 = registry->get("live");
  const Generator gen(model);
  const GenerateParams p{.max_tokens = 24, .ignore_eos = true, .sampling = SamplingParams::greedy_params()};
  const std::vector<int32_t> prompt{5, 17, 42};
  const std::vector<int32_t> v1_alone = gen.generate(prompt, p).output_ids;

  std::atomic<int> started{0};
  std::vector<std::vector<int32_t>> outputs(8);
  std::thread requests([&] {
    for (auto& out : outputs) {
      ++started;
      out = gen.generate(prompt, p).output_ids;
    }
  });
  while (started.load() == 0) std::this_thread::yield();
  trainer.step();
  trainer.step();
  trainer.publish(*registry, "live");  // replaces v1 while requests run
  requests.join();
  const auto v2 = registry->get("live");
  ASSERT_NE(v1, v2);
  EXPECT_EQ(model->current_adapter(), v2) << "the new version took the old one's place in effect";
  const std::vector<int32_t> v2_alone = gen.generate(prompt, p).output_ids;
  ASSERT_NE(v1_alone, v2_alone) << "two steps must change the greedy output for this test to mean anything";
  for (const auto& out : outputs) EXPECT_TRUE(out == v1_alone || out == v2_alone) << "a request mixed versions";
  EXPECT_EQ(registry->list().size(), 1u);
}

}  // namespace
}  // namespace wick::test

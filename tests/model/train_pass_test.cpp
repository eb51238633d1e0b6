// The training lowering on whole tiny models: every LoRA gradient (and a trained head's) of a training pass against
// finite differences of the pass's own loss; recomputation (gradient checkpointing) against keeping every
// activation; bad batches. The per-op twins have their own finite-difference tests (tests/backend); the numbers
// against PEFT are in tests/train.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <utility>
#include <vector>

#include "cpu_paths.h"
#include "model/training.h"
#include "model/weights.h"
#include "model_test_util.h"
#include "test_util.h"
#include "wick/model.h"

namespace wick::test {
namespace {

// Factors on every projection of every layer (and a replacement head when asked), held by the test so it can
// perturb them.
class TestLora final : public LoraSource {
 public:
  TestLora(const ModelConfig& c, int64_t rank, std::mt19937& rng, const Tensor* head) {
    for (int l = 0; l < c.num_layers; ++l)
      for (int k = 0; k < kProjKinds; ++k) {
        const Shape w = proj_shape(c, ProjKind(k));
        factors_[{l, k}] = {.a = random_normal({rank, w[1]}, rng, 0.3f), .b = random_normal({w[0], rank}, rng, 0.3f),
                            .scale = 1.5f};
      }
    if (head) head_ = head->clone();
  }
  const LoraFactors* factors(int layer, ProjKind kind) const override {
    auto it = factors_.find({layer, int(kind)});
    return it == factors_.end() ? nullptr : &it->second;
  }
  const Tensor* head() const override { return head_.defined() ? &head_ : nullptr; }

  std::map<std::pair<int, int>, LoraFactors> factors_;
  Tensor head_;
};

LoraGradients zero_grads(const ModelConfig& c, const TestLora& lora) {
  LoraGradients g;
  g.slots.resize(size_t(c.num_layers * kProjKinds));
  for (const auto& [key, f] : lora.factors_)
    g.slots[size_t(lora_slot(key.first, ProjKind(key.second)))] = {.a = Tensor::zeros(f.a.shape(), DType::f32),
                                                                   .b = Tensor::zeros(f.b.shape(), DType::f32)};
  if (lora.head_.defined()) g.head = Tensor::zeros(lora.head_.shape(), DType::f32);
  return g;
}

struct Batch {
  std::vector<std::vector<int32_t>> ids, labels;
  std::vector<TrainSequence> view() const {
    std::vector<TrainSequence> v;
    for (size_t i = 0; i < ids.size(); ++i) v.push_back({ids[i], labels[i]});
    return v;
  }
};

// Three sequences of different lengths; a causal LM's labels are the ids with some masked, a classifier's a class.
Batch make_batch(const ModelConfig& c, std::mt19937& rng) {
  Batch b;
  for (int64_t n : {5, 9, 3}) {
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t(rng() % uint32_t(c.vocab_size)));
    std::vector<int32_t> labels = ids;
    if (c.head == ModelHead::sequence_classification) labels = {int32_t(rng() % uint32_t(c.num_labels))};
    else labels[1] = -100;  // masked: no loss on predicting token 1
    b.ids.push_back(ids);
    b.labels.push_back(labels);
  }
  return b;
}

class TrainPass : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    model = Model::load(fixture(std::string("models/") + GetParam()));
    std::mt19937 rng(11);
    const ModelConfig& c = model->config();
    classify = c.head == ModelHead::sequence_classification;
    Tensor score;
    for (auto& [name, t] : model->state_dict())
      if (name == "score.weight") score = t;
    lora = std::make_unique<TestLora>(c, 3, rng, classify ? &score : nullptr);
    batch = make_batch(c, rng);
  }
  double loss(const TrainOpsOptions& o = {}) {
    LoraGradients g = zero_grads(model->config(), *lora);
    const std::vector<TrainSequence> v = batch.view();
    return ModelTraining::train_pass(*model, v, *lora, g, o);
  }
  void check_gradients(const TrainOpsOptions& base);
  std::shared_ptr<Model> model;
  std::unique_ptr<TestLora> lora;
  Batch batch;
  bool classify = false;
};

// Central differences of the pass's loss (f32 forward with f32 products, summed in double) at a few elements of
// every trained tensor, against the backward's gradient. The step trades truncation (~1 % where the loss curves most) against f32
// rounding (~1e-3 of the largest gradient); a missing or wrong term (a dropped residual path, an unrotated
// gradient) is off by far more.
TEST_P(TrainPass, GradientsMatchFiniteDifferences) { check_gradients({}); }

// With LoRA dropout the masks are a function of the seed: the loss is a fixed function of the factors again.
TEST_P(TrainPass, GradientsMatchFiniteDifferencesWithDropout) {
  check_gradients({.lora_dropout = 0.3f, .dropout_seed = 77});
}

void TrainPass::check_gradients(const TrainOpsOptions& base) {
  const F32CpuProducts exact;  // bf16-rounded activations would be noise far above the differences' own
  const float scale = 0.5f;
  TrainOpsOptions o = base;
  o.loss_scale = scale;
  o.loss_chunk_rows = 4;
  LoraGradients g = zero_grads(model->config(), *lora);
  const std::vector<TrainSequence> v = batch.view();
  const double l0 = ModelTraining::train_pass(*model, v, *lora, g, o);
  EXPECT_TRUE(std::isfinite(l0) && l0 > 0) << l0;
  std::mt19937 pick(3);
  struct Sample {
    std::string what;
    double got, fd;
  };
  std::vector<Sample> samples;
  auto check = [&](Tensor& t, const Tensor& grad, const std::string& what) {
    for (int i = 0; i < 3; ++i) {
      const int64_t e = int64_t(pick() % uint32_t(t.numel()));
      float& x = t.data<float>()[e];
      const float x0 = x, h = 2.5e-3f;
      x = x0 + h;
      const double up = loss(base);
      x = x0 - h;
      const double down = loss(base);
      x = x0;
      samples.push_back({what + "[" + std::to_string(e) + "]", grad.data<float>()[e],
                         scale * (up - down) / (double(x0 + h) - double(x0 - h))});
    }
  };
  for (auto& [key, f] : lora->factors_) {
    const LoraGrads& lg = g.slots[size_t(lora_slot(key.first, ProjKind(key.second)))];
    const std::string name = "layer " + std::to_string(key.first) + " " + proj_path(ProjKind(key.second));
    check(f.a, lg.a, name + " A");
    check(f.b, lg.b, name + " B");
  }
  if (classify) check(lora->head_, g.head, "score");
  double num = 0, den = 0, largest = 0;
  for (const Sample& s : samples) largest = std::max(largest, std::fabs(s.fd));
  for (const Sample& s : samples) {
    num += (s.got - s.fd) * (s.got - s.fd);
    den += s.fd * s.fd;
    EXPECT_NEAR(s.got, s.fd, 2e-2 * std::fabs(s.fd) + 1e-3 * largest) << s.what;
  }
  EXPECT_LT(std::sqrt(num / den), 1e-2) << "relative L2 error over every sampled element";
}

TEST_P(TrainPass, RecomputingEachLayerGivesTheSameGradients) {
  LoraGradients kept = zero_grads(model->config(), *lora), recomputed = zero_grads(model->config(), *lora);
  const std::vector<TrainSequence> v = batch.view();
  const double a = ModelTraining::train_pass(*model, v, *lora, kept, {});
  const double b = ModelTraining::train_pass(*model, v, *lora, recomputed, {.recompute = true});
  LoraGradients dropped = zero_grads(model->config(), *lora), dropped_again = zero_grads(model->config(), *lora);
  const double c = ModelTraining::train_pass(*model, v, *lora, dropped, {.lora_dropout = 0.2f, .dropout_seed = 5});
  const double d = ModelTraining::train_pass(*model, v, *lora, dropped_again,
                                             {.recompute = true, .lora_dropout = 0.2f, .dropout_seed = 5});
  EXPECT_EQ(c, d) << "a recomputed layer draws the same dropout masks";
  EXPECT_NE(a, c) << "dropout changes the loss";
  for (size_t s = 0; s < dropped.slots.size(); ++s)
    for (int64_t i = 0; i < dropped.slots[s].a.numel(); ++i)
      ASSERT_EQ(dropped.slots[s].a.data<float>()[i], dropped_again.slots[s].a.data<float>()[i]) << "slot " << s;
  EXPECT_EQ(a, b);
  for (size_t s = 0; s < kept.slots.size(); ++s)
    for (auto [x, y] : {std::pair{&kept.slots[s].a, &recomputed.slots[s].a}, {&kept.slots[s].b, &recomputed.slots[s].b}})
      for (int64_t i = 0; i < x->numel(); ++i)
        ASSERT_EQ(x->data<float>()[i], y->data<float>()[i]) << "slot " << s << " element " << i;
}

TEST_P(TrainPass, GradientsAccumulateAcrossPasses) {
  LoraGradients once = zero_grads(model->config(), *lora), twice = zero_grads(model->config(), *lora);
  const std::vector<TrainSequence> v = batch.view();
  ModelTraining::train_pass(*model, v, *lora, once, {});
  ModelTraining::train_pass(*model, v, *lora, twice, {});
  ModelTraining::train_pass(*model, v, *lora, twice, {});
  const LoraGrads& a = once.slots[0];
  const LoraGrads& b = twice.slots[0];
  for (int64_t i = 0; i < a.a.numel(); ++i) EXPECT_FLOAT_EQ(b.a.data<float>()[i], 2 * a.a.data<float>()[i]);
}

TEST_P(TrainPass, BadBatchesAreRejectedBeforeAnyWork) {
  LoraGradients g = zero_grads(model->config(), *lora);
  const int32_t vocab = int32_t(model->config().vocab_size);
  const std::vector<int32_t> ids{1, 2, 3}, bad_ids{1, vocab, 3};
  const std::vector<int32_t> labels = classify ? std::vector<int32_t>{0} : ids;
  const std::vector<int32_t> bad_label = classify ? std::vector<int32_t>{int32_t(model->config().num_labels)}
                                                  : std::vector<int32_t>{1, 2, vocab + 5};
  const std::vector<TrainSequence> id_outside{{ids, labels}, {bad_ids, labels}};
  EXPECT_WICK_ERROR(ModelTraining::train_pass(*model, id_outside, *lora, g, {}), ErrorKind::bad_input, "sequence 1",
                    "token id");
  const std::vector<TrainSequence> label_outside{{ids, bad_label}};
  EXPECT_WICK_ERROR(ModelTraining::train_pass(*model, label_outside, *lora, g, {}), ErrorKind::bad_input,
                    "sequence 0", "label");
  const std::vector<int32_t> two{0, 1};
  const std::vector<TrainSequence> miscounted{{ids, std::span<const int32_t>(two).first(classify ? 2 : 1)}};
  EXPECT_WICK_ERROR(ModelTraining::train_pass(*model, miscounted, *lora, g, {}), ErrorKind::bad_input, "labels");
  EXPECT_WICK_ERROR(ModelTraining::train_pass(*model, {}, *lora, g, {}), ErrorKind::bad_input, "empty batch");
  for (const LoraGrads& s : g.slots)
    for (int64_t i = 0; i < s.a.numel(); ++i) ASSERT_EQ(s.a.data<float>()[i], 0.0f) << "nothing was accumulated";
}

// LoRA training on an 8-bit base (QLoRA-like): the loss and every gradient are those of the f32 model of the base's
// dequantised weights — the same loss bit for bit (the forward sums as f32 does), gradients within f32 summation
// order (d_out·W widens the 8-bit W a panel of rows at a time) — and finite differences hold as on any base.
TEST_P(TrainPass, AnInt8BaseGivesItsDequantisedModelsLossAndGradients) {
  model = Model::load(fixture(std::string("models/") + GetParam()), {.cpu_weights = CpuWeights::int8});
  ASSERT_EQ(model->weight_dtype(), DType::q8_0);
  const auto f32 = f32_copy(*model);
  const std::vector<TrainSequence> v = batch.view();
  LoraGradients g8 = zero_grads(model->config(), *lora), g32 = zero_grads(model->config(), *lora);
  EXPECT_EQ(ModelTraining::train_pass(*model, v, *lora, g8, {}), ModelTraining::train_pass(*f32, v, *lora, g32, {}));
  for (size_t s = 0; s < g8.slots.size(); ++s)
    for (auto [x, y] : {std::pair{&g8.slots[s].a, &g32.slots[s].a}, {&g8.slots[s].b, &g32.slots[s].b}})
      EXPECT_LE(relative_l2_error(*x, *y), 1e-5) << "slot " << s;
  check_gradients({});
}

INSTANTIATE_TEST_SUITE_P(TinyModels, TrainPass, ::testing::Values("tiny-untied", "tiny-tied", "tiny-seqcls"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

}  // namespace
}  // namespace wick::test

// Schedules, AdamW and gradient clipping against torch / transformers themselves
// (tests/fixtures/train/optim_reference.safetensors, made by scripts/make_train_fixtures.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

// prefix + i (built by appends: gcc 12's -Wrestrict misfires on "literal" + std::string&&).
std::string with_index(std::string prefix, size_t i) {
  prefix += std::to_string(i);
  return prefix;
}

constexpr double kLrTolerance = 1e-7;     // relative
constexpr double kTensorTolerance = 1e-6;  // relative to the reference tensor's largest magnitude
const std::vector<Shape> kShapes{{4, 6}, {6}, {3, 5}};

class OptimReference : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto path = fixture("train/optim_reference.safetensors");
    if (!std::filesystem::exists(path))
      FAIL() << path.string() << " is missing: make it with torch 2.11 + transformers 5.17, from the repository "
             << "root: python3 scripts/make_train_fixtures.py --out tests/fixtures/train";
    if (!file_) file_ = SafetensorsFile::open(path);
  }
  static Tensor tensor(const std::string& name) { return file_->tensor(name); }
  // An f64 list stored as f32 hi + lo.
  static std::vector<double> lrs(const std::string& name) {
    const Tensor hi = tensor(name + ".hi"), lo = tensor(name + ".lo");
    std::vector<double> out;
    for (int64_t i = 0; i < hi.numel(); ++i) out.push_back(double(hi.data<float>()[i]) + lo.data<float>()[i]);
    return out;
  }
  static inline std::shared_ptr<const SafetensorsFile> file_;
};

void expect_lrs(const ScheduleConfig& c, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(int64_t(want.size()), c.total_steps) << what;
  for (int64_t k = 0; k < c.total_steps; ++k)
    EXPECT_LE(std::abs(lr_at(c, k) - want[size_t(k)]), kLrTolerance * std::abs(want[size_t(k)]))
        << what << " step " << k << ": wick " << lr_at(c, k) << ", transformers " << want[size_t(k)];
}

void expect_close(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  double scale = 0, worst = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    scale = std::max(scale, double(std::abs(want.data<float>()[i])));
    worst = std::max(worst, double(std::abs(got.data<float>()[i] - want.data<float>()[i])));
  }
  EXPECT_LE(worst, kTensorTolerance * scale) << what << ": largest difference " << worst << " of " << scale;
}

TEST_F(OptimReference, SchedulesMatchTransformers) {
  EXPECT_EQ(tensor("sched.r0.1.warmup_steps").data<int32_t>()[0], 2);  // ceil(0.1 · 20)
  for (const char* kind : {"constant", "constant_with_warmup", "linear", "cosine"}) {
    ScheduleConfig c{.kind = parse_schedule_kind(kind), .base_lr = 1e-3, .total_steps = 20};
    expect_lrs(c, lrs(std::string("sched.") + kind + ".w0.lr"), std::string(kind) + " w0");
    c.warmup_steps = 3;
    expect_lrs(c, lrs(std::string("sched.") + kind + ".w3.lr"), std::string(kind) + " w3");
    c.warmup_steps = 0;
    c.warmup_ratio = 0.1;
    expect_lrs(c, lrs(std::string("sched.") + kind + ".r0.1.lr"), std::string(kind) + " r0.1");
  }
}

struct AdamWCase {
  std::string name;
  AdamWConfig config;
  ScheduleConfig schedule;
};

TEST_F(OptimReference, AdamWMatchesTorch) {
  const std::vector<AdamWCase> cases{
      {"a", {.betas = {0.9, 0.999}, .eps = 1e-8, .weight_decay = 0.01},
       {.kind = ScheduleKind::linear, .base_lr = 1e-3, .warmup_steps = 2, .total_steps = 5}},
      {"b", {.betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = 0.1},
       {.kind = ScheduleKind::constant, .base_lr = 5e-3, .total_steps = 5}}};
  for (const AdamWCase& c : cases) {
    expect_lrs(c.schedule, lrs("adamw." + c.name + ".lr"), "adamw " + c.name);
    std::vector<Param> params;
    for (size_t i = 0; i < kShapes.size(); ++i)
      params.push_back({.name = with_index("p", i), .value = tensor(with_index("adamw.init.p", i)).clone()});
    AdamW opt(c.config);
    for (int k = 0; k < 5; ++k) {
      const std::string step = with_index(".s", k);
      for (Param& p : params) p.grad = tensor("adamw.grad" + step + "." + p.name).clone();
      opt.step(params, lr_at(c.schedule, k));
      for (const Param& p : params) expect_close(p.value, tensor("adamw." + c.name + step + "." + p.name),
                                                 "adamw " + c.name + with_index(" step ", k) + " " + p.name);
    }
  }
}

TEST_F(OptimReference, ClipGradNormMatchesTorch) {
  for (const char* tag : {"0.5", "1e9"}) {
    std::vector<Param> params;
    for (size_t i = 0; i < kShapes.size(); ++i)
      params.push_back({.name = with_index("p", i), .value = Tensor::zeros(kShapes[i], DType::f32),
                        .grad = tensor(with_index("clip.grad.p", i)).clone()});
    const float total = clip_grad_norm(params, std::stod(tag));
    const float want = tensor(std::string("clip.max") + tag + ".total").data<float>()[0];
    EXPECT_NEAR(total, want, kTensorTolerance * want) << "max_norm " << tag;
    for (const Param& p : params)
      expect_close(p.grad, tensor(std::string("clip.max") + tag + "." + p.name), std::string("clip ") + tag + " " + p.name);
  }
}

}  // namespace
}  // namespace wick::test

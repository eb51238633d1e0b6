// AdamW and gradient clipping without the PyTorch fixture: validation, checkpoint state, clipping off,
// and properties that hold whatever the rounding. (torch's numbers: optim_reference_test.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "test_util.h"
#include "train/optimizer.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<Param> make_params(std::mt19937& rng) {
  std::vector<Param> params;
  int i = 0;
  for (const Shape& s : {Shape{4, 6}, Shape{6}, Shape{3, 5}})
    params.push_back({.name = "p" + std::to_string(i++), .value = random_normal(s, rng, 0.5f),
                      .grad = Tensor::zeros(s, DType::f32)});
  return params;
}

// Fills every grad with fresh values drawn from `rng` (the same sequence for runs seeded alike).
void draw_grads(std::vector<Param>& params, std::mt19937& rng) {
  for (Param& p : params) p.grad = random_normal(p.value.shape(), rng, 0.1f);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(AdamW, RejectsBadFlags) {
  for (std::array<double, 2> betas : std::initializer_list<std::array<double, 2>>{{1.0, 0.999}, {0.9, 1.0}, {-0.1, 0.9}, {0.9, kNaN}})
    EXPECT_WICK_ERROR(AdamW({.betas = betas}), ErrorKind::bad_input, "--betas");
  for (double eps : {0.0, -1e-8, kNaN}) EXPECT_WICK_ERROR(AdamW({.eps = eps}), ErrorKind::bad_input, "--eps");
  for (double wd : {-0.01, kNaN})
    EXPECT_WICK_ERROR(AdamW({.weight_decay = wd}), ErrorKind::bad_input, "--weight-decay");
  EXPECT_NO_THROW(AdamW({.betas = {0.0, 0.0}, .weight_decay = 0.0}));

  std::mt19937 rng(1);
  auto params = make_params(rng);
  AdamW opt({});
  for (double lr : {-1e-3, kNaN, std::numeric_limits<double>::infinity()})
    EXPECT_WICK_ERROR(opt.step(params, lr), ErrorKind::bad_input, "--lr");
}

TEST(AdamW, ReportsEveryBadParamAndUpdatesNothing) {
  std::mt19937 rng(2);
  auto params = make_params(rng);
  const Tensor before = params[0].value.clone();
  params[1].grad = Tensor::zeros({7}, DType::f32);
  params[2].name = "p0";
  AdamW opt({});
  EXPECT_WICK_ERROR(opt.step(params, 1e-3), ErrorKind::bad_input, "'p1': grad has shape [7], value [6]",
                    "'p0': named twice");
  EXPECT_TRUE(bitwise_equal(params[0].value, before));
  EXPECT_TRUE(opt.state().steps.empty());
}

// Adam's first step with no weight decay moves every coordinate by lr·g/(|g| + eps'): sign descent.
TEST(AdamW, FirstStepIsSignDescent) {
  std::mt19937 rng(3);
  auto params = make_params(rng);
  draw_grads(params, rng);
  std::vector<Tensor> before;
  for (const Param& p : params) before.push_back(p.value.clone());
  AdamW opt({.weight_decay = 0.0});
  opt.step(params, 1e-2);
  for (size_t i = 0; i < params.size(); ++i)
    for (int64_t j = 0; j < params[i].value.numel(); ++j) {
      const float g = params[i].grad.data<float>()[j];
      const double moved = double(params[i].value.data<float>()[j]) - before[i].data<float>()[j];
      EXPECT_NEAR(moved, -1e-2 * (g > 0 ? 1 : -1), 1e-2 * 1e-5) << params[i].name << "[" << j << "]";
    }
}

// lr 0 (a warmup's first step) leaves the values alone but still counts the step and fills the moments.
TEST(AdamW, ZeroLearningRateOnlyAdvancesState) {
  std::mt19937 rng(4);
  auto params = make_params(rng);
  draw_grads(params, rng);
  const Tensor before = params[0].value.clone();
  AdamW opt({.weight_decay = 0.1});
  opt.step(params, 0.0);
  EXPECT_TRUE(bitwise_equal(params[0].value, before));
  const AdamWState s = opt.state();
  EXPECT_EQ(s.steps.at("p0"), 1);
  EXPECT_EQ(s.tensors.size(), 6u);
  EXPECT_NE(s.tensors.at("p0.exp_avg").data<float>()[0], 0.0f);
}

// Checkpoint: 2 steps, state written to a safetensors file and loaded into a fresh optimizer, 3 more
// steps: bitwise the uninterrupted 5-step run.
TEST(AdamW, StateRoundTripContinuesBitwise) {
  const AdamWConfig config{.betas = {0.8, 0.95}, .eps = 1e-6, .weight_decay = 0.1};
  std::mt19937 rng_a(5), rng_b(5);
  auto run = make_params(rng_a);
  auto resumed = make_params(rng_b);
  AdamW uninterrupted(config);
  for (int k = 0; k < 5; ++k) {
    draw_grads(run, rng_a);
    uninterrupted.step(run, 1e-3 * (k + 1));
  }

  AdamW first(config);
  for (int k = 0; k < 2; ++k) {
    draw_grads(resumed, rng_b);
    first.step(resumed, 1e-3 * (k + 1));
  }
  const AdamWState saved = first.state();
  std::vector<std::pair<std::string, Tensor>> tensors(saved.tensors.begin(), saved.tensors.end());
  std::map<std::string, std::string> steps;
  for (const auto& [name, n] : saved.steps) steps[name] = std::to_string(n);
  const auto path = temp_dir("adamw") / "optimizer.safetensors";
  write_safetensors(path, tensors, steps);

  const auto file = SafetensorsFile::open(path);
  AdamWState loaded;
  for (const auto& e : file->entries()) loaded.tensors[e.name] = file->tensor(e.name);
  for (const auto& [name, n] : file->metadata()) loaded.steps[name] = std::stoll(n);
  AdamW second(config);
  second.load_state(loaded);
  for (int k = 2; k < 5; ++k) {
    draw_grads(resumed, rng_b);
    second.step(resumed, 1e-3 * (k + 1));
  }
  const AdamWState a = uninterrupted.state(), b = second.state();
  EXPECT_EQ(a.steps, b.steps);
  for (size_t i = 0; i < run.size(); ++i) EXPECT_TRUE(bitwise_equal(run[i].value, resumed[i].value)) << run[i].name;
  for (const auto& [key, t] : a.tensors) EXPECT_TRUE(bitwise_equal(t, b.tensors.at(key))) << key;
}

TEST(AdamW, LoadStateChecksTheWholeState) {
  AdamWState s;
  s.steps = {{"a", 2}, {"b", 0}, {"c", 1}};
  s.tensors["a.exp_avg"] = Tensor::zeros({2, 3}, DType::f32);
  s.tensors["a.exp_avg_sq"] = Tensor::zeros({3, 2}, DType::f32);
  s.tensors["b.exp_avg"] = Tensor::zeros({4}, DType::f32);
  s.tensors["b.exp_avg_sq"] = Tensor::zeros({4}, DType::f32);
  s.tensors["c.exp_avg"] = Tensor::zeros({4}, DType::f32);
  s.tensors["d.exp_avg"] = Tensor::zeros({4}, DType::f32);
  s.tensors["e.momentum"] = Tensor::zeros({4}, DType::f32);
  AdamW opt({});
  EXPECT_WICK_ERROR(opt.load_state(s), ErrorKind::corrupt, "'a': exp_avg has shape [2, 3], exp_avg_sq [3, 2]",
                    "'b': step count 0", "'c': lacks c.exp_avg_sq", "'d.exp_avg': parameter 'd' has no step count",
                    "'e.momentum': not a moment");
}

TEST(AdamW, StateOfAnotherShapeIsRejectedAtStep) {
  std::mt19937 rng(6);
  auto params = make_params(rng);
  draw_grads(params, rng);
  AdamWState s;
  s.steps["p1"] = 3;
  s.tensors["p1.exp_avg"] = Tensor::zeros({5}, DType::f32);
  s.tensors["p1.exp_avg_sq"] = Tensor::zeros({5}, DType::f32);
  AdamW opt({});
  opt.load_state(s);
  EXPECT_WICK_ERROR(opt.step(params, 1e-3), ErrorKind::bad_input, "'p1': optimizer state has shape [5], value [6]");
}

TEST(ClipGradNorm, RejectsNegativeMaxNorm) {
  std::vector<Param> none;
  for (double m : {-1.0, kNaN}) EXPECT_WICK_ERROR(clip_grad_norm(none, m), ErrorKind::bad_input, "--max-grad-norm");
  EXPECT_EQ(clip_grad_norm(none, 1.0), 0.0f);
}

TEST(ClipGradNorm, NormOfNormsAndScaling) {
  // ‖(‖(3, 4)‖, ‖(0, 12)‖)‖ = ‖(5, 12)‖ = 13.
  std::vector<Param> params{{.name = "a", .value = Tensor::zeros({2}, DType::f32),
                             .grad = Tensor::from_floats({3, 4}, {2})},
                            {.name = "b", .value = Tensor::zeros({1, 2}, DType::f32),
                             .grad = Tensor::from_floats({0, 12}, {1, 2})}};
  EXPECT_EQ(clip_grad_norm(params, 0.0), 13.0f);  // off: nothing scaled
  EXPECT_EQ(params[0].grad.data<float>()[0], 3.0f);
  EXPECT_EQ(clip_grad_norm(params, 1e9), 13.0f);  // coefficient clamped to 1: unchanged
  EXPECT_EQ(params[1].grad.data<float>()[1], 12.0f);
  EXPECT_EQ(clip_grad_norm(params, 1.3), 13.0f);
  EXPECT_NEAR(params[0].grad.data<float>()[1], 0.4, 1e-6);
  EXPECT_NEAR(params[1].grad.data<float>()[1], 1.2, 1e-6);
  EXPECT_NEAR(clip_grad_norm(params, 0.0), 1.3, 1e-6);
}

TEST(ClipGradNorm, NonFiniteGradsAreNotAnError) {
  std::vector<Param> params{{.name = "a", .value = Tensor::zeros({2}, DType::f32),
                             .grad = Tensor::from_floats({1, std::numeric_limits<float>::quiet_NaN()}, {2})}};
  EXPECT_TRUE(std::isnan(clip_grad_norm(params, 1.0)));  // error_if_nonfinite=False: torch scales by NaN
  EXPECT_TRUE(std::isnan(params[0].grad.data<float>()[0]));
}

}  // namespace
}  // namespace wick::test

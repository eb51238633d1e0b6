// Learning-rate schedules: validation, warmup rounding and the edges of transformers' lr lambdas.
// (The curves themselves are checked against transformers in optim_reference_test.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>

#include "test_util.h"
#include "train/schedule.h"

namespace wick::test {
namespace {

ScheduleConfig config(ScheduleKind kind, int64_t warmup, int64_t total) {
  return {.kind = kind, .base_lr = 1e-3, .warmup_steps = warmup, .total_steps = total};
}

TEST(Schedule, ParsesTransformersNames) {
  EXPECT_EQ(parse_schedule_kind("constant"), ScheduleKind::constant);
  EXPECT_EQ(parse_schedule_kind("constant_with_warmup"), ScheduleKind::constant_with_warmup);
  EXPECT_EQ(parse_schedule_kind("linear"), ScheduleKind::linear);
  EXPECT_EQ(parse_schedule_kind("cosine"), ScheduleKind::cosine);
  for (ScheduleKind k : {ScheduleKind::constant, ScheduleKind::constant_with_warmup, ScheduleKind::linear,
                         ScheduleKind::cosine})
    EXPECT_EQ(parse_schedule_kind(to_string(k)), k);
  EXPECT_WICK_ERROR(parse_schedule_kind("cosine_with_restarts"), ErrorKind::bad_input, "--schedule",
                    "cosine_with_restarts", "constant, constant_with_warmup, linear or cosine");
}

TEST(Schedule, RejectsBadFlags) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  auto with = [](auto edit) {
    ScheduleConfig c = config(ScheduleKind::linear, 0, 10);
    edit(c);
    return c;
  };
  for (double lr : {0.0, -1e-4, nan, inf})
    EXPECT_WICK_ERROR(validate(with([&](ScheduleConfig& c) { c.base_lr = lr; })), ErrorKind::bad_input, "--lr");
  EXPECT_WICK_ERROR(validate(with([](ScheduleConfig& c) { c.warmup_steps = -1; })), ErrorKind::bad_input,
                    "--warmup", "-1");
  for (double ratio : {-0.1, 1.5, nan})
    EXPECT_WICK_ERROR(validate(with([&](ScheduleConfig& c) { c.warmup_ratio = ratio; })), ErrorKind::bad_input,
                      "--warmup", "[0, 1]");
  EXPECT_WICK_ERROR(validate(with([](ScheduleConfig& c) {
                      c.warmup_ratio = 0.1;
                      c.warmup_steps = 3;
                    })),
                    ErrorKind::bad_input, "--warmup", "not both");
  for (int64_t total : {0, -5})
    EXPECT_WICK_ERROR(validate(with([&](ScheduleConfig& c) { c.total_steps = total; })), ErrorKind::bad_input,
                      "--steps");
  EXPECT_WICK_ERROR(lr_at(with([](ScheduleConfig& c) { c.total_steps = 0; }), 0), ErrorKind::bad_input, "--steps");
  EXPECT_WICK_ERROR(lr_at(config(ScheduleKind::linear, 0, 10), -1), ErrorKind::bad_input, "step -1");
  EXPECT_NO_THROW(validate(with([](ScheduleConfig& c) { c.warmup_ratio = 1.0; })));
  EXPECT_NO_THROW(validate(with([](ScheduleConfig& c) { c.warmup_ratio = 0.0; })));
}

// TrainingArguments.get_warmup_steps: math.ceil(num_training_steps * ratio), in double.
TEST(Schedule, WarmupRatioRoundsUpLikeTransformers) {
  auto ratio = [](double r, int64_t total) {
    ScheduleConfig c = config(ScheduleKind::linear, 0, total);
    c.warmup_ratio = r;
    return warmup_steps(c);
  };
  EXPECT_EQ(ratio(0.1, 20), 2);
  EXPECT_EQ(ratio(0.07, 100), 8);  // 100 * 0.07 == 7.000000000000001 in double (Python: math.ceil gives 8)
  EXPECT_EQ(ratio(0.7, 10), 7);
  EXPECT_EQ(ratio(0.03, 1000), 30);
  EXPECT_EQ(ratio(0.0, 50), 0);
  EXPECT_EQ(ratio(1.0, 50), 50);
  EXPECT_EQ(ratio(0.01, 7), 1);
  EXPECT_EQ(warmup_steps(config(ScheduleKind::linear, 4, 10)), 4);
}

TEST(Schedule, WarmupRampsFromZero) {
  for (ScheduleKind k : {ScheduleKind::constant_with_warmup, ScheduleKind::linear, ScheduleKind::cosine}) {
    const ScheduleConfig c = config(k, 4, 12);
    EXPECT_EQ(lr_at(c, 0), 0.0) << to_string(k);
    EXPECT_DOUBLE_EQ(lr_at(c, 1), 1e-3 * 0.25) << to_string(k);
    EXPECT_DOUBLE_EQ(lr_at(c, 3), 1e-3 * 0.75) << to_string(k);
    EXPECT_DOUBLE_EQ(lr_at(c, 4), 1e-3) << to_string(k);  // the peak, the first step after warmup
  }
}

TEST(Schedule, ConstantIgnoresWarmupAsGetSchedulerDoes) {
  const ScheduleConfig c = config(ScheduleKind::constant, 5, 10);
  for (int64_t step : {0, 1, 4, 9, 10, 100}) EXPECT_EQ(lr_at(c, step), 1e-3);
  const ScheduleConfig w = config(ScheduleKind::constant_with_warmup, 2, 10);
  for (int64_t step : {2, 9, 10, 1000}) EXPECT_EQ(lr_at(w, step), 1e-3);
}

TEST(Schedule, LinearAndCosineEndAtZeroAndPastTheEnd) {
  const ScheduleConfig lin = config(ScheduleKind::linear, 2, 10);
  EXPECT_DOUBLE_EQ(lr_at(lin, 6), 1e-3 * 4.0 / 8.0);
  EXPECT_EQ(lr_at(lin, 10), 0.0);
  EXPECT_EQ(lr_at(lin, 11), 0.0);  // max(0, negative)
  EXPECT_EQ(lr_at(lin, 1000), 0.0);

  const ScheduleConfig cos = config(ScheduleKind::cosine, 2, 10);
  EXPECT_DOUBLE_EQ(lr_at(cos, 6), 1e-3 * 0.5);  // half way: cos(pi/2) = 0
  EXPECT_EQ(lr_at(cos, 10), 0.0);              // cos(pi) == -1 exactly
  // Past the end transformers' half cosine climbs again (only clamped at 0): 0.5·(1 + cos(pi·10/8)).
  EXPECT_DOUBLE_EQ(lr_at(cos, 12), 1e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 1.25)));
  EXPECT_GT(lr_at(cos, 12), 0.0);
}

TEST(Schedule, WarmupLongerThanTheRun) {
  // get_linear_schedule_with_warmup accepts it: the ramp never reaches the peak.
  const ScheduleConfig c = config(ScheduleKind::linear, 20, 10);
  EXPECT_DOUBLE_EQ(lr_at(c, 9), 1e-3 * 9.0 / 20.0);
  const ScheduleConfig whole = config(ScheduleKind::linear, 10, 10);
  EXPECT_EQ(lr_at(whole, 10), 0.0);  // total − step over max(1, 0)
}

}  // namespace
}  // namespace wick::test

#include "train/schedule.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <sstream>
#include <string>
#include <utility>

#include "core/text.h"
#include "wick/error.h"

namespace wick {

namespace {

constexpr std::array<std::pair<std::string_view, ScheduleKind>, 4> kKinds{{
    {"constant", ScheduleKind::constant},
    {"constant_with_warmup", ScheduleKind::constant_with_warmup},
    {"linear", ScheduleKind::linear},
    {"cosine", ScheduleKind::cosine},
}};

// transformers' warmup ramp: current_step / max(1, num_warmup_steps).
double warmup_factor(int64_t step, int64_t warmup) { return double(step) / double(std::max<int64_t>(1, warmup)); }

}  // namespace

ScheduleKind parse_schedule_kind(std::string_view name) {
  for (const auto& [n, kind] : kKinds)
    if (n == name) return kind;
  fail(ErrorKind::bad_input, "--schedule: unknown schedule '" + std::string(name) +
                                 "' (expected constant, constant_with_warmup, linear or cosine)");
}

std::string_view to_string(ScheduleKind kind) {
  for (const auto& [n, k] : kKinds)
    if (k == kind) return n;
  return "?";
}

void validate(const ScheduleConfig& c) {
  if (!(c.base_lr > 0) || !std::isfinite(c.base_lr))
    fail(ErrorKind::bad_input, "--lr: expected a finite learning rate > 0, got " + number_text(c.base_lr));
  if (c.warmup_steps < 0)
    fail(ErrorKind::bad_input, "--warmup: expected a step count ≥ 0, got " + std::to_string(c.warmup_steps));
  if (c.warmup_ratio) {
    if (!(*c.warmup_ratio >= 0 && *c.warmup_ratio <= 1))
      fail(ErrorKind::bad_input, "--warmup: expected a ratio in [0, 1], got " + number_text(*c.warmup_ratio));
    if (c.warmup_steps != 0)
      fail(ErrorKind::bad_input, "--warmup: give warmup as steps or as a ratio of the total steps, not both");
  }
  if (c.total_steps <= 0)
    fail(ErrorKind::bad_input, "--steps: expected a total number of optimizer steps > 0, got " +
                                   std::to_string(c.total_steps));
}

int64_t warmup_steps(const ScheduleConfig& c) {
  if (c.warmup_ratio) return int64_t(std::ceil(double(c.total_steps) * *c.warmup_ratio));
  return c.warmup_steps;
}

double lr_factor(const ScheduleConfig& c, int64_t step) {
  const int64_t warmup = warmup_steps(c);
  const int64_t decay = std::max<int64_t>(1, c.total_steps - warmup);
  switch (c.kind) {
    case ScheduleKind::constant:
      return 1.0;
    case ScheduleKind::constant_with_warmup:
      return step < warmup ? warmup_factor(step, warmup) : 1.0;
    case ScheduleKind::linear:
      if (step < warmup) return warmup_factor(step, warmup);
      return std::max(0.0, double(c.total_steps - step) / double(decay));
    case ScheduleKind::cosine: {
      if (step < warmup) return warmup_factor(step, warmup);
      constexpr double num_cycles = 0.5;  // get_scheduler's default: half a cosine, from 1 down to 0
      const double progress = double(step - warmup) / double(decay);
      // Evaluated in transformers' order: math.pi * num_cycles * 2.0 * progress.
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress)));
    }
  }
  fail(ErrorKind::internal, "lr_factor: unknown schedule kind");
}

double lr_at(const ScheduleConfig& c, int64_t step) {
  validate(c);
  if (step < 0) fail(ErrorKind::bad_input, "learning-rate schedule: step " + std::to_string(step) + " is negative");
  return c.base_lr * lr_factor(c, step);
}

}  // namespace wick

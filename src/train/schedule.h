// Learning-rate schedules, as transformers' get_scheduler builds them (optimization.py) on torch's LambdaLR.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace wick {

enum class ScheduleKind { constant, constant_with_warmup, linear, cosine };

/// "constant", "constant_with_warmup", "linear" or "cosine" (transformers' SchedulerType names); anything
/// else throws Error(bad_input) naming --schedule and the accepted names.
ScheduleKind parse_schedule_kind(std::string_view name);
std::string_view to_string(ScheduleKind kind);

/// Defaults are transformers' TrainingArguments (learning_rate 5e-5, lr_scheduler_type linear, no warmup).
struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::linear;
  double base_lr = 5e-5;
  int64_t warmup_steps = 0;            ///< --warmup N
  std::optional<double> warmup_ratio{};  ///< --warmup RATIO in [0, 1]: ceil(ratio · total_steps) steps
  int64_t total_steps = 0;             ///< optimizer steps of the whole run (--steps, or from --epochs)
};

/// Throws Error(bad_input) naming the flag: --lr (≤ 0 or not finite), --warmup (negative steps, a ratio
/// outside [0, 1], or both steps and a ratio), --steps (≤ 0).
void validate(const ScheduleConfig& config);

/// Warmup length in optimizer steps: warmup_steps, or ceil(total_steps · warmup_ratio) as transformers'
/// TrainingArguments.get_warmup_steps computes it (in double, so 0.07 · 100 gives 8).
int64_t warmup_steps(const ScheduleConfig& config);

/// The multiplier of base_lr for optimizer step `step` (0-based): transformers' lr_lambda. `constant`
/// ignores the warmup, as get_scheduler does. Past total_steps, linear stays at 0 and cosine follows its
/// curve (clamped at 0), exactly as transformers does.
double lr_factor(const ScheduleConfig& config, int64_t step);

/// The learning rate optimizer step `step` uses: base_lr · lr_factor, the lr LambdaLR holds after `step`
/// calls of scheduler.step(). Validates `config`; a negative step throws Error(bad_input).
double lr_at(const ScheduleConfig& config, int64_t step);

}  // namespace wick

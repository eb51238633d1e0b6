// AdamW and gradient-norm clipping on CPU f32 tensors, step for step as torch computes them
// (torch.optim.AdamW single-tensor path, torch.nn.utils.clip_grad_norm_).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "wick/tensor.h"

namespace wick {

/// One trainable tensor. `value` is updated in place (it must own writable storage, not a view of a
/// mapped file); `grad` is read by AdamW and scaled in place by clip_grad_norm.
struct Param {
  std::string name{};  ///< key of its optimizer state, e.g. its adapter-file key
  Tensor value{};      ///< CPU f32
  Tensor grad{};       ///< CPU f32, value's shape
};

/// Defaults are torch.optim.AdamW's.
struct AdamWConfig {
  std::array<double, 2> betas{0.9, 0.999};  ///< --betas B1,B2, each in [0, 1)
  double eps = 1e-8;                         ///< --eps, > 0; added to sqrt(v̂), as torch does
  double weight_decay = 1e-2;                ///< --weight-decay, ≥ 0; decoupled: p ← p − lr·wd·p
};

/// Throws Error(bad_input) naming --betas, --eps or --weight-decay.
void validate(const AdamWConfig& config);

/// AdamW's state, for checkpoints: per parameter (torch's state[p]) its two moments and its step count.
struct AdamWState {
  std::map<std::string, Tensor> tensors;  ///< "<name>.exp_avg", "<name>.exp_avg_sq": CPU f32, the param's shape
  std::map<std::string, int64_t> steps;   ///< "<name>" → optimizer steps it has taken (torch's state["step"])
};

/// torch.optim.AdamW(amsgrad=False, maximize=False, foreach=False, fused=False) on CPU f32, per element:
///   p ← p·(1 − lr·wd);  m ← lerp(m, g, 1 − β1);  v ← v·β2 + (1 − β2)·g·g
///   p ← p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps)
/// with the scalars formed in double and rounded to f32 where torch rounds them, and each tensor op
/// rounded to f32 in torch's order. State is created at a parameter's first step.
class AdamW {
 public:
  explicit AdamW(AdamWConfig config);

  /// One optimizer step over `params` with learning rate `lr` (≥ 0: a warmup schedule starts at 0).
  /// Every param is checked first (CPU f32, grad shaped as value, names unique, state shaped as value);
  /// all problems are reported in one Error(bad_input) and nothing is updated.
  void step(std::span<Param> params, double lr);

  const AdamWConfig& config() const { return config_; }
  /// A copy of the whole state (copies the moments: two tensors per parameter).
  AdamWState state() const;
  /// Replaces the state with a copy of `state`, checked whole: every step count ≥ 1 with both moments,
  /// f32 on the CPU and of one shape, and no tensor without a step count; Error(corrupt) lists each fault.
  void load_state(const AdamWState& state);

 private:
  struct Slot {
    Tensor exp_avg;     // m, f32, the param's shape
    Tensor exp_avg_sq;  // v, f32, the param's shape
    int64_t step = 0;
  };
  void check(std::span<const Param> params, double lr) const;

  AdamWConfig config_;
  std::map<std::string, Slot> slots_;  // by Param::name
};

/// torch.nn.utils.clip_grad_norm_(grads, max_norm, norm_type=2, error_if_nonfinite=False, foreach=False):
/// total = ‖(‖g_1‖, …, ‖g_n‖)‖₂; every grad is multiplied by min(max_norm / (total + 1e-6), 1) in f32.
/// Returns total (0 for no params). max_norm 0 turns clipping off: the norm is returned, nothing is scaled.
/// Norms accumulate in double and round to f32 (torch sums f32 squares, so its norm can overflow to inf
/// above ~1.8e19; this one cannot). A non-finite total is not an error: grads become NaN or 0, as in torch.
/// max_norm < 0 or NaN throws Error(bad_input) naming --max-grad-norm.
float clip_grad_norm(std::span<Param> params, double max_norm);

}  // namespace wick

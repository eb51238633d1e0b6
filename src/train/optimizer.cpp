#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <string_view>
#include <vector>

#include "core/text.h"
#include "wick/error.h"

namespace wick {

namespace {

bool is_cpu_f32(const Tensor& t) { return t.defined() && t.device() == Device::cpu && t.dtype() == DType::f32; }

// The f32 scalars of one torch AdamW step: each formed in double as the Python code forms it, then
// rounded to f32 where the tensor op that takes it does (Scalar::to<float>).
struct AdamWCoefs {
  bool decay = false;  // torch skips the decay multiply when weight_decay == 0
  float keep = 1;      // 1 − lr·wd
  float w1 = 0;        // 1 − β1, lerp's weight
  float b2 = 0;        // β2
  float w2 = 0;        // 1 − β2
  float bc2_sqrt = 1;  // (1 − β2^t)^0.5
  float eps = 0;
  float neg_step = 0;  // −lr / (1 − β1^t)
};

AdamWCoefs coefs(const AdamWConfig& c, double lr, int64_t step) {
  const auto [beta1, beta2] = c.betas;
  const double t = double(float(step));  // torch keeps the step count as an f32 tensor
  return {.decay = c.weight_decay != 0,
          .keep = float(1 - lr * c.weight_decay),
          .w1 = float(1 - beta1),
          .b2 = float(beta2),
          .w2 = float(1 - beta2),
          .bc2_sqrt = float(std::pow(1 - std::pow(beta2, t), 0.5)),
          .eps = float(c.eps),
          .neg_step = float(-(lr / (1 - std::pow(beta1, t))))};
}

// torch's vectorized lerp (aten/src/ATen/native/cpu/LerpKernel.cpp: lerp_vec): one fused multiply-add
// from whichever end the weight is nearer.
float lerp(float start, float end, float weight) {
  if (std::abs(weight) < 0.5f) return std::fma(weight, end - start, start);
  return std::fma(weight - 1.0f, end - start, end);
}

// One parameter tensor of n elements, in the order of torch's _single_tensor_adam: each line is one
// tensor op there, rounded to f32.
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, const AdamWCoefs& k) {
  for (int64_t i = 0; i < n; ++i) {
    if (k.decay) p[i] = p[i] * k.keep;                        // param.mul_(1 - lr * wd)
    m[i] = lerp(m[i], g[i], k.w1);                            // exp_avg.lerp_(grad, 1 - beta1)
    v[i] = v[i] * k.b2;                                       // exp_avg_sq.mul_(beta2)
    v[i] = v[i] + k.w2 * g[i] * g[i];                         //   .addcmul_(grad, grad, value=1 - beta2)
    const float denom = std::sqrt(v[i]) / k.bc2_sqrt + k.eps;  // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
    p[i] = p[i] + k.neg_step * m[i] / denom;                  // param.addcdiv_(exp_avg, denom, -step_size)
  }
}

// "<name>" for "<name>.exp_avg" or "<name>.exp_avg_sq"; empty for any other key.
std::string moment_owner(const std::string& key) {
  for (std::string_view suffix : {".exp_avg", ".exp_avg_sq"})
    if (key.size() > suffix.size() && key.ends_with(suffix)) return key.substr(0, key.size() - suffix.size());
  return {};
}

void check_lr(double lr) {
  if (!(lr >= 0) || !std::isfinite(lr))
    fail(ErrorKind::bad_input, "--lr: expected a finite learning rate ≥ 0 for this step, got " + number_text(lr));
}

}  // namespace

void validate(const AdamWConfig& c) {
  for (double b : c.betas)
    if (!(b >= 0 && b < 1))
      fail(ErrorKind::bad_input, "--betas: expected each beta in [0, 1), got " + number_text(c.betas[0]) + "," +
                                     number_text(c.betas[1]));
  if (!(c.eps > 0) || !std::isfinite(c.eps))
    fail(ErrorKind::bad_input, "--eps: expected a finite epsilon > 0, got " + number_text(c.eps));
  if (!(c.weight_decay >= 0) || !std::isfinite(c.weight_decay))
    fail(ErrorKind::bad_input,
         "--weight-decay: expected a finite weight decay ≥ 0, got " + number_text(c.weight_decay));
}

AdamW::AdamW(AdamWConfig config) : config_(config) { validate(config_); }

void AdamW::check(std::span<const Param> params, double lr) const {
  check_lr(lr);
  std::string errors;
  std::set<std::string> seen;
  for (const Param& p : params) {
    const std::string at = "\n  parameter '" + p.name + "': ";
    if (!seen.insert(p.name).second) errors += at + "named twice";
    if (!is_cpu_f32(p.value) || !is_cpu_f32(p.grad)) {
      errors += at + "value and grad must be f32 tensors on the CPU";
      continue;
    }
    if (p.grad.shape() != p.value.shape())
      errors += at + "grad has shape " + to_string(p.grad.shape()) + ", value " + to_string(p.value.shape());
    const auto slot = slots_.find(p.name);
    if (slot != slots_.end() && slot->second.exp_avg.shape() != p.value.shape())
      errors += at + "optimizer state has shape " + to_string(slot->second.exp_avg.shape()) + ", value " +
                to_string(p.value.shape()) + " (state from a different adapter?)";
  }
  if (!errors.empty()) fail(ErrorKind::bad_input, "AdamW step:" + errors);
}

void AdamW::step(std::span<Param> params, double lr) {
  check(params, lr);
  for (Param& p : params) {
    auto [it, fresh] = slots_.try_emplace(p.name);
    Slot& s = it->second;
    if (fresh) {
      s.exp_avg = Tensor::zeros(p.value.shape(), DType::f32);
      s.exp_avg_sq = Tensor::zeros(p.value.shape(), DType::f32);
    }
    s.step += 1;
    adamw_update(p.value.data<float>(), p.grad.data<float>(), s.exp_avg.data<float>(), s.exp_avg_sq.data<float>(),
                 p.value.numel(), coefs(config_, lr, s.step));
  }
}

AdamWState AdamW::state() const {
  AdamWState out;
  for (const auto& [name, s] : slots_) {
    out.tensors[name + ".exp_avg"] = s.exp_avg.clone();
    out.tensors[name + ".exp_avg_sq"] = s.exp_avg_sq.clone();
    out.steps[name] = s.step;
  }
  return out;
}

void AdamW::load_state(const AdamWState& state) {
  std::string errors;
  std::map<std::string, Slot> slots;
  for (const auto& [name, step] : state.steps) {
    const std::string at = "\n  parameter '" + name + "': ";
    if (step < 1) errors += at + "step count " + std::to_string(step) + " (expected ≥ 1)";
    const auto m = state.tensors.find(name + ".exp_avg");
    const auto v = state.tensors.find(name + ".exp_avg_sq");
    if (m == state.tensors.end() || v == state.tensors.end()) {
      errors += at + "lacks " + (m == state.tensors.end() ? name + ".exp_avg" : name + ".exp_avg_sq");
      continue;
    }
    if (!is_cpu_f32(m->second) || !is_cpu_f32(v->second)) {
      errors += at + "moments must be f32 tensors on the CPU";
      continue;
    }
    if (m->second.shape() != v->second.shape())
      errors += at + "exp_avg has shape " + to_string(m->second.shape()) + ", exp_avg_sq " +
                to_string(v->second.shape());
    slots[name] = {.exp_avg = m->second.clone(), .exp_avg_sq = v->second.clone(), .step = step};
  }
  for (const auto& [key, tensor] : state.tensors) {
    const std::string owner = moment_owner(key);
    if (owner.empty()) errors += "\n  tensor '" + key + "': not a moment (<name>.exp_avg or <name>.exp_avg_sq)";
    else if (!state.steps.contains(owner)) errors += "\n  tensor '" + key + "': parameter '" + owner + "' has no step count";
  }
  if (!errors.empty()) fail(ErrorKind::corrupt, "AdamW state:" + errors);
  slots_ = std::move(slots);
}

float clip_grad_norm(std::span<Param> params, double max_norm) {
  if (!(max_norm >= 0))
    fail(ErrorKind::bad_input,
         "--max-grad-norm: expected a norm ≥ 0 (0: no clipping), got " + number_text(max_norm));
  double total_sq = 0;
  for (const Param& p : params) {
    if (!is_cpu_f32(p.grad)) fail(ErrorKind::bad_input, "clip_grad_norm: grad of '" + p.name + "' is not CPU f32");
    const float* g = p.grad.data<float>();
    double sq = 0;
    for (int64_t i = 0; i < p.grad.numel(); ++i) sq += double(g[i]) * double(g[i]);
    const float norm = float(std::sqrt(sq));  // torch.linalg.vector_norm(g): an f32 result
    total_sq += double(norm) * double(norm);
  }
  const float total = float(std::sqrt(total_sq));
  if (max_norm == 0) return total;
  // clip_coef = max_norm / (total_norm + 1e-6): Python's float / tensor is tensor.reciprocal() * float.
  const float coef = (1.0f / (total + 1e-6f)) * float(max_norm);
  const float clamped = std::min(coef, 1.0f);  // torch.clamp(max=1.0); a NaN stays NaN, as in torch
  for (Param& p : params) {
    float* g = p.grad.data<float>();
    for (int64_t i = 0; i < p.grad.numel(); ++i) g[i] = g[i] * clamped;
  }
  return total;
}

}  // namespace wick

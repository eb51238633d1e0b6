// LoraAdapter: validate a PEFT tensor set against a base model's shapes (whole, reporting all), upload
// the factors to the model's backend, and serve them to the LoRA chokepoint (model/linear.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "adapter/lora.h"
#include "wick/model.h"
#include "wick/error.h"

namespace wick {

const LoraFactors* LoraAdapter::Impl::factors(int layer, ProjKind kind) const {
  const size_t i = size_t(lora_slot(layer, kind));
  return i < slots.size() && slots[i].a.defined() ? &slots[i] : nullptr;
}

LoraAdapter::LoraAdapter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->owner = this; }
LoraAdapter::~LoraAdapter() = default;
const AdapterInfo& LoraAdapter::info() const { return impl_->info; }
const LoraConfig& LoraAdapter::config() const { return impl_->config; }
const LoraSource& LoraAdapter::source() const { return *impl_; }

namespace {

std::string describe_model(const ModelConfig& c, Device d) {
  return std::to_string(c.num_layers) + " layers, hidden " + std::to_string(c.hidden_size) + ", ffn " +
         std::to_string(c.intermediate_size) + ", vocab " + std::to_string(c.vocab_size) + ", on " +
         (d == Device::cpu ? "cpu" : "cuda");
}

}  // namespace

void LoraAdapter::check_fits(const Model& model) const {
  if (same_shape(impl_->base, model.config()) && impl_->device == model.device()) return;
  fail(ErrorKind::bad_input, "adapter '" + impl_->info.name + "' was made for a model of " +
                                 describe_model(impl_->base, impl_->device) + ", not this one (" +
                                 describe_model(model.config(), model.device()) + ")");
}

namespace {

constexpr size_t kMaxListedProblems = 24;

const char* proj_short_name(ProjKind k) {
  const char* path = proj_path(k);
  return std::strchr(path, '.') + 1;
}

// Validate whole, report all: every missing, unexpected, misshaped or mistyped tensor in one error.
void validate(const AdapterPlan& plan, const std::map<std::string, TensorMeta>& found, const LoraConfig& config,
              const ModelConfig& model, const std::string& source) {
  std::map<std::string, Shape> expected;
  for (const auto& m : plan.lora) {
    expected[lora_a_key(m)] = m.a_shape;
    expected[lora_b_key(m)] = m.b_shape;
  }
  for (const auto& s : plan.saved) expected[saved_key(s)] = s.shape;

  std::vector<std::string> problems;
  for (const auto& [name, shape] : expected) {
    auto it = found.find(name);
    if (it == found.end()) problems.push_back("missing '" + name + "' " + to_string(shape));
    else if (it->second.shape != shape)
      problems.push_back("'" + name + "': expected shape " + to_string(shape) + ", found " + to_string(it->second.shape));
    else if (!it->second.usable)
      problems.push_back("'" + name + "': dtype " + it->second.dtype_name + " (expected F32, BF16 or F16)");
  }
  for (const auto& [name, meta] : found)
    if (!expected.count(name))
      problems.push_back("unexpected '" + name + "' " + to_string(meta.shape) +
                         " (a module adapter_config.json does not target)");
  if (problems.empty()) return;

  std::string msg = source + ": " + std::to_string(problems.size()) + " tensor" + (problems.size() == 1 ? "" : "s") +
                    " do not fit this " + std::to_string(model.num_layers) + "-layer model of hidden size " +
                    std::to_string(model.hidden_size) + ":";
  for (size_t i = 0; i < problems.size() && i < kMaxListedProblems; ++i) msg += "\n  " + problems[i];
  if (problems.size() > kMaxListedProblems)
    msg += "\n  ... and " + std::to_string(problems.size() - kMaxListedProblems) + " more";
  msg += "\n  (trained for a different base model";
  if (!config.base_model_name_or_path.empty()) msg += " than " + config.base_model_name_or_path + "?";
  else msg += "?";
  msg += " or an adapter_config.json that does not belong to these weights?)";
  fail(ErrorKind::bad_input, msg);
}

AdapterInfo describe(const std::string& name, const LoraConfig& config, const AdapterPlan& plan, DType compute) {
  AdapterInfo info;
  info.name = name;
  info.rank = config.r;
  info.alpha = config.lora_alpha;
  info.use_rslora = config.use_rslora;
  bool targeted[kProjKinds] = {};
  for (const auto& m : plan.lora) {
    targeted[int(m.kind)] = true;
    info.max_rank = std::max(info.max_rank, m.rank);
    info.parameter_count += shape_numel(m.a_shape) + shape_numel(m.b_shape);
  }
  for (int k = 0; k < kProjKinds; ++k)
    if (targeted[k]) info.targets.push_back(proj_short_name(ProjKind(k)));
  info.lora_modules = int64_t(plan.lora.size());
  for (const auto& s : plan.saved) {
    info.saved_modules.push_back(s.name);
    info.parameter_count += shape_numel(s.shape);
  }
  info.bytes = info.parameter_count * int64_t(dtype_size(compute));
  return info;
}

std::map<std::string, TensorMeta> metas(const std::map<std::string, Tensor>& tensors) {
  std::map<std::string, TensorMeta> out;
  for (const auto& [name, t] : tensors) {
    const bool usable = t.defined() && t.device() == Device::cpu && t.dtype() != DType::i32;
    out[name] = {t.shape(), t.defined() ? std::string(to_string(t.dtype())) : "undefined", usable};
  }
  return out;
}

}  // namespace

std::shared_ptr<const LoraAdapter> build_adapter(const AdapterSpec& spec, const Model& model) {
  const ModelConfig& base = model.config();
  const LoraConfig& config = spec.config;
  const std::string& source = spec.source;
  const AdapterPlan plan = plan_adapter(config, base, source);
  validate(plan, spec.found, config, base, source);

  auto impl = std::make_unique<LoraAdapter::Impl>();
  impl->config = config;
  impl->plan = plan;
  impl->base = base;
  impl->device = model.device();
  impl->slots.resize(size_t(base.num_layers) * kProjKinds);
  auto host = [&](const std::string& key) -> const Tensor& {
    return impl->host[key] = spec.fetch(key).to(DType::f32);
  };
  for (const auto& mod : plan.lora) {
    LoraFactors& f = impl->slots[size_t(lora_slot(mod.layer, mod.kind))];
    f.a = model.upload(host(lora_a_key(mod)));
    f.b = model.upload(host(lora_b_key(mod)));
    f.scale = mod.scale;
  }
  for (const auto& s : plan.saved) {
    Tensor t = model.upload(host(saved_key(s)));
    (s.slot == SavedModulePlan::Slot::head ? impl->head_override : impl->embed_override) = t;
  }
  impl->info = describe(spec.name, config, plan, model.compute_dtype());
  impl->info.source = spec.dir;
  return std::make_shared<const LoraAdapter>(std::move(impl));
}

std::shared_ptr<const LoraAdapter> LoraAdapter::from_tensors(std::string name, const LoraConfig& config,
                                                             const std::map<std::string, Tensor>& tensors,
                                                             const Model& model) {
  AdapterSpec spec{.name = name,
                   .dir = {},
                   .source = "adapter '" + name + "'",
                   .config = config,
                   .found = metas(tensors),
                   .fetch = [&](const std::string& key) { return tensors.at(key); }};
  return build_adapter(spec, model);
}

std::shared_ptr<const LoraAdapter> LoraAdapter::random(std::string name, const LoraConfig& config, const Model& model,
                                                       uint64_t seed) {
  const AdapterPlan plan = plan_adapter(config, model.config(), "adapter '" + name + "'");
  std::mt19937_64 rng(seed);
  // Uniform on [-√3, √3]·σ has variance σ²; cheaper than normals for a 35 MB adapter.
  auto fill = [&](const Shape& shape, double sigma) {
    Tensor t = Tensor::empty(shape, DType::f32);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const float k = float(std::sqrt(3.0) * sigma);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = k * u(rng);
    return t;
  };
  std::map<std::string, Tensor> tensors;
  for (const auto& m : plan.lora) {
    tensors[lora_a_key(m)] = fill(m.a_shape, 1.0 / std::sqrt(double(m.a_shape[1])));
    tensors[lora_b_key(m)] = fill(m.b_shape, 0.2 / std::sqrt(double(m.rank)));
  }
  for (const auto& s : plan.saved) tensors[saved_key(s)] = fill(s.shape, 1.0 / std::sqrt(double(s.shape[1])));
  return from_tensors(std::move(name), config, tensors, model);
}

}  // namespace wick

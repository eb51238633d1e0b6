// adapter_config.json both ways, and what a config targets in a Qwen2 model (PEFT 0.21's matching rules:
// tuners_utils.check_target_module_exists, utils.other.get_pattern_key).
#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "adapter/lora.h"
#include "core/regex.h"
#include "model/weights.h"
#include "wick/error.h"

namespace wick {

using ojson = nlohmann::ordered_json;

// --- parsing -----------------------------------------------------------------------------------------

namespace {

[[noreturn]] void bad_field(const std::string& source, const std::string& key, const std::string& expected,
                            const ojson& found) {
  fail(ErrorKind::bad_input, source + ": field '" + key + "': expected " + expected + ", found " + found.dump());
}

const ojson* field(const ojson& j, const std::string& key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

// Fields of variants whose math wick does not implement: set (true / non-empty) means unsupported.
void reject_variants(const ojson& j, const std::string& source) {
  const std::pair<const char*, const char*> variants[] = {
      {"use_dora", "DoRA (use_dora)"},
      {"lora_bias", "LoRA biases (lora_bias)"},
      {"layer_replication", "layer replication (layer_replication)"},
      {"trainable_token_indices", "trainable tokens (trainable_token_indices)"},
      {"target_parameters", "LoRA on parameters (target_parameters)"},
      {"alora_invocation_tokens", "activated LoRA (alora_invocation_tokens)"},
      {"use_qalora", "QA-LoRA (use_qalora)"},
      {"use_bdlora", "BD-LoRA (use_bdlora)"},
      {"megatron_config", "Megatron parallel LoRA (megatron_config)"},
      {"arrow_config", "Arrow routing (arrow_config)"},
  };
  for (const auto& [key, what] : variants) {
    const ojson* v = field(j, key);
    if (!v || (v->is_boolean() && !v->get<bool>()) || ((v->is_array() || v->is_object()) && v->empty())) continue;
    fail(ErrorKind::unsupported, source + ": " + what + " is not supported (wick computes plain LoRA and rsLoRA)");
  }
  if (const ojson* init = field(j, "init_lora_weights"); init && init->is_string()) {
    const std::string s = init->get<std::string>();
    if (s != "gaussian")
      fail(ErrorKind::unsupported, source + ": init_lora_weights '" + s +
                                       "' changes the base weights too; convert the adapter with PEFT's "
                                       "path_initial_model_for_weight_conversion first");
  }
}

// A list of names or one regex string (PEFT's target_modules / exclude_modules).
void names_or_regex(const ojson& j, const std::string& key, const std::string& source,
                    std::vector<std::string>& names, std::string& regex) {
  const ojson* v = field(j, key);
  if (!v) return;
  if (v->is_string()) {
    regex = v->get<std::string>();
    return;
  }
  if (!v->is_array()) bad_field(source, key, "a list of module names or a regex string", *v);
  for (const ojson& e : *v) {
    if (!e.is_string()) bad_field(source, key, "module names (strings)", e);
    names.push_back(e.get<std::string>());
  }
}

double finite_number(const ojson& v, const std::string& source, const std::string& key) {
  if (!v.is_number()) bad_field(source, key, "a number", v);
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(ErrorKind::bad_input, source + ": field '" + key + "' must be finite");
  return d;
}

int64_t rank_value(const ojson& v, const std::string& source, const std::string& key) {
  if (!v.is_number_integer()) bad_field(source, key, "an integer rank", v);
  const int64_t r = v.get<int64_t>();
  if (r < 1) fail(ErrorKind::bad_input, source + ": field '" + key + "' is " + std::to_string(r) + "; a LoRA rank must be ≥ 1");
  return r;
}

}  // namespace

LoraConfig LoraConfig::parse(const std::string& text, const std::string& source) {
  ojson j;
  try {
    j = ojson::parse(text);
  } catch (const ojson::parse_error& e) {
    // Python's json.dump writes NaN / Infinity for a non-finite alpha, which JSON cannot hold.
    for (const char* bad : {"NaN", "Infinity"})
      if (text.find(bad) != std::string::npos)
        fail(ErrorKind::bad_input, source + ": holds " + bad + " (lora_alpha and every number must be finite)");
    fail(ErrorKind::corrupt, source + ": not valid JSON (" + e.what() + ")");
  } catch (const ojson::out_of_range& e) {
    fail(ErrorKind::bad_input, source + ": " + e.what() + " (lora_alpha and every number must be finite)");
  }
  if (!j.is_object()) fail(ErrorKind::corrupt, source + ": expected a JSON object");

  const ojson* type = field(j, "peft_type");
  if (!type) fail(ErrorKind::bad_input, source + ": no peft_type (expected \"LORA\")");
  if (!type->is_string() || type->get<std::string>() != "LORA")
    fail(ErrorKind::unsupported, source + ": peft_type " + type->dump() + " is not supported (wick reads LORA adapters)");
  reject_variants(j, source);

  LoraConfig c;
  if (const ojson* v = field(j, "r")) c.r = rank_value(*v, source, "r");
  if (const ojson* v = field(j, "lora_alpha")) c.lora_alpha = finite_number(*v, source, "lora_alpha");
  if (const ojson* v = field(j, "lora_dropout")) {
    c.lora_dropout = finite_number(*v, source, "lora_dropout");
    if (c.lora_dropout < 0 || c.lora_dropout >= 1) bad_field(source, "lora_dropout", "a number in [0, 1)", *v);
  }
  if (const ojson* v = field(j, "use_rslora")) {
    if (!v->is_boolean()) bad_field(source, "use_rslora", "true or false", *v);
    c.use_rslora = v->get<bool>();
  }
  if (const ojson* v = field(j, "bias"); v && *v != "none")
    fail(ErrorKind::unsupported, source + ": bias " + v->dump() + " is not supported (only \"none\")");
  // fan_in_fan_out applies to GPT-2's Conv1D; PEFT resets it to false for nn.Linear (every Qwen2
  // projection) and so stores [r, in] / [out, r] either way, which the shape check enforces.

  const ojson* targets = field(j, "target_modules");
  if (!targets) {
    c.target_modules = {"q_proj", "v_proj"};  // PEFT's default for model_type qwen2
  } else if (targets->is_string() && targets->get<std::string>() == "all-linear") {
    c.all_linear = true;
  } else {
    names_or_regex(j, "target_modules", source, c.target_modules, c.target_regex);
  }
  names_or_regex(j, "exclude_modules", source, c.exclude_modules, c.exclude_regex);

  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    const ojson* v = field(j, key);
    if (!v) continue;
    if (!v->is_object()) bad_field(source, key, "an object of module pattern -> value", *v);
    for (const auto& [k, val] : v->items()) {
      const std::string where = std::string(key) + "['" + k + "']";
      if (key == std::string("rank_pattern")) c.rank_pattern.emplace_back(k, rank_value(val, source, where));
      else c.alpha_pattern.emplace_back(k, finite_number(val, source, where));
    }
  }

  if (const ojson* v = field(j, "layers_to_transform")) {
    if (v->is_number_integer()) {
      c.layers_to_transform.push_back(v->get<int64_t>());
    } else if (v->is_array()) {
      for (const ojson& e : *v) {
        if (!e.is_number_integer()) bad_field(source, "layers_to_transform", "layer indices", e);
        c.layers_to_transform.push_back(e.get<int64_t>());
      }
    } else {
      bad_field(source, "layers_to_transform", "a layer index or a list of them", *v);
    }
  }
  if (const ojson* v = field(j, "layers_pattern")) {
    // Qwen2's decoder layers sit in model.layers.N; any other pattern would select nothing.
    const bool ok = (v->is_string() && *v == "layers") ||
                    (v->is_array() && std::find(v->begin(), v->end(), ojson("layers")) != v->end()) ||
                    (v->is_array() && v->empty());
    if (!ok) fail(ErrorKind::bad_input, source + ": layers_pattern " + v->dump() + " names no Qwen2 module (expected \"layers\")");
  }
  if (const ojson* v = field(j, "modules_to_save")) {
    if (!v->is_array()) bad_field(source, "modules_to_save", "a list of module names", *v);
    for (const ojson& e : *v) {
      if (!e.is_string()) bad_field(source, "modules_to_save", "module names (strings)", e);
      c.modules_to_save.push_back(e.get<std::string>());
    }
  }
  if (const ojson* v = field(j, "task_type"); v && v->is_string()) c.task_type = v->get<std::string>();
  if (const ojson* v = field(j, "base_model_name_or_path"); v && v->is_string())
    c.base_model_name_or_path = v->get<std::string>();
  return c;
}

std::string LoraConfig::to_json() const {
  ojson j;
  j["peft_type"] = "LORA";
  j["task_type"] = task_type.empty() ? ojson(nullptr) : ojson(task_type);
  j["base_model_name_or_path"] = base_model_name_or_path.empty() ? ojson(nullptr) : ojson(base_model_name_or_path);
  j["r"] = r;
  j["lora_alpha"] = lora_alpha;
  j["use_rslora"] = use_rslora;
  j["use_dora"] = false;
  j["lora_dropout"] = lora_dropout;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["init_lora_weights"] = true;
  j["inference_mode"] = true;
  if (all_linear) j["target_modules"] = "all-linear";
  else if (!target_regex.empty()) j["target_modules"] = target_regex;
  else j["target_modules"] = target_modules;
  if (!exclude_regex.empty()) j["exclude_modules"] = exclude_regex;
  else j["exclude_modules"] = exclude_modules.empty() ? ojson(nullptr) : ojson(exclude_modules);
  j["rank_pattern"] = ojson::object();
  for (const auto& [k, v] : rank_pattern) j["rank_pattern"][k] = v;
  j["alpha_pattern"] = ojson::object();
  for (const auto& [k, v] : alpha_pattern) j["alpha_pattern"][k] = v;
  j["layers_to_transform"] = layers_to_transform.empty() ? ojson(nullptr) : ojson(layers_to_transform);
  j["layers_pattern"] = nullptr;
  j["modules_to_save"] = modules_to_save.empty() ? ojson(nullptr) : ojson(modules_to_save);
  return j.dump(2) + "\n";
}

// --- what a config targets ---------------------------------------------------------------------------

namespace {

// A Python `re` pattern (PCRE2 syntax is close enough for module names) for re.fullmatch; `what` names the field in
// the bad_input error when it does not compile.
Regex module_regex(const std::string& pattern, const std::string& what) {
  std::string error;
  std::optional<Regex> re = Regex::compile(pattern, {.full_match = true, .what = what}, error);
  if (!re)
    fail(ErrorKind::bad_input, what + ": '" + pattern + "' is not a valid regular expression (" + error + ")");
  return std::move(*re);
}

// PEFT's list matching: the whole key, or its end after a '.'.
bool name_matches(const std::string& key, const std::string& name) {
  return key == name || (key.size() > name.size() && key.ends_with(name) && key[key.size() - name.size() - 1] == '.');
}

struct Matcher {
  std::vector<std::string> names;
  std::optional<Regex> regex;
  bool all = false;
  Matcher(const std::vector<std::string>& n, const std::string& re, bool all_linear, const std::string& what)
      : names(n), all(all_linear) {
    if (!re.empty()) regex = module_regex(re, what);
  }
  bool operator()(const std::string& key) const {
    if (regex) return regex->matches(key);
    for (const auto& n : names)
      if (name_matches(key, n)) return true;
    return false;
  }
};

// rank_pattern / alpha_pattern: an exact key first, else the first pattern matching the key's end.
template <class V>
const V* pattern_value(const std::vector<std::pair<std::string, V>>& patterns, const std::string& key,
                       const std::vector<Regex>& compiled) {
  for (const auto& [k, v] : patterns)
    if (k == key) return &v;
  for (size_t i = 0; i < patterns.size(); ++i)
    if (compiled[i].matches(key)) return &patterns[i].second;
  return nullptr;
}

template <class V>
std::vector<Regex> compile_patterns(const std::vector<std::pair<std::string, V>>& patterns, const std::string& source,
                                    const char* field_name) {
  std::vector<Regex> out;
  for (const auto& [k, v] : patterns)
    out.push_back(module_regex("(?:.*\\.)?(?:" + k + ")", source + ": " + field_name));
  return out;
}


}  // namespace

std::string peft_key(const std::string& module_key, std::string_view suffix) {
  return "base_model.model." + module_key + std::string(suffix);
}

bool same_shape(const ModelConfig& a, const ModelConfig& b) {
  return a.head == b.head && a.vocab_size == b.vocab_size && a.hidden_size == b.hidden_size &&
         a.intermediate_size == b.intermediate_size && a.num_layers == b.num_layers && a.num_heads == b.num_heads &&
         a.num_kv_heads == b.num_kv_heads && a.head_dim == b.head_dim && a.num_labels == b.num_labels &&
         a.tie_word_embeddings == b.tie_word_embeddings;
}

AdapterPlan plan_adapter(const LoraConfig& config, const ModelConfig& model, const std::string& source) {
  const bool cls = model.head == ModelHead::sequence_classification;
  if ((config.task_type == "SEQ_CLS" && !cls) || (config.task_type == "CAUSAL_LM" && cls))
    fail(ErrorKind::bad_input, source + ": task_type " + config.task_type + " does not fit a " +
                                   (cls ? "sequence-classification" : "causal-LM") + " model");
  const Matcher target(config.target_modules, config.target_regex, config.all_linear, source + ": target_modules");
  const Matcher exclude(config.exclude_modules, config.exclude_regex, false, source + ": exclude_modules");
  const auto rank_re = compile_patterns(config.rank_pattern, source, "rank_pattern");
  const auto alpha_re = compile_patterns(config.alpha_pattern, source, "alpha_pattern");
  for (int64_t l : config.layers_to_transform)
    if (l < 0 || l >= model.num_layers)
      fail(ErrorKind::bad_input, source + ": layers_to_transform names layer " + std::to_string(l) +
                                     " but the model has " + std::to_string(model.num_layers) +
                                     " (trained for a different base model?)");
  const std::set<int64_t> layers(config.layers_to_transform.begin(), config.layers_to_transform.end());

  // Modules outside the decoder layers that a target could name; LoRA on them is not implemented.
  const std::string head_key = cls ? "score" : "lm_head";
  for (const std::string& key : {head_key, std::string("model.embed_tokens")})
    if (!config.all_linear && target(key) && !exclude(key))
      fail(ErrorKind::unsupported, source + ": LoRA on '" + key +
                                       "' is not supported (only the seven decoder projections; store it whole with "
                                       "modules_to_save instead)");

  AdapterPlan plan;
  std::set<std::string> used_names;  // list entries that matched some module, in any layer
  for (int64_t l = 0; l < model.num_layers; ++l) {
    for (int k = 0; k < kProjKinds; ++k) {
      const ProjKind kind = static_cast<ProjKind>(k);
      const std::string key = "model.layers." + std::to_string(l) + "." + proj_path(kind);
      for (const auto& n : config.target_modules)
        if (name_matches(key, n)) used_names.insert(n);
      if (!(config.all_linear || target(key)) || exclude(key)) continue;
      if (!layers.empty() && !layers.count(l)) continue;
      LoraModulePlan m;
      m.layer = int(l);
      m.kind = kind;
      m.key = key;
      const int64_t* r = pattern_value(config.rank_pattern, key, rank_re);
      const double* a = pattern_value(config.alpha_pattern, key, alpha_re);
      m.rank = r ? *r : config.r;
      m.alpha = a ? *a : config.lora_alpha;
      m.scale = float(config.use_rslora ? m.alpha / std::sqrt(double(m.rank)) : m.alpha / double(m.rank));
      const Shape w = proj_shape(model, kind);
      m.a_shape = {m.rank, w[1]};
      m.b_shape = {w[0], m.rank};
      plan.lora.push_back(std::move(m));
    }
  }
  for (const auto& n : config.target_modules)
    if (!used_names.count(n) && !name_matches(head_key, n) && !name_matches("model.embed_tokens", n))
      fail(ErrorKind::bad_input, source + ": target_modules names '" + n +
                                     "', which is no module of a Qwen2 model (expected q_proj, k_proj, v_proj, o_proj, "
                                     "gate_proj, up_proj, down_proj)");
  if (!config.target_regex.empty() && plan.lora.empty())
    fail(ErrorKind::bad_input, source + ": target_modules regex '" + config.target_regex +
                                   "' matches no projection of this Qwen2 model");

  for (const std::string& name : config.modules_to_save) {
    SavedModulePlan s;
    s.name = name;
    if (name_matches(head_key, name)) {
      s.key = head_key;
      s.slot = SavedModulePlan::Slot::head;
      s.shape = {cls ? model.num_labels : model.vocab_size, model.hidden_size};
    } else if (name_matches("model.embed_tokens", name)) {
      s.key = "model.embed_tokens";
      s.slot = SavedModulePlan::Slot::embedding;
      s.shape = {model.vocab_size, model.hidden_size};
    } else if (name == "classifier" || name == "score" || name == "lm_head") {
      continue;  // PEFT adds "classifier" and "score" for any SEQ_CLS model; they match nothing here
    } else {
      fail(ErrorKind::unsupported, source + ": modules_to_save '" + name + "' is not supported (wick replaces " +
                                       head_key + " and embed_tokens whole)");
    }
    const bool listed = std::any_of(plan.saved.begin(), plan.saved.end(), [&](const auto& o) { return o.key == s.key; });
    if (!listed) plan.saved.push_back(std::move(s));
  }
  if (plan.lora.empty() && plan.saved.empty())
    fail(ErrorKind::bad_input, source + ": the adapter targets no module of this model");
  return plan;
}

}  // namespace wick

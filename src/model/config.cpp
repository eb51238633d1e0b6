#include "wick/config.h"

#include <cmath>
#include <filesystem>

#include "core/json_util.h"
#include "wick/error.h"

namespace wick {

namespace {

using nlohmann::json;

std::vector<int32_t> token_ids(const json& obj, const char* key, const std::string& source) {
  std::vector<int32_t> ids;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return ids;
  auto take = [&](const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      fail(ErrorKind::corrupt, source + ": field '" + key + "': expected a token id or a list of them, found " + v.dump());
    ids.push_back(int32_t(v.get<int64_t>()));
  };
  if (it->is_array())
    for (const auto& v : *it) take(v);
  else
    take(*it);
  return ids;
}

std::optional<int32_t> single_id(const json& obj, const char* key, const std::string& source) {
  auto ids = token_ids(obj, key, source);
  if (ids.empty()) return std::nullopt;
  return ids.front();
}

std::optional<DType> torch_dtype(const json& obj, const std::string& source) {
  auto name = json_string(obj, "dtype", source);
  if (!name) name = json_string(obj, "torch_dtype", source);
  if (!name) return std::nullopt;
  if (*name == "float32") return DType::f32;
  if (*name == "bfloat16") return DType::bf16;
  if (*name == "float16") return DType::f16;
  fail(ErrorKind::unsupported, source + ": dtype '" + *name + "' (expected float32, bfloat16 or float16)");
}

// rope_parameters (transformers v5) or rope_theta + rope_scaling (v4); only the default RoPE is implemented.
double read_rope_theta(const json& obj, const std::string& source) {
  auto check_type = [&](const json& params, const char* field) {
    std::string type = "default";
    if (auto t = json_string(params, "rope_type", source)) type = *t;
    else if (auto t2 = json_string(params, "type", source)) type = *t2;
    if (type != "default")
      fail(ErrorKind::unsupported, source + ": " + field + " rope_type '" + type + "' (only the default RoPE is implemented)");
  };
  if (auto it = obj.find("rope_scaling"); it != obj.end() && !it->is_null()) {
    if (!it->is_object()) fail(ErrorKind::corrupt, source + ": field 'rope_scaling': expected an object or null");
    check_type(*it, "rope_scaling");
  }
  if (auto it = obj.find("rope_parameters"); it != obj.end() && !it->is_null()) {
    if (!it->is_object()) fail(ErrorKind::corrupt, source + ": field 'rope_parameters': expected an object");
    check_type(*it, "rope_parameters");
    if (auto theta = json_number(*it, "rope_theta", source)) return *theta;
  }
  return json_number(obj, "rope_theta", source).value_or(10000.0);
}

int64_t require_positive(const json& obj, const char* key, const std::string& source) {
  auto v = json_int(obj, key, source);
  if (!v) fail(ErrorKind::corrupt, source + ": missing field '" + key + "'");
  if (*v <= 0) fail(ErrorKind::corrupt, source + ": field '" + key + "' must be positive, found " + std::to_string(*v));
  return *v;
}

// generation_config.json fields that wick holds as int32_t / float: a value they cannot hold is an error, not a
// silently wrapped top_k or an infinite temperature.
std::optional<int32_t> json_int32(const json& obj, const char* key, const std::string& source) {
  const auto v = json_int(obj, key, source);
  if (v && (*v < INT32_MIN || *v > INT32_MAX))
    fail(ErrorKind::corrupt, source + ": field '" + key + "': " + std::to_string(*v) + " does not fit a 32-bit integer");
  return v ? std::optional<int32_t>(int32_t(*v)) : std::nullopt;
}
std::optional<float> json_float(const json& obj, const char* key, const std::string& source) {
  const auto v = json_number(obj, key, source);
  if (v && !std::isfinite(float(*v)))
    fail(ErrorKind::corrupt, source + ": field '" + key + "': " + obj[key].dump() + " does not fit a float");
  return v ? std::optional<float>(float(*v)) : std::nullopt;
}

// The number of parameters, or nullopt when it overflows int64_t. Every weight's size and q_dim / kv_dim are
// at most this, so a config it accepts has sizes the loader can multiply without overflow.
std::optional<int64_t> checked_parameter_count(const ModelConfig& c) {
  bool overflow = false;
  auto mul = [&](int64_t a, int64_t b) {
    int64_t r = 0;
    overflow |= __builtin_mul_overflow(a, b, &r);
    return r;
  };
  auto add = [&](int64_t a, int64_t b) {
    int64_t r = 0;
    overflow |= __builtin_add_overflow(a, b, &r);
    return r;
  };
  const int64_t h = c.hidden_size, q = mul(c.num_heads, c.head_dim), kv = mul(c.num_kv_heads, c.head_dim);
  const int64_t attention = add(add(mul(h, q), q), add(mul(2, add(mul(h, kv), kv)), mul(q, h)));
  const int64_t per_layer = add(attention, add(mul(3, mul(h, c.intermediate_size)), mul(2, h)));
  int64_t head = 0;
  if (c.head == ModelHead::sequence_classification) head = mul(c.num_labels, h);
  else if (!c.tie_word_embeddings) head = mul(c.vocab_size, h);
  const int64_t total = add(add(mul(c.vocab_size, h), mul(c.num_layers, per_layer)), add(h, head));
  if (overflow) return std::nullopt;
  return total;
}

}  // namespace

ModelConfig ModelConfig::parse(const std::string& json_text, const std::string& source) {
  const json obj = parse_json(json_text, source);
  if (!obj.is_object()) fail(ErrorKind::corrupt, source + ": expected a JSON object");
  ModelConfig c;

  if (auto mt = json_string(obj, "model_type", source); mt && *mt != "qwen2")
    fail(ErrorKind::unsupported, source + ": model_type '" + *mt + "' (wick implements qwen2)");
  if (auto it = obj.find("architectures"); it != obj.end() && !it->is_null()) {
    if (!it->is_array() || it->empty() || !(*it)[0].is_string())
      fail(ErrorKind::corrupt, source + ": field 'architectures': expected a list of class names");
    const std::string arch = (*it)[0].get<std::string>();
    if (arch == "Qwen2ForCausalLM") c.head = ModelHead::causal_lm;
    else if (arch == "Qwen2ForSequenceClassification") c.head = ModelHead::sequence_classification;
    else if (arch == "Qwen2Model") c.head = ModelHead::none;
    else
      fail(ErrorKind::unsupported, source + ": architecture '" + arch +
                                       "' (expected Qwen2ForCausalLM, Qwen2ForSequenceClassification or Qwen2Model)");
  }
  if (auto act = json_string(obj, "hidden_act", source); act && *act != "silu")
    fail(ErrorKind::unsupported, source + ": hidden_act '" + *act + "' (Qwen2 uses silu)");
  if (json_bool(obj, "use_sliding_window", source).value_or(false))
    fail(ErrorKind::unsupported, source + ": use_sliding_window true (sliding-window attention is not implemented)");
  if (auto it = obj.find("layer_types"); it != obj.end() && it->is_array())
    for (const auto& t : *it)
      if (!t.is_string() || t.get<std::string>() != "full_attention")
        fail(ErrorKind::unsupported, source + ": layer_types entry " + t.dump() + " (only full_attention is implemented)");

  c.vocab_size = require_positive(obj, "vocab_size", source);
  c.hidden_size = require_positive(obj, "hidden_size", source);
  c.intermediate_size = require_positive(obj, "intermediate_size", source);
  c.num_layers = require_positive(obj, "num_hidden_layers", source);
  c.num_heads = require_positive(obj, "num_attention_heads", source);
  c.num_kv_heads = obj.contains("num_key_value_heads") && !obj["num_key_value_heads"].is_null()
                       ? require_positive(obj, "num_key_value_heads", source)
                       : c.num_heads;
  if (obj.contains("head_dim") && !obj["head_dim"].is_null()) {
    c.head_dim = require_positive(obj, "head_dim", source);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      fail(ErrorKind::corrupt, source + ": hidden_size " + std::to_string(c.hidden_size) +
                                   " is not divisible by num_attention_heads " + std::to_string(c.num_heads) +
                                   " (and no head_dim is given)");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0)
    fail(ErrorKind::corrupt, source + ": num_attention_heads " + std::to_string(c.num_heads) +
                                 " is not divisible by num_key_value_heads " + std::to_string(c.num_kv_heads));
  if (c.head_dim % 2 != 0)
    fail(ErrorKind::corrupt, source + ": head_dim " + std::to_string(c.head_dim) + " must be even for RoPE");
  c.max_position_embeddings = obj.contains("max_position_embeddings") && !obj["max_position_embeddings"].is_null()
                                  ? require_positive(obj, "max_position_embeddings", source)
                                  : 32768;
  c.rms_norm_eps = json_number(obj, "rms_norm_eps", source).value_or(1e-6);
  if (!(c.rms_norm_eps > 0.0) || !(c.rms_norm_eps < 1.0))
    fail(ErrorKind::corrupt, source + ": field 'rms_norm_eps' must be in (0, 1), found " + std::to_string(c.rms_norm_eps));
  c.rope_theta = read_rope_theta(obj, source);
  if (!(c.rope_theta > 1.0) || !std::isfinite(c.rope_theta))
    fail(ErrorKind::corrupt, source + ": rope_theta must be a finite number above 1, found " + std::to_string(c.rope_theta));
  c.tie_word_embeddings = json_bool(obj, "tie_word_embeddings", source).value_or(false);
  c.pad_token_id = single_id(obj, "pad_token_id", source);
  c.bos_token_id = single_id(obj, "bos_token_id", source);
  c.eos_token_ids = token_ids(obj, "eos_token_id", source);
  c.dtype = torch_dtype(obj, source);

  if (c.head == ModelHead::sequence_classification) {
    if (auto it = obj.find("id2label"); it != obj.end() && it->is_object())
      c.num_labels = int64_t(it->size());
    else
      c.num_labels = json_int(obj, "num_labels", source).value_or(2);
    if (c.num_labels <= 0) fail(ErrorKind::corrupt, source + ": a classifier needs at least one label");
  }
  for (int32_t id : c.eos_token_ids)
    if (id >= c.vocab_size)
      fail(ErrorKind::corrupt, source + ": eos_token_id " + std::to_string(id) + " is outside the vocabulary of " +
                                   std::to_string(c.vocab_size));
  if (!checked_parameter_count(c))
    fail(ErrorKind::corrupt, source + ": vocab_size, hidden_size, intermediate_size, num_hidden_layers and the head "
                                      "counts imply more than 2^63 parameters");
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail(ErrorKind::not_found, dir.string() + ": no such model directory");
  const auto path = dir / "config.json";
  return parse(read_text_file(path), path.string());
}

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  c.max_position_embeddings = 32768;
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.dtype = DType::bf16;
  if (name == "qwen2.5-0.5b") {
    c.vocab_size = 151936, c.hidden_size = 896, c.intermediate_size = 4864, c.num_layers = 24;
    c.num_heads = 14, c.num_kv_heads = 2, c.tie_word_embeddings = true;
    c.bos_token_id = 151643, c.eos_token_ids = {151645, 151643};
  } else if (name == "qwen2.5-7b") {
    c.vocab_size = 152064, c.hidden_size = 3584, c.intermediate_size = 18944, c.num_layers = 28;
    c.num_heads = 28, c.num_kv_heads = 4, c.tie_word_embeddings = false;
    c.bos_token_id = 151643, c.eos_token_ids = {151645, 151643};
  } else if (name == "tiny") {
    c.vocab_size = 384, c.hidden_size = 64, c.intermediate_size = 160, c.num_layers = 2;
    c.num_heads = 4, c.num_kv_heads = 2, c.tie_word_embeddings = true, c.max_position_embeddings = 1024;
    c.bos_token_id = 1, c.eos_token_ids = {2};
  } else {
    fail(ErrorKind::bad_input, "--like: unknown model shape '" + name +
                                   "' (expected qwen2.5-0.5b, qwen2.5-7b or tiny; minilm-l6, bert-base or tiny-bert "
                                   "for an encoder)");
  }
  c.head_dim = c.hidden_size / c.num_heads;
  return c;
}

int64_t ModelConfig::parameter_count() const {
  const auto n = checked_parameter_count(*this);
  if (!n) fail(ErrorKind::bad_input, "model config: its sizes imply more than 2^63 parameters");
  return *n;
}

std::string ModelConfig::to_json() const {
  json j;
  const bool cls = head == ModelHead::sequence_classification;
  j["architectures"] = {cls                        ? "Qwen2ForSequenceClassification"
                        : head == ModelHead::none ? "Qwen2Model"
                                                  : "Qwen2ForCausalLM"};
  j["model_type"] = "qwen2";
  j["hidden_act"] = "silu";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", rope_theta}};
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["use_sliding_window"] = false;
  j["attention_dropout"] = 0.0;
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (pad_token_id) j["pad_token_id"] = *pad_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  if (dtype) j["dtype"] = *dtype == DType::bf16 ? "bfloat16" : *dtype == DType::f16 ? "float16" : "float32";
  if (cls) {
    json labels = json::object();
    for (int64_t i = 0; i < num_labels; ++i) labels[std::to_string(i)] = "LABEL_" + std::to_string(i);
    j["id2label"] = labels;
  }
  return j.dump(2) + "\n";
}

GenerationDefaults GenerationDefaults::parse(const std::string& json_text, const std::string& source) {
  const json obj = parse_json(json_text, source);
  if (!obj.is_object()) fail(ErrorKind::corrupt, source + ": expected a JSON object");
  GenerationDefaults g;
  g.eos_token_ids = token_ids(obj, "eos_token_id", source);
  g.bos_token_id = single_id(obj, "bos_token_id", source);
  g.pad_token_id = single_id(obj, "pad_token_id", source);
  g.do_sample = json_bool(obj, "do_sample", source);
  g.temperature = json_float(obj, "temperature", source);
  g.top_p = json_float(obj, "top_p", source);
  g.top_k = json_int32(obj, "top_k", source);
  g.min_p = json_float(obj, "min_p", source);
  g.repetition_penalty = json_float(obj, "repetition_penalty", source);
  g.max_new_tokens = json_int32(obj, "max_new_tokens", source);
  return g;
}

GenerationDefaults GenerationDefaults::load(const std::filesystem::path& dir) {
  const auto path = dir / "generation_config.json";
  if (!std::filesystem::exists(path)) return {};
  return parse(read_text_file(path), path.string());
}

}  // namespace wick

// sentence-transformers' folder conventions: modules.json, the Pooling module's config.json, Normalize,
// sentence_bert_config.json and config_sentence_transformers.json, read as SentenceTransformer(dir) reads them.
#include "embed/st_folder.h"

#include <algorithm>
#include <iterator>
#include <vector>

#include "core/json_util.h"
#include "wick/error.h"

namespace wick {

namespace {

using nlohmann::json;

json read_json(const std::filesystem::path& path) {
  const json j = parse_json(read_text_file(path), path.string());
  if (!j.is_object() && !j.is_array()) fail(ErrorKind::corrupt, path.string() + ": expected a JSON object");
  return j;
}

// The module class's name without its package ("sentence_transformers.models.Pooling" → "Pooling"; later releases
// moved the classes, keeping their names).
std::string class_name(const std::string& type) {
  const size_t dot = type.rfind('.');
  return dot == std::string::npos ? type : type.substr(dot + 1);
}

// The Pooling module's config.json: exactly one of the modes wick implements. sentence-transformers 6 writes the
// mode by name ("pooling_mode": "mean", or a list of names to concatenate); earlier releases one boolean field per
// mode (pooling_mode_mean_tokens: true). A folder with "pooling_mode" is read by it alone, as sentence-transformers
// reads it.
void read_pooling(const std::filesystem::path& path, SentenceFolder& f) {
  const json j = read_json(path);
  const std::string source = path.string();
  if (!j.is_object()) fail(ErrorKind::corrupt, source + ": expected a JSON object");
  struct Mode {
    const char* name;   // in "pooling_mode"
    const char* field;  // the boolean field of earlier releases
    std::optional<EmbedPooling> pooling;  // nullopt: sentence-transformers has it, wick does not
  };
  static constexpr const char* kExpected =
      "(expected mean, cls, max or lasttoken: pooling_mode_mean_tokens, _cls_token, _max_tokens or _lasttoken)";
  const Mode modes[] = {{"cls", "pooling_mode_cls_token", EmbedPooling::cls},
                        {"mean", "pooling_mode_mean_tokens", EmbedPooling::mean},
                        {"max", "pooling_mode_max_tokens", EmbedPooling::max},
                        {"lasttoken", "pooling_mode_lasttoken", EmbedPooling::last_token},
                        {"mean_sqrt_len_tokens", "pooling_mode_mean_sqrt_len_tokens", std::nullopt},
                        {"weightedmean", "pooling_mode_weightedmean_tokens", std::nullopt}};
  struct On {
    const Mode* mode;
    std::string said;  // how the file says it, for errors
  };
  std::vector<On> on;
  if (auto it = j.find("pooling_mode"); it != j.end() && !it->is_null()) {
    const json names = it->is_array() ? *it : json::array({*it});
    if (names.empty())
      fail(ErrorKind::corrupt, source + ": field 'pooling_mode': an empty list, no pooling mode is on");
    for (const json& name : names) {
      if (!name.is_string())
        fail(ErrorKind::corrupt, source + ": field 'pooling_mode': expected a pooling mode's name or a list of "
                                          "them, found " + name.dump());
      const std::string n = name.get<std::string>();
      const Mode* m = std::find_if(std::begin(modes), std::end(modes), [&](const Mode& x) { return n == x.name; });
      if (m == std::end(modes))
        fail(ErrorKind::unsupported, source + ": field 'pooling_mode': '" + n +
                                         "' is a pooling mode wick does not know " + kExpected);
      on.push_back({m, "field 'pooling_mode': '" + n + "'"});
    }
  } else {
    for (const Mode& m : modes)
      if (json_bool(j, m.field, source).value_or(false)) on.push_back({&m, "field '" + std::string(m.field) + "'"});
    for (auto it = j.begin(); it != j.end() && on.empty(); ++it)
      if (it.key().starts_with("pooling_mode") && it.value().is_boolean() && it.value().get<bool>())
        fail(ErrorKind::unsupported, source + ": field '" + it.key() +
                                         "' is a pooling mode wick does not know " + kExpected);
  }
  if (on.empty())
    fail(ErrorKind::corrupt, source + ": no pooling mode is on (expected the field pooling_mode, or one of "
                                      "pooling_mode_mean_tokens, _cls_token, _max_tokens, _lasttoken set to true)");
  for (const On& o : on)
    if (!o.mode->pooling)
      fail(ErrorKind::unsupported, source + ": " + o.said + " is a pooling mode wick does not implement " + kExpected);
  if (on.size() > 1)
    fail(ErrorKind::unsupported, source + ": " + on[0].said + " and " + on[1].said +
                                     " are both on (several pooling modes concatenated are not implemented)");
  f.pooling = *on[0].mode->pooling;
  f.include_prompt = json_bool(j, "include_prompt", source).value_or(true);
}

void read_sentence_bert_config(const std::filesystem::path& dir, SentenceFolder& f) {
  const auto path = dir / "sentence_bert_config.json";
  if (!std::filesystem::exists(path)) return;
  const json j = read_json(path);
  const std::string source = path.string();
  if (auto m = json_int(j, "max_seq_length", source)) {
    if (*m < 1)
      fail(ErrorKind::corrupt, source + ": field 'max_seq_length' must be positive, found " + std::to_string(*m));
    f.max_seq_length = *m;
  }
  f.do_lower_case = json_bool(j, "do_lower_case", source).value_or(false);
}

void read_prompts(const std::filesystem::path& dir, SentenceFolder& f) {
  const auto path = dir / "config_sentence_transformers.json";
  if (!std::filesystem::exists(path)) return;
  const json j = read_json(path);
  const std::string source = path.string();
  if (auto it = j.find("prompts"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail(ErrorKind::corrupt, source + ": field 'prompts': expected an object of strings");
    for (auto p = it->begin(); p != it->end(); ++p) {
      if (!p.value().is_string())
        fail(ErrorKind::corrupt, source + ": field 'prompts': the prompt '" + p.key() + "' is not a string");
      f.prompts[p.key()] = p.value().get<std::string>();
    }
  }
  f.default_prompt_name = json_string(j, "default_prompt_name", source);
  if (f.default_prompt_name && !f.prompts.contains(*f.default_prompt_name))
    fail(ErrorKind::corrupt,
         source + ": field 'default_prompt_name' names '" + *f.default_prompt_name + "', which is not in 'prompts'");
}

}  // namespace

SentenceFolder read_sentence_folder(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail(ErrorKind::not_found, dir.string() + ": no such model directory");
  SentenceFolder f;
  f.model_dir = dir;
  const auto modules_path = dir / "modules.json";
  read_prompts(dir, f);
  if (!std::filesystem::exists(modules_path)) {  // a plain model folder: sentence-transformers adds mean pooling
    read_sentence_bert_config(dir, f);
    return f;
  }
  const json modules = read_json(modules_path);
  const std::string source = modules_path.string();
  if (!modules.is_array()) fail(ErrorKind::corrupt, source + ": expected a list of modules");
  bool transformer = false, pooling = false;
  for (size_t i = 0; i < modules.size(); ++i) {
    const json& m = modules[i];
    const std::string where = source + ": module " + std::to_string(i);
    if (!m.is_object()) fail(ErrorKind::corrupt, where + ": expected an object");
    const std::string type = json_string(m, "type", source).value_or("");
    const std::filesystem::path path = dir / json_string(m, "path", source).value_or("");
    const std::string name = class_name(type);
    if (name == "Transformer") {
      if (transformer || pooling)
        fail(ErrorKind::unsupported, where + ": field 'type': a second Transformer, or one after the Pooling");
      transformer = true;
      f.model_dir = path;
      read_sentence_bert_config(path, f);
    } else if (name == "Pooling") {
      if (!transformer || pooling)
        fail(ErrorKind::unsupported, where + ": field 'type': a Pooling module that does not follow one Transformer");
      pooling = true;
      read_pooling(path / "config.json", f);
    } else if (name == "Normalize") {
      if (!pooling) fail(ErrorKind::unsupported, where + ": field 'type': Normalize before the Pooling module");
      f.normalize = true;
    } else {
      fail(ErrorKind::unsupported,
           where + ": field 'type' is '" + type + "' (wick implements Transformer, Pooling and Normalize modules)");
    }
  }
  if (!transformer) fail(ErrorKind::unsupported, source + ": no Transformer module (field 'type')");
  if (!pooling) fail(ErrorKind::unsupported, source + ": no Pooling module (field 'type'): token embeddings only");
  return f;
}

std::optional<int64_t> tokenizer_max_length(const std::filesystem::path& dir) {
  const auto path = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(path)) return std::nullopt;
  const json j = read_json(path);
  const auto it = j.find("model_max_length");
  if (it == j.end() || !it->is_number()) return std::nullopt;
  const double v = it->get<double>();
  if (!(v >= 1) || v > 1e12) return std::nullopt;  // transformers' VERY_LARGE_INTEGER (1e30): no limit
  return int64_t(v);
}

}  // namespace wick

#include "core/json_util.h"

#include <fstream>
#include <sstream>

#include "wick/error.h"

namespace wick {

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorKind::not_found, path.string() + ": cannot open file");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json parse_json(std::string_view text, const std::string& source) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception&) {
    fail_parsing_json(source);
  }
}

void fail_parsing_json(const std::string& source) {
  try {
    throw;
  } catch (const nlohmann::json::parse_error& e) {
    fail(ErrorKind::corrupt, source + ": not valid JSON (" + e.what() + ")");
  } catch (const nlohmann::json::out_of_range& e) {  // a number past a double's range: "1e400"
    fail(ErrorKind::corrupt, source + ": a number does not fit a double (" + e.what() + ")");
  }
}

namespace {
const nlohmann::json* field(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}
[[noreturn]] void wrong_type(const char* key, const std::string& source, const char* expected,
                             const nlohmann::json& found) {
  fail(ErrorKind::corrupt, source + ": field '" + key + "': expected " + expected + ", found " + found.dump());
}
}  // namespace

std::optional<int64_t> json_int(const nlohmann::json& obj, const char* key, const std::string& source) {
  const auto* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(key, source, "an integer", *v);
  return v->get<int64_t>();
}

std::optional<double> json_number(const nlohmann::json& obj, const char* key, const std::string& source) {
  const auto* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(key, source, "a number", *v);
  return v->get<double>();
}

std::optional<bool> json_bool(const nlohmann::json& obj, const char* key, const std::string& source) {
  const auto* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(key, source, "true or false", *v);
  return v->get<bool>();
}

std::optional<std::string> json_string(const nlohmann::json& obj, const char* key, const std::string& source) {
  const auto* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(key, source, "a string", *v);
  return v->get<std::string>();
}

}  // namespace wick

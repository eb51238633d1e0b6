#include "tokenizer/normalizer.h"

#include <cstdlib>
#include <memory>

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include "wick/error.h"

namespace wick::tok {

namespace {

void parse_into(const nlohmann::json& j, const std::string& where, std::vector<Normalizer::Form>& forms) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail(ErrorKind::corrupt, where + ": normalizer without a \"type\"");
  }
  const std::string type = j["type"];
  if (type == "NFC") forms.push_back(Normalizer::Form::nfc);
  else if (type == "NFD") forms.push_back(Normalizer::Form::nfd);
  else if (type == "NFKC") forms.push_back(Normalizer::Form::nfkc);
  else if (type == "NFKD") forms.push_back(Normalizer::Form::nfkd);
  else if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      fail(ErrorKind::corrupt, where + ": normalizer Sequence without a \"normalizers\" array");
    }
    for (const auto& n : j["normalizers"]) parse_into(n, where, forms);
  } else {
    fail(ErrorKind::unsupported, where + ": unsupported normalizer type '" + type + "'");
  }
}

// Text whose code points are all below U+0300 is already in NFC: none of them has NFC_Quick_Check
// No/Maybe. For the other forms only ASCII is safe (Latin-1 has decompositions, NBSP a compatibility one).
bool unchanged_by(Normalizer::Form form, std::string_view s) {
  const unsigned char limit = form == Normalizer::Form::nfc ? 0xCC : 0x80;
  for (unsigned char c : s) {
    if (c >= limit) return false;
  }
  return true;
}

utf8proc_option_t options_of(Normalizer::Form form) {
  switch (form) {
    case Normalizer::Form::nfc: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    case Normalizer::Form::nfd: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    case Normalizer::Form::nfkc: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case Normalizer::Form::nfkd: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  }
  return utf8proc_option_t(0);
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& j, const std::string& where) {
  Normalizer n;
  if (!j.is_null()) parse_into(j, where, n.forms_);
  return n;
}

bool Normalizer::normalize(std::string_view in, std::string& out) const {
  bool changed = false;
  std::string current;
  for (Form form : forms_) {
    std::string_view src = changed ? std::string_view(current) : in;
    if (unchanged_by(form, src)) continue;
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(src.data()),
                                            utf8proc_ssize_t(src.size()), &dst, options_of(form));
    if (n < 0) fail(ErrorKind::internal, std::string("tokenizer normalizer: ") + utf8proc_errmsg(n));
    std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
    std::string_view result(reinterpret_cast<const char*>(dst), size_t(n));
    if (result == src) continue;
    current.assign(result);
    changed = true;
  }
  if (changed) out = std::move(current);
  return changed;
}

}  // namespace wick::tok

#include "tokenizer/decoder_chain.h"

#include <nlohmann/json.hpp>

#include "tokenizer/pattern.h"
#include "tokenizer/unicode.h"
#include "wick/error.h"

namespace wick::tok {

struct DecoderChain::Step {
  enum class Kind { wordpiece, metaspace, replace, strip, fuse, byte_fallback, bpe } kind = Kind::fuse;
  std::string text;        // wordpiece: prefix; metaspace: replacement; replace: literal; strip: content; bpe: suffix
  std::string content;     // replace
  std::optional<Regex> regex;
  bool cleanup = true;     // wordpiece
  bool prepend = true;     // metaspace: prepend_scheme is not "never"
  size_t start = 0, stop = 0;  // strip
};

DecoderChain::DecoderChain() = default;
DecoderChain::~DecoderChain() = default;
DecoderChain::DecoderChain(DecoderChain&&) noexcept = default;
DecoderChain& DecoderChain::operator=(DecoderChain&&) noexcept = default;

namespace {

using DecodeStep = DecoderChain::Step;

std::string get_string(const nlohmann::json& j, const char* key, const std::string& fallback, const std::string& here) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_string()) fail(ErrorKind::corrupt, here + ": \"" + key + "\" must be a string");
  return j[key].get<std::string>();
}

size_t get_count(const nlohmann::json& j, const char* key, const std::string& here) {
  if (!j.contains(key) || j[key].is_null()) return 0;
  if (!j[key].is_number_unsigned()) fail(ErrorKind::corrupt, here + ": \"" + key + "\" must be a non-negative integer");
  return j[key].get<size_t>();
}

void parse_decoders_into(const nlohmann::json& j, const std::string& where, std::vector<DecodeStep>& steps) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail(ErrorKind::corrupt, where + ": decoder without a \"type\"");
  }
  const std::string type = j["type"];
  const std::string here = where + ": decoder " + type;
  DecodeStep step;
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      fail(ErrorKind::corrupt, where + ": decoder Sequence without a \"decoders\" array");
    }
    for (const auto& d : j["decoders"]) parse_decoders_into(d, where, steps);
    return;
  }
  if (type == "WordPiece") {
    step.kind = DecodeStep::Kind::wordpiece;
    step.text = get_string(j, "prefix", "##", here);
    if (j.contains("cleanup") && j["cleanup"].is_boolean()) step.cleanup = j["cleanup"].get<bool>();
  } else if (type == "Metaspace") {
    step.kind = DecodeStep::Kind::metaspace;
    step.text = get_string(j, "replacement", "\xE2\x96\x81", here);
    const std::string scheme = get_string(j, "prepend_scheme", "always", here);
    const bool legacy_off = j.contains("add_prefix_space") && j["add_prefix_space"].is_boolean() &&
                            !j["add_prefix_space"].get<bool>();
    step.prepend = scheme != "never" && !legacy_off;
  } else if (type == "Replace") {
    step.kind = DecodeStep::Kind::replace;
    if (!j.contains("pattern") || !j["pattern"].is_object()) fail(ErrorKind::corrupt, here + ": missing \"pattern\"");
    const auto& pattern = j["pattern"];
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step.regex = oniguruma_regex(pattern["Regex"].get<std::string>(), here);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step.text = pattern["String"].get<std::string>();
      // HF escapes the string into a regex: an empty one matches between every two characters.
      if (step.text.empty()) step.regex = oniguruma_regex("", here);
    } else {
      fail(ErrorKind::corrupt, here + ": \"pattern\" must be {\"Regex\": ...} or {\"String\": ...}");
    }
    step.content = get_string(j, "content", "", here);
  } else if (type == "Strip") {
    step.kind = DecodeStep::Kind::strip;
    step.text = get_string(j, "content", " ", here);
    step.start = get_count(j, "start", here);
    step.stop = get_count(j, "stop", here);
  } else if (type == "Fuse") {
    step.kind = DecodeStep::Kind::fuse;
  } else if (type == "ByteFallback") {
    step.kind = DecodeStep::Kind::byte_fallback;
  } else if (type == "BPEDecoder") {
    step.kind = DecodeStep::Kind::bpe;
    step.text = get_string(j, "suffix", "</w>", here);
  } else {
    fail(ErrorKind::unsupported, where + ": unsupported decoder type '" + type + "'" +
                                     (type == "ByteLevel" ? " beside other decoders" : ""));
  }
  steps.push_back(std::move(step));
}

// HF's WordPiece decoder cleanup (tokenization spaces before punctuation and contractions).
std::string cleanup(std::string s) {
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
      {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  for (const auto& [from, to] : kRules) {
    std::string out;
    size_t at = 0;
    for (size_t hit = s.find(from); hit != std::string::npos; hit = s.find(from, at)) {
      out.append(s, at, hit - at).append(to);
      at = hit + from.size();
    }
    if (at == 0) continue;
    out.append(s, at);
    s = std::move(out);
  }
  return s;
}

// Strips up to `start` leading and `stop` trailing copies of the character `c` (HF's Strip decoder).
std::string strip(const std::string& token, const std::string& c, size_t start, size_t stop) {
  std::vector<std::pair<size_t, size_t>> chars;  // byte range of each character
  for (size_t i = 0; i < token.size();) {
    const size_t b = i;
    next_code_point(token, i);
    chars.push_back({b, i});
  }
  auto is_c = [&](size_t k) { return token.compare(chars[k].first, chars[k].second - chars[k].first, c) == 0; };
  size_t begin = 0, end = chars.size();
  while (begin < start && begin < chars.size() && is_c(begin)) ++begin;
  for (size_t k = 0; k < stop && end > 0 && is_c(end - 1); ++k) --end;
  if (end < begin) end = begin;  // HF would panic on such a token; wick keeps nothing
  if (begin == end) return {};
  return token.substr(chars[begin].first, chars[end - 1].second - chars[begin].first);
}

// The byte a "<0xAB>" token stands for, or -1.
int byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string metaspace(const std::string& token, const DecodeStep& s, bool first) {
  std::string out;
  for (size_t at = 0;;) {
    const size_t hit = token.find(s.text, at);
    out.append(token, at, hit == std::string::npos ? std::string::npos : hit - at);
    if (hit == std::string::npos) break;
    if (!(first && s.prepend)) out += ' ';
    at = hit + s.text.size();
  }
  return out;
}

void apply(const DecodeStep& s, std::vector<std::string>& tokens) {
  switch (s.kind) {
    case DecodeStep::Kind::wordpiece:
      for (size_t i = 0; i < tokens.size(); ++i) {
        std::string& t = tokens[i];
        if (i != 0) {
          if (t.compare(0, s.text.size(), s.text) == 0) t.erase(0, s.text.size());
          else t = " " + t;
        }
        if (s.cleanup) t = cleanup(std::move(t));
      }
      break;
    case DecodeStep::Kind::metaspace:
      for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = metaspace(tokens[i], s, i == 0);
      break;
    case DecodeStep::Kind::replace:
      for (std::string& t : tokens) replace_matches(s.regex ? &*s.regex : nullptr, s.text, s.content, t, t);
      break;
    case DecodeStep::Kind::strip:
      for (std::string& t : tokens) t = strip(t, s.text, s.start, s.stop);
      break;
    case DecodeStep::Kind::fuse: {
      std::string joined;
      for (const std::string& t : tokens) joined += t;
      tokens.assign(1, std::move(joined));
      break;
    }
    case DecodeStep::Kind::byte_fallback: {
      // Runs of <0xXX> tokens become their bytes when those are UTF-8, else one U+FFFD per byte.
      std::vector<std::string> out;
      std::string bytes;
      size_t run = 0;
      auto flush = [&] {
        if (run == 0) return;
        if (find_invalid_utf8(bytes) == std::string::npos) out.push_back(bytes);
        else for (size_t k = 0; k < run; ++k) out.emplace_back("\xEF\xBF\xBD");
        bytes.clear();
        run = 0;
      };
      for (std::string& t : tokens) {
        if (const int b = byte_token(t); b >= 0) {
          bytes += char(b);
          ++run;
          continue;
        }
        flush();
        out.push_back(std::move(t));
      }
      flush();
      tokens = std::move(out);
      break;
    }
    case DecodeStep::Kind::bpe:
      for (size_t i = 0; i < tokens.size(); ++i) {
        std::string& t = tokens[i];
        const std::string with = i + 1 == tokens.size() ? "" : " ";
        std::string out;
        size_t at = 0;
        for (size_t hit = t.find(s.text); !s.text.empty() && hit != std::string::npos; hit = t.find(s.text, at)) {
          out.append(t, at, hit - at).append(with);
          at = hit + s.text.size();
        }
        out.append(t, at);
        t = std::move(out);
      }
      break;
  }
}

}  // namespace

DecoderChain DecoderChain::from_json(const nlohmann::json& j, const std::string& where) {
  DecoderChain d;
  parse_decoders_into(j, where, d.steps_);
  return d;
}

std::string DecoderChain::decode(std::vector<std::string> tokens) const {
  for (const DecodeStep& s : steps_) apply(s, tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string DecoderChain::decode_one(const std::string& token, bool first) const {
  std::vector<std::string> tokens;
  if (!first) tokens.emplace_back();  // a stand-in first token
  tokens.push_back(token);
  bool fused = false;
  for (const DecodeStep& s : steps_) {
    if (s.kind == DecodeStep::Kind::fuse) {
      fused = true;
      continue;
    }
    if (s.kind == DecodeStep::Kind::byte_fallback) {
      for (std::string& t : tokens) {
        if (const int b = byte_token(t); b >= 0) t.assign(1, char(b));
      }
      continue;
    }
    if (fused && !first) continue;  // the joined string's steps have acted on the stream's first token
    apply(s, tokens);
  }
  return tokens.back();
}

}  // namespace wick::tok

#include "tokenizer/post_processor.h"

#include <map>

#include <nlohmann/json.hpp>

#include "tokenizer/model.h"
#include "wick/error.h"

namespace wick::tok {

namespace {

using nlohmann::json;

// ["[CLS]", 101] of BertProcessing / RobertaProcessing.
int32_t token_pair_id(const json& j, const char* key, const std::string& here) {
  if (!j.contains(key) || !j[key].is_array() || j[key].size() != 2 || !j[key][0].is_string() ||
      !j[key][1].is_number_unsigned() || j[key][1].get<uint64_t>() > uint64_t(kMaxTokenId)) {
    fail(ErrorKind::corrupt, here + ": \"" + key + "\" must be [token, id]");
  }
  return int32_t(j[key][1].get<uint64_t>());
}

// One piece of a template: {"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", ...}}, or
// the string form "[CLS]", "$A", "$B", "$", "$0"... Returns the special token's name, or "" for a sequence.
std::string template_piece(const json& p, bool& is_sequence_a, const std::string& here) {
  is_sequence_a = false;
  if (p.is_string()) {
    std::string s = p.get<std::string>();
    if (const size_t colon = s.find(':'); colon != std::string::npos) s.resize(colon);  // ":type_id"
    if (s.empty() || s[0] != '$') return s;
    const std::string rest = s.substr(1);
    if (rest == "B" || rest == "b") return "";
    if (rest.empty() || rest == "A" || rest == "a" || rest.find_first_not_of("0123456789") == std::string::npos) {
      is_sequence_a = true;
      return "";
    }
    fail(ErrorKind::corrupt, here + ": template piece '" + p.get<std::string>() + "' is not understood");
  }
  if (p.is_object() && p.contains("Sequence") && p["Sequence"].is_object()) {
    is_sequence_a = p["Sequence"].value("id", std::string()) == "A";
    return "";
  }
  if (p.is_object() && p.contains("SpecialToken") && p["SpecialToken"].is_object() &&
      p["SpecialToken"].contains("id") && p["SpecialToken"]["id"].is_string()) {
    return p["SpecialToken"]["id"].get<std::string>();
  }
  fail(ErrorKind::corrupt, here + ": template piece " + p.dump() + " is not a SpecialToken or a Sequence");
}

// A template: a list of pieces, or a string of pieces separated by spaces.
std::vector<json> template_pieces(const json& t, const std::string& here) {
  std::vector<json> pieces;
  if (t.is_string()) {
    const std::string s = t.get<std::string>();
    for (size_t b = 0; b <= s.size();) {
      size_t e = s.find(' ', b);
      if (e == std::string::npos) e = s.size();
      pieces.emplace_back(s.substr(b, e - b));
      b = e + 1;
    }
  } else if (t.is_array()) {
    pieces.assign(t.begin(), t.end());
  } else {
    fail(ErrorKind::corrupt, here + ": a template must be a list of pieces");
  }
  return pieces;
}

void parse_into(const json& j, const std::string& where, std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    fail(ErrorKind::corrupt, where + ": post_processor without a \"type\"");
  }
  const std::string type = j["type"];
  const std::string here = where + ": post_processor " + type;
  std::vector<int32_t> before, after;  // what this step adds around what the steps before it made
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) {
      fail(ErrorKind::corrupt, where + ": post_processor Sequence without a \"processors\" array");
    }
    for (const auto& p : j["processors"]) parse_into(p, where, prefix, suffix);
    return;
  }
  if (type == "ByteLevel") return;
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    before.push_back(token_pair_id(j, "cls", here));
    after.push_back(token_pair_id(j, "sep", here));
  } else if (type == "TemplateProcessing") {
    // special_tokens: {"[CLS]": {"id": "[CLS]", "ids": [101], "tokens": ["[CLS]"]}, ...}
    std::map<std::string, std::vector<int32_t>> specials;
    if (j.contains("special_tokens") && j["special_tokens"].is_object()) {
      for (auto it = j["special_tokens"].begin(); it != j["special_tokens"].end(); ++it) {
        const json& ids = it.value().is_object() && it.value().contains("ids") ? it.value()["ids"] : json();
        if (!ids.is_array()) fail(ErrorKind::corrupt, here + ": special token '" + it.key() + "' without \"ids\"");
        auto& v = specials[it.key()];
        for (const auto& id : ids) {
          if (!id.is_number_unsigned() || id.get<uint64_t>() > uint64_t(kMaxTokenId)) {
            fail(ErrorKind::corrupt, here + ": special token '" + it.key() + "' has an id out of range");
          }
          v.push_back(int32_t(id.get<uint64_t>()));
        }
      }
    } else if (j.contains("special_tokens") && !j["special_tokens"].is_null()) {
      fail(ErrorKind::corrupt, here + ": \"special_tokens\" must be an object");
    }
    for (const char* which : {"single", "pair"}) {
      if (!j.contains(which)) fail(ErrorKind::corrupt, here + ": missing \"" + which + "\" template");
      bool seen_a = false;
      for (const json& p : template_pieces(j[which], here)) {
        bool is_a = false;
        const std::string name = template_piece(p, is_a, here);
        if (name.empty()) {
          if (is_a && seen_a && std::string(which) == "single") {
            fail(ErrorKind::unsupported, here + ": a \"single\" template with sequence $A twice");
          }
          seen_a = seen_a || is_a;
          if (std::string(which) == "single" && !is_a) {
            fail(ErrorKind::corrupt, here + ": the \"single\" template names sequence $B");
          }
          continue;
        }
        auto it = specials.find(name);
        if (it == specials.end()) {
          fail(ErrorKind::corrupt, here + ": template names special token '" + name + "', which \"special_tokens\" lacks");
        }
        if (std::string(which) == "single") {
          auto& side = seen_a ? after : before;
          side.insert(side.end(), it->second.begin(), it->second.end());
        }
      }
    }
  } else {
    fail(ErrorKind::unsupported, where + ": unsupported post_processor type '" + type + "'");
  }
  prefix.insert(prefix.begin(), before.begin(), before.end());
  suffix.insert(suffix.end(), after.begin(), after.end());
}

}  // namespace

PostProcessor PostProcessor::from_json(const nlohmann::json& j, const std::string& where) {
  PostProcessor p;
  if (!j.is_null()) parse_into(j, where, p.prefix_, p.suffix_);
  return p;
}

}  // namespace wick::tok

// The "post_processor" of tokenizer.json, for one sequence: the special tokens that HF adds around the ids when
// asked to (add_special_tokens=True). TemplateProcessing ("single" template; "pair" is checked but unused),
// BertProcessing and RobertaProcessing ([cls] ... [sep]), ByteLevel (adds nothing) and Sequences of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wick::tok {

class PostProcessor {
 public:
  /// Parses tokenizer.json's "post_processor" (null = adds nothing). Error{corrupt} naming `where` for a template
  /// that names an unknown special token, {unsupported} for another type.
  static PostProcessor from_json(const nlohmann::json& j, const std::string& where);

  /// Ids before and after the sequence's own ids.
  const std::vector<int32_t>& prefix() const { return prefix_; }
  const std::vector<int32_t>& suffix() const { return suffix_; }
  /// How many ids it adds to one sequence (HF's added_tokens(is_pair=false)).
  size_t added() const { return prefix_.size() + suffix_.size(); }

 private:
  std::vector<int32_t> prefix_, suffix_;
};

}  // namespace wick::tok

// Chat templates: Qwen's ChatML family recognised from the Jinja source and rendered natively.
// wick has no Jinja engine; a template it does not recognise is reported, never approximated.
#pragma once

#include <string>
#include <vector>

#include "wick/tokenizer.h"

namespace wick::tok {

class ChatTemplate {
 public:
  enum class Kind {
    none,         // no template in the files
    unsupported,  // a template that is not one of the forms below
    chatml,       // Qwen1.5 / Qwen2 / Qwen2.5: <|im_start|>role\ncontent<|im_end|>\n, optional default system
    qwen3,        // Qwen3: ChatML plus <think> handling and enable_thinking
  };

  /// Recognises the template's form from its Jinja source (empty = no template).
  static ChatTemplate parse(const std::string& source);

  Kind kind() const { return kind_; }
  /// The system prompt the template inserts when the conversation has none (empty = none), read from
  /// the template's '<|im_start|>system\n...<|im_end|>\n' literal.
  const std::string& default_system() const { return default_system_; }

  /// Throws Error{not_found} without a template, {unsupported} for an unrecognised one, and
  /// {bad_input} for a role the template does not render.
  std::string render(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options) const;

 private:
  Kind kind_ = Kind::none;
  std::string reason_;           // why a template is unsupported
  std::string default_system_;
  bool tool_response_ = false;   // "tool" messages go into a user turn as <tool_response> blocks
};

}  // namespace wick::tok

#include "tokenizer/chat_template.h"

#include "wick/error.h"

namespace wick::tok {

namespace {

// The template with whitespace removed and Jinja's whitespace-control dashes dropped, so that
// formatting differences between uploads of the same template do not matter.
std::string canonical(const std::string& s) {
  std::string t;
  t.reserve(s.size());
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') t += c;
  }
  for (const char* dash : {"{%-", "-%}", "{{-", "-}}"}) {
    const std::string from = dash;
    const std::string to = from[0] == '-' ? from.substr(1) : from.substr(0, 2);
    for (size_t at = t.find(from); at != std::string::npos; at = t.find(from, at)) t.replace(at, from.size(), to);
  }
  return t;
}

bool contains(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

std::string unescape_jinja(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    out += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
  }
  return out;
}

// Python's str.strip / lstrip / rstrip with the character set "\n".
std::string lstrip_nl(const std::string& s) {
  const size_t first = s.find_first_not_of('\n');
  return first == std::string::npos ? std::string() : s.substr(first);
}
std::string rstrip_nl(const std::string& s) {
  const size_t last = s.find_last_not_of('\n');
  return last == std::string::npos ? std::string() : s.substr(0, last + 1);
}
std::string strip_nl(const std::string& s) { return lstrip_nl(rstrip_nl(s)); }

bool is_tool_response(const std::string& s) {
  constexpr std::string_view open = "<tool_response>", close = "</tool_response>";
  return s.size() >= open.size() && s.compare(0, open.size(), open) == 0 && s.size() >= close.size() &&
         s.compare(s.size() - close.size(), close.size(), close) == 0;
}

// The text of a Jinja string literal '<|im_start|>system\n...<|im_end|>\n' (escapes resolved), or "".
std::string default_system_literal(const std::string& source) {
  const std::string open = R"('<|im_start|>system\n)", close = R"(<|im_end|>\n')";
  for (size_t at = source.find(open); at != std::string::npos; at = source.find(open, at + 1)) {
    std::string raw;
    for (size_t i = at + open.size(); i < source.size() && source[i] != '\'';) {
      if (source.compare(i, close.size(), close) == 0) return unescape_jinja(raw);
      const size_t n = source[i] == '\\' && i + 1 < source.size() ? 2 : 1;  // keep escapes whole
      raw.append(source, i, n);
      i += n;
    }
  }
  return {};
}

}  // namespace

ChatTemplate ChatTemplate::parse(const std::string& source) {
  ChatTemplate t;
  if (source.empty()) return t;
  t.kind_ = Kind::unsupported;
  const std::string c = canonical(source);
  const bool message_line =
      contains(c, R"('<|im_start|>'+message['role']+'\n'+message['content']+'<|im_end|>'+'\n')") ||
      contains(c, R"('<|im_start|>'+message.role+'\n'+message.content+'<|im_end|>'+'\n')");
  if (!contains(c, "<|im_start|>") || !message_line) {
    t.reason_ = "not a ChatML template (no '<|im_start|>' + role + content + '<|im_end|>' line)";
    return t;
  }
  const bool plain_prompt = contains(c, R"({%ifadd_generation_prompt%}{{'<|im_start|>assistant\n'}}{%endif%})");
  const bool qwen3_prompt = contains(
      c, R"({%ifadd_generation_prompt%}{{'<|im_start|>assistant\n'}}{%ifenable_thinkingisdefinedandenable_thinkingisfalse%}{{'<think>\n\n</think>\n\n'}}{%endif%}{%endif%})");
  const bool thinking = contains(c, "<think>") || contains(c, "</think>");
  if (qwen3_prompt && contains(c, "reasoning_content") && contains(c, "ns.last_query_index") &&
      contains(c, R"('\n<think>\n'+reasoning_content.strip('\n')+'\n</think>\n\n'+content.lstrip('\n'))")) {
    t.kind_ = Kind::qwen3;
  } else if (plain_prompt && !thinking) {
    t.kind_ = Kind::chatml;
  } else {
    t.reason_ = thinking ? "a ChatML template with <think> handling other than Qwen3's"
                         : "a ChatML template whose generation prompt is not '<|im_start|>assistant\\n'";
    return t;
  }
  t.tool_response_ = contains(c, "<tool_response>");
  // Default system prompt: a literal '<|im_start|>system\n...<|im_end|>\n' (Qwen2: "You are a helpful
  // assistant.", Qwen2.5: "You are Qwen, created by Alibaba Cloud. ..."), read from the original text.
  t.default_system_ = default_system_literal(source);
  return t;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options) const {
  if (kind_ == Kind::none) fail(ErrorKind::not_found, "chat template: the tokenizer has none (tokenizer_config.json \"chat_template\")");
  if (kind_ == Kind::unsupported) fail(ErrorKind::unsupported, "chat template: " + reason_);
  if (messages.empty()) fail(ErrorKind::bad_input, "chat template: no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant" && r != "tool") {
      fail(ErrorKind::bad_input, "chat template: messages[" + std::to_string(i) + "] has role '" + r +
                                     "'; expected system, user, assistant or tool");
    }
  }
  std::string out;
  auto block = [&](const std::string& role, const std::string& content) {
    out.append("<|im_start|>").append(role).append("\n").append(content).append("<|im_end|>\n");
  };
  if (messages[0].role != "system" && !default_system_.empty()) block("system", default_system_);

  // Qwen3: assistant turns after the last real user query keep their reasoning.
  size_t last_query = messages.size() - 1;
  if (kind_ == Kind::qwen3) {
    for (size_t k = messages.size(); k-- > 0;) {
      if (messages[k].role == "user" && !is_tool_response(messages[k].content)) {
        last_query = k;
        break;
      }
    }
  }

  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool last = i + 1 == messages.size();
    if (m.role == "tool" && tool_response_) {
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out.append("\n<tool_response>\n").append(m.content).append("\n</tool_response>");
      if (last || messages[i + 1].role != "tool") out += "<|im_end|>\n";
      continue;
    }
    if (m.role != "assistant" || kind_ != Kind::qwen3) {
      block(m.role, m.content);
      continue;
    }
    std::string content = m.content, reasoning;
    if (m.reasoning_content) {
      reasoning = *m.reasoning_content;
    } else if (const size_t close = content.find("</think>"); close != std::string::npos) {
      const size_t last_close = content.rfind("</think>");
      std::string before = rstrip_nl(content.substr(0, close));
      const size_t open = before.rfind("<think>");
      reasoning = lstrip_nl(open == std::string::npos ? before : before.substr(open + 7));
      content = lstrip_nl(content.substr(last_close + 8));
    }
    out += "<|im_start|>assistant\n";
    if (i > last_query && (last || !reasoning.empty())) {
      out.append("<think>\n").append(strip_nl(reasoning)).append("\n</think>\n\n").append(lstrip_nl(content));
    } else {
      out += content;
    }
    out += "<|im_end|>\n";
  }
  if (options.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (kind_ == Kind::qwen3 && options.enable_thinking == false) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

}  // namespace wick::tok

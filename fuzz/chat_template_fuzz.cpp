// Chat templates: recognising a template from its Jinja source (tokenizer_config.json's "chat_template" or
// chat_template.jinja) and rendering conversations with it, as Tokenizer::apply_chat_template does.
// Input: the template, optionally followed by '\0'-separated messages, each a role byte (its value mod 5 picks
// system, user, assistant, tool or an unknown role) and the content; rendered beside three fixed conversations.
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = wick::fuzz::text(data, size);
  const size_t nul = input.find('\0');
  const wick::tok::ChatTemplate chat = wick::tok::ChatTemplate::parse(std::string(input.substr(0, nul)));

  std::vector<std::vector<wick::ChatMessage>> conversations = {
      {{.role = "user", .content = "Hi"}},
      {{.role = "system", .content = "Be brief."}, {.role = "user", .content = "Hi"},
       {.role = "assistant", .content = "<think>\nhm\n</think>\n\nHello"}, {.role = "user", .content = "More"}},
      {{.role = "user", .content = "Hi"}, {.role = "assistant", .content = "Yes", .reasoning_content = "why"},
       {.role = "tool", .content = "<tool_response>42</tool_response>"}},
  };
  if (nul != std::string_view::npos) {
    static const char* const roles[] = {"system", "user", "assistant", "tool", "developer"};
    std::vector<wick::ChatMessage>& fuzzed = conversations.emplace_back();
    std::string_view rest = input.substr(nul + 1);
    while (!rest.empty()) {
      const size_t end = rest.find('\0');
      const std::string_view part = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
      if (part.empty()) continue;
      fuzzed.push_back({.role = roles[uint8_t(part[0]) % 5], .content = std::string(part.substr(1))});
    }
  }
  for (const auto& messages : conversations)
    for (const wick::ChatTemplateOptions& options :
         {wick::ChatTemplateOptions{}, wick::ChatTemplateOptions{.add_generation_prompt = true},
          wick::ChatTemplateOptions{.add_generation_prompt = true, .enable_thinking = false}})
      wick::fuzz::expect_only_wick_errors([&] { (void)chat.render(messages, options); });
  return 0;
}

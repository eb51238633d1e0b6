// Chat templates: Qwen2 / Qwen2.5 / Qwen3 ChatML rendered natively, compared with jinja2 renderings of
// the same templates (templates/*.expected.jsonl, qwen.chat.jsonl in reference_test.cpp); other
// templates are reported, never approximated.
#include <gtest/gtest.h>

#include "tokenizer_test_util.h"

namespace wick::test {
namespace {

Tokenizer with_template(const std::string& jinja) {
  nlohmann::json config = {{"chat_template", jinja}, {"eos_token", "<|endoftext|>"}};
  return Tokenizer::from_json(read_file(tok_fixture("trained/tokenizer.json")), config.dump());
}

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j) {
    ChatMessage msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
    if (m.contains("reasoning_content")) msg.reasoning_content = m["reasoning_content"].get<std::string>();
    out.push_back(std::move(msg));
  }
  return out;
}

void check_expected(const std::string& name) {
  const Tokenizer tok = with_template(read_file(tok_fixture("templates/" + name + ".jinja")));
  ASSERT_TRUE(tok.has_chat_template());
  const auto cases = read_jsonl(tok_fixture("templates/" + name + ".expected.jsonl"));
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    EXPECT_EQ(tok.apply_chat_template(messages_of(c["messages"]), c["add_generation_prompt"].get<bool>()),
              c["text"].get<std::string>())
        << name << ": " << c["messages"].dump();
  }
}

TEST(ChatTemplate, Qwen2EqualsJinja) { check_expected("qwen2"); }
TEST(ChatTemplate, Qwen25EqualsJinja) { check_expected("qwen2_5"); }

TEST(ChatTemplate, DefaultSystemPromptIsReadFromTheTemplate) {
  const Tokenizer qwen25 = with_template(read_file(tok_fixture("templates/qwen2_5.jinja")));
  EXPECT_EQ(qwen25.apply_chat_template({{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // The same template with another default prompt (as Qwen2.5-Math ships) uses that one.
  std::string math = read_file(tok_fixture("templates/qwen2_5.jinja"));
  const std::string from = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>";
  math.replace(math.find(from), from.size(), "Please reason step by step, and put your final answer within \\\\boxed{}.<|im_end|>");
  EXPECT_EQ(with_template(math).apply_chat_template({{"user", "1+1"}}, false),
            "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
            "<|im_start|>user\n1+1<|im_end|>\n");
}

TEST(ChatTemplate, Qwen3HasNoDefaultSystemAndHonoursEnableThinking) {
  WICK_NEED_QWEN(tok);
  ASSERT_TRUE(tok->has_chat_template());
  EXPECT_EQ(tok->apply_chat_template({{"user", "Hi"}}, true), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(tok->apply_chat_template({{"user", "Hi"}}, {.add_generation_prompt = true, .enable_thinking = false}),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(tok->eos_token_id(), tok->token_id("<|im_end|>"));
  EXPECT_EQ(tok->pad_token_id(), tok->token_id("<|endoftext|>"));
  EXPECT_EQ(tok->bos_token_id(), std::nullopt);
}

TEST(ChatTemplate, UnknownTemplatesAreUnsupported) {
  for (const char* name : {"qwq_like", "llama3_like"}) {
    const Tokenizer tok = with_template(read_file(tok_fixture(std::string("templates/") + name + ".jinja")));
    EXPECT_TRUE(tok.has_chat_template());
    EXPECT_WICK_ERROR(tok.apply_chat_template({{"user", "Hi"}}, true), ErrorKind::unsupported, "chat template");
  }
}

TEST(ChatTemplate, MissingTemplateAndBadRolesAreErrors) {
  const Tokenizer none = Tokenizer::load(tok_fixture("trained/tokenizer.json"));
  EXPECT_FALSE(none.has_chat_template());
  EXPECT_WICK_ERROR(none.apply_chat_template({{"user", "Hi"}}, true), ErrorKind::not_found, "chat template");
  const Tokenizer tok = with_template(read_file(tok_fixture("templates/qwen2.jinja")));
  EXPECT_WICK_ERROR(tok.apply_chat_template({{"developer", "Hi"}}, true), ErrorKind::bad_input, "developer");
  EXPECT_WICK_ERROR(tok.apply_chat_template({}, true), ErrorKind::bad_input, "no messages");
}

TEST(ChatTemplate, ChatTemplateJinjaFileBesideTheConfigWins) {
  const auto dir = temp_dir("chat");
  write_file(dir / "tokenizer.json", read_file(tok_fixture("trained/tokenizer.json")));
  write_file(dir / "tokenizer_config.json", nlohmann::json{{"chat_template", "{{ bos_token }}"}}.dump());
  write_file(dir / "chat_template.jinja", read_file(tok_fixture("templates/qwen2.jinja")));
  EXPECT_EQ(Tokenizer::load(dir).apply_chat_template({{"system", "S"}, {"user", "U"}}, false),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n");
}

}  // namespace
}  // namespace wick::test

// JSONL training data → ids and labels (src/train/dataset.h), checked against the tokenizer's own encode of
// the pieces each format is made of, and the batch order.
#include "train/dataset.h"

#include <algorithm>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace wick {
namespace {

using test::fixture;

// A fresh data.jsonl; its path as a string, as error messages print it.
std::string write_jsonl(std::string_view text) {
  const auto path = test::temp_dir("data") / "data.jsonl";
  test::write_file(path, text);
  return path.string();
}

const Tokenizer* qwen3() {  // Qwen3's tokenizer and template; eos_token <|im_end|>
  static const std::optional<Tokenizer> tok = []() -> std::optional<Tokenizer> {
    if (!std::filesystem::exists(fixture("tokenizer/qwen/tokenizer.json"))) return std::nullopt;
    return Tokenizer::load(fixture("tokenizer/qwen"));
  }();
  return tok ? &*tok : nullptr;
}

// The same vocabulary with Qwen2's plain ChatML template (default system prompt).
const Tokenizer* qwen2_chatml() {
  static const std::optional<Tokenizer> tok = []() -> std::optional<Tokenizer> {
    if (!qwen3()) return std::nullopt;
    const auto dir = test::temp_dir("qwen2");
    std::filesystem::copy_file(fixture("tokenizer/qwen/tokenizer.json"), dir / "tokenizer.json");
    test::write_file(dir / "tokenizer_config.json", R"({"eos_token": "<|im_end|>"})");
    std::filesystem::copy_file(fixture("tokenizer/templates/qwen2.jinja"), dir / "chat_template.jinja");
    return Tokenizer::load(dir);
  }();
  return tok ? &*tok : nullptr;
}

#define NEED_QWEN(tok, getter)        \
  const Tokenizer* tok = getter();    \
  if (!tok) GTEST_SKIP() << "tests/fixtures/tokenizer/qwen is absent: run scripts/fetch_tokenizer.sh"

const Tokenizer& trained() {  // no tokenizer_config.json: no EOS, no template
  static const Tokenizer tok = Tokenizer::load(fixture("tokenizer/trained"));
  return tok;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The maximal runs of labelled positions, each as the ids it holds; labels must equal ids where set.
std::vector<std::vector<int32_t>> labelled_runs(const std::vector<int32_t>& ids, const std::vector<int32_t>& labels) {
  std::vector<std::vector<int32_t>> runs;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (labels[i] == kIgnoreLabel) continue;
    EXPECT_EQ(labels[i], ids[i]) << "position " << i;
    if (i == 0 || labels[i - 1] == kIgnoreLabel) runs.emplace_back();
    runs.back().push_back(ids[i]);
  }
  return runs;
}

std::string messages_line(const std::vector<ChatMessage>& messages) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return nlohmann::json{{"messages", list}}.dump() + "\n";
}

const std::vector<std::vector<ChatMessage>> kConversations = {
    {{.role = "user", .content = "What is 2+2?"}, {.role = "assistant", .content = "2+2 = 4."}},
    {{.role = "system", .content = "Answer briefly."},
     {.role = "user", .content = "Name a colour."},
     {.role = "assistant", .content = "Blue"},
     {.role = "user", .content = "Another, in French?"},
     {.role = "assistant", .content = "Vert, comme l'herbe. 🌿"}},
    {{.role = "user", .content = "Write code."}, {.role = "assistant", .content = "def f(x):\n    return x * 2\n"}},
};

// --- formats -------------------------------------------------------------------------------------------

TEST(DatasetText, LossOnEveryTokenUnshifted) {
  const auto path = write_jsonl("{\"text\": \"Hello world, café.\"}\n\n  \n{\"text\": \"New York is big\", \"id\": 7}\n");
  const auto examples = load_jsonl(path, &trained(), {.seq_len = 64});
  ASSERT_EQ(examples.size(), 2u);
  EXPECT_EQ(examples[0].ids, trained().encode("Hello world, café."));  // no eos_token: nothing appended
  EXPECT_EQ(examples[0].labels, examples[0].ids);
  EXPECT_EQ(examples[0].line, 1);
  EXPECT_EQ(examples[1].ids, trained().encode("New York is big"));
  EXPECT_EQ(examples[1].line, 4);  // blank lines are skipped but counted
}

TEST(DatasetText, AppendsEosOnceAsTrlDoes) {
  NEED_QWEN(tok, qwen3);
  const int32_t eos = *tok->eos_token_id();
  ASSERT_EQ(tok->token_text(eos), "<|im_end|>");
  const auto path = write_jsonl("{\"text\": \"Hello world\"}\n{\"text\": \"Done<|im_end|>\"}\n");
  const auto examples = load_jsonl(path, tok, {.seq_len = 64});
  EXPECT_EQ(examples[0].ids, concat(tok->encode("Hello world"), {eos}));
  EXPECT_EQ(examples[0].labels, examples[0].ids);
  EXPECT_EQ(examples[1].ids, tok->encode("Done<|im_end|>"));  // already ends with EOS
  EXPECT_EQ(examples[1].ids.back(), eos);
  const auto plain = load_jsonl(path, tok, {.seq_len = 64, .append_eos = false});
  EXPECT_EQ(plain[0].ids, tok->encode("Hello world"));
}

TEST(DatasetPromptCompletion, LossOnCompletionAndEos) {
  NEED_QWEN(tok, qwen3);
  const int32_t eos = *tok->eos_token_id();
  const auto path = write_jsonl(R"({"prompt": "Q: What is 2+2?\nA:", "completion": " 4, of course."})" "\n");
  const Example e = load_jsonl(path, tok, {.seq_len = 64})[0];
  const auto prompt = tok->encode("Q: What is 2+2?\nA:"), completion = tok->encode(" 4, of course.");
  EXPECT_EQ(e.ids, concat(concat(prompt, completion), {eos}));
  // Here BPE does not merge across the boundary, so this is also TRL's tokenize(prompt + completion + eos).
  EXPECT_EQ(e.ids, tok->encode("Q: What is 2+2?\nA: 4, of course.<|im_end|>"));
  for (size_t i = 0; i < prompt.size(); ++i) EXPECT_EQ(e.labels[i], kIgnoreLabel) << i;
  const auto runs = labelled_runs(e.ids, e.labels);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(tok->decode(runs[0]), " 4, of course.<|im_end|>");
}

TEST(DatasetPromptCompletion, TokenizedSeparatelyAtAMergingBoundary) {
  NEED_QWEN(tok, qwen3);
  // "Answer: " + "yes": jointly BPE gives " yes"; separately " " then "yes", as the model sees at inference.
  const auto path = write_jsonl(R"({"prompt": "Answer: ", "completion": "yes"})" "\n");
  const Example e = load_jsonl(path, tok, {.seq_len = 64, .append_eos = false})[0];
  EXPECT_EQ(e.ids, concat(tok->encode("Answer: "), tok->encode("yes")));
  EXPECT_NE(e.ids, tok->encode("Answer: yes"));
  EXPECT_EQ(std::vector<int32_t>(e.labels.end() - std::ptrdiff_t(tok->encode("yes").size()), e.labels.end()),
            tok->encode("yes"));
}

TEST(DatasetMessages, ChatmlAssistantTurnsDecodeToContentAndImEnd) {
  NEED_QWEN(tok, qwen2_chatml);
  std::string lines;
  for (const auto& c : kConversations) lines += messages_line(c);
  const auto examples = load_jsonl(write_jsonl(lines), tok, {.seq_len = 512});
  ASSERT_EQ(examples.size(), kConversations.size());
  for (size_t n = 0; n < kConversations.size(); ++n) {
    SCOPED_TRACE(n);
    const auto& conversation = kConversations[n];
    EXPECT_EQ(examples[n].ids, tok->encode(tok->apply_chat_template(conversation, false)));
    std::vector<std::string> want;
    for (const auto& m : conversation) {
      if (m.role == "assistant") want.push_back(m.content + "<|im_end|>");
    }
    std::vector<std::string> got;
    for (const auto& run : labelled_runs(examples[n].ids, examples[n].labels)) got.push_back(tok->decode(run));
    EXPECT_EQ(got, want);
  }
}

// The assistant spans sit after "\n" and after <|im_end|>: tokenizing the pieces between them separately
// gives the ids of the whole rendered text (what tokenize_chat's fallback path relies on).
TEST(DatasetMessages, PiecesTokenizeLikeTheWholeText) {
  NEED_QWEN(tok, qwen3);
  for (const Tokenizer* t : {qwen2_chatml(), qwen3()}) {
    for (const auto& conversation : kConversations) {
      const std::string text = t->apply_chat_template(conversation, false);
      std::vector<int32_t> pieces;
      size_t prev = 0;
      const std::string header = "<|im_start|>assistant\n", close = "<|im_end|>";
      for (size_t at = text.find(header); at != std::string::npos; at = text.find(header, at + 1)) {
        const size_t begin = at + header.size(), end = text.find(close, begin) + close.size();
        t->encode(text.substr(prev, begin - prev), pieces);
        t->encode(text.substr(begin, end - begin), pieces);
        prev = end;
      }
      t->encode(text.substr(prev), pieces);
      EXPECT_EQ(pieces, t->encode(text)) << text;
    }
  }
}

TEST(DatasetMessages, Qwen3LabelsTheThinkBlockItWrites) {
  NEED_QWEN(tok, qwen3);
  const ChatTokens chat = tokenize_chat(*tok, kConversations[1]);
  std::vector<std::string> got;
  for (const auto& run : labelled_runs(chat.ids, chat.labels)) got.push_back(tok->decode(run));
  // Qwen3 renders an empty <think> block in the last assistant turn (after the last user query).
  EXPECT_EQ(got, (std::vector<std::string>{"Blue<|im_end|>", "<think>\n\n</think>\n\nVert, comme l'herbe. 🌿<|im_end|>"}));
}

TEST(DatasetMessages, TokenStraddlingTheHeaderIsLabelledAsTransformersDoes) {
  NEED_QWEN(tok, qwen2_chatml);
  // Content starting with "\n": the header's "\n" and it form one token "\n\n", which overlaps the turn.
  const ChatTokens chat = tokenize_chat(*tok, {{.role = "user", .content = "Hi"}, {.role = "assistant", .content = "\nHello"}});
  EXPECT_EQ(chat.ids, tok->encode(tok->apply_chat_template({{.role = "user", .content = "Hi"}, {.role = "assistant", .content = "\nHello"}}, false)));
  const auto runs = labelled_runs(chat.ids, chat.labels);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(tok->decode(runs[0]), "\n\nHello<|im_end|>");
}

TEST(DatasetMessages, TextTheNormalizerChangesFallsBackToPieces) {
  NEED_QWEN(tok, qwen2_chatml);
  // "e" + U+0301 becomes "é" under NFC, so token bytes no longer line up with the rendered text.
  const std::vector<ChatMessage> conversation = {{.role = "user", .content = "Cafe\xcc\x81?"},
                                                 {.role = "assistant", .content = "Cafe\xcc\x81 au lait"}};
  const ChatTokens chat = tokenize_chat(*tok, conversation);
  EXPECT_EQ(chat.ids, tok->encode(tok->apply_chat_template(conversation, false)));
  const auto runs = labelled_runs(chat.ids, chat.labels);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(tok->decode(runs[0]), "Caf\xc3\xa9 au lait<|im_end|>");
}

TEST(DatasetInputIds, LabelsDefaultToIdsAndMayHoldMinus100) {
  const auto path = write_jsonl("{\"input_ids\": [5, 6, 7]}\n{\"input_ids\": [1, 2, 3, 4], \"labels\": [-100, -100, 3, 9]}\n");
  const auto examples = load_jsonl(path, nullptr, {.seq_len = 16, .vocab_size = 10});
  EXPECT_EQ(examples[0].ids, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(examples[0].labels, examples[0].ids);
  EXPECT_EQ(examples[1].labels, (std::vector<int32_t>{-100, -100, 3, 9}));
  // Without vocab_size the tokenizer's vocabulary bounds the ids.
  EXPECT_EQ(load_jsonl(path, &trained(), {.seq_len = 16}).size(), 2u);
}

TEST(DatasetTruncation, KeepsTheFirstSeqLenTokens) {
  const auto path = write_jsonl("{\"input_ids\": [1, 2, 3, 4, 5, 6], \"labels\": [-100, 2, 3, 4, 5, 6]}\n"
                                "{\"text\": \"Hello world, this is a longer line of text.\"}\n");
  const auto examples = load_jsonl(path, &trained(), {.seq_len = 4});
  EXPECT_EQ(examples[0].ids, (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(examples[0].labels, (std::vector<int32_t>{-100, 2, 3, 4}));
  const auto full = trained().encode("Hello world, this is a longer line of text.");
  ASSERT_GT(full.size(), 4u);
  EXPECT_EQ(examples[1].ids, std::vector<int32_t>(full.begin(), full.begin() + 4));
}

// --- bad input: each names the file and the line ----------------------------------------------------

struct BadLine {
  const char* name;
  std::string lines;
  ErrorKind kind;
  const char* needle;
};

TEST(DatasetErrors, EachBadLineNamesFileAndLine) {
  const std::vector<BadLine> cases = {
      {"malformed JSON", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n", ErrorKind::corrupt, "not valid JSON"},
      {"not an object", "{\"text\": \"ok\"}\n[1, 2]\n", ErrorKind::corrupt, "expected a JSON object"},
      {"number past a double", "{\"text\": \"ok\"}\n{\"input_ids\": [1e400]}\n", ErrorKind::corrupt,
       "a number does not fit a double"},
      {"no known keys", "{\"text\": \"ok\"}\n{\"question\": \"q\", \"answer\": \"a\"}\n", ErrorKind::corrupt, "'question'"},
      {"two formats", "{\"text\": \"ok\"}\n{\"text\": \"a\", \"input_ids\": [1]}\n", ErrorKind::corrupt, "more than one format"},
      {"prompt alone", "{\"text\": \"ok\"}\n{\"prompt\": \"q\"}\n", ErrorKind::corrupt, "'prompt' without 'completion'"},
      {"text not a string", "{\"text\": \"ok\"}\n{\"text\": 5}\n", ErrorKind::corrupt, "field 'text': expected a string"},
      {"content not a string", "{\"text\": \"ok\"}\n{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}\n",
       ErrorKind::corrupt, "messages[0]: field 'content'"},
      {"messages not a list", "{\"text\": \"ok\"}\n{\"messages\": \"hi\"}\n", ErrorKind::corrupt, "'messages'"},
      {"id not an integer", "{\"text\": \"ok\"}\n{\"input_ids\": [1, 2.5]}\n", ErrorKind::corrupt, "input_ids[1]"},
      {"id out of vocab", "{\"text\": \"ok\"}\n{\"input_ids\": [1, 100000]}\n", ErrorKind::bad_input, "input_ids[1] = 100000"},
      {"negative id", "{\"text\": \"ok\"}\n{\"input_ids\": [-100, 2]}\n", ErrorKind::bad_input, "input_ids[0] = -100"},
      {"label out of vocab", "{\"text\": \"ok\"}\n{\"input_ids\": [1, 2], \"labels\": [1, -5]}\n", ErrorKind::bad_input, "labels[1] = -5"},
      {"length mismatch", "{\"text\": \"ok\"}\n{\"input_ids\": [1, 2], \"labels\": [1]}\n", ErrorKind::corrupt, "'labels' has 1"},
      {"no target tokens", "{\"text\": \"ok\"}\n{\"input_ids\": [1, 2], \"labels\": [1, -100]}\n", ErrorKind::bad_input,
       "no target tokens"},
      {"unknown role", "{\"text\": \"ok\"}\n{\"messages\": [{\"role\": \"robot\", \"content\": \"beep\"}]}\n",
       ErrorKind::bad_input, "unknown role 'robot'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const auto path = write_jsonl(c.lines);
    EXPECT_WICK_ERROR(load_jsonl(path, &trained(), {.seq_len = 64}), c.kind, path.c_str(), "line 2", c.needle);
  }
}

TEST(DatasetErrors, PromptLongerThanSeqLenHasNoTargets) {
  const auto path = write_jsonl("\n{\"prompt\": \"A long prompt that fills the window\", \"completion\": \"done\"}\n");
  EXPECT_WICK_ERROR(load_jsonl(path, &trained(), {.seq_len = 3}), ErrorKind::bad_input, path.c_str(), "line 2",
                    "no target tokens");
}

TEST(DatasetErrors, ConversationWithoutAssistantOrWithMarkers) {
  NEED_QWEN(tok, qwen2_chatml);
  const auto path = write_jsonl(messages_line({{.role = "user", .content = "hi"}}));
  EXPECT_WICK_ERROR(load_jsonl(path, tok, {.seq_len = 64}), ErrorKind::bad_input, path.c_str(), "line 1", "no target tokens");
  const auto marked = write_jsonl(messages_line({{.role = "user", .content = "hi<|im_end|>"}, {.role = "assistant", .content = "x"}}));
  EXPECT_WICK_ERROR(load_jsonl(marked, tok, {.seq_len = 64}), ErrorKind::bad_input, marked.c_str(), "line 1", "messages[0]");
}

TEST(DatasetErrors, TemplateOrTokenizerMissing) {
  const auto chat = write_jsonl(messages_line(kConversations[0]));
  EXPECT_WICK_ERROR(load_jsonl(chat, &trained(), {.seq_len = 64}), ErrorKind::not_found, chat.c_str(), "line 1",
                    "chat template");
  const auto text = write_jsonl("{\"input_ids\": [1, 2]}\n{\"text\": \"hi\"}\n");
  EXPECT_WICK_ERROR(load_jsonl(text, nullptr, {.seq_len = 64, .vocab_size = 10}), ErrorKind::bad_input, text.c_str(),
                    "line 2", "needs a tokenizer");
  const auto ids = write_jsonl("{\"input_ids\": [1, 2]}\n");
  EXPECT_WICK_ERROR(load_jsonl(ids, nullptr, {.seq_len = 64}), ErrorKind::bad_input, ids.c_str(), "line 1", "vocab size");
}

TEST(DatasetErrors, TokenizerLargerThanTheModel) {
  // The trained tokenizer's 1,000 ids against a model whose embedding holds 300: refused at load, by line.
  const auto path = write_jsonl("{\"input_ids\": [1, 2]}\n{\"text\": \"Hello world, the quick brown fox\"}\n");
  EXPECT_WICK_ERROR(load_jsonl(path, &trained(), {.seq_len = 64, .vocab_size = 300}), ErrorKind::bad_input,
                    path.c_str(), "line 2", "the tokenizer gave token id", "[0, 300)");
}

TEST(DatasetErrors, EmptyFileNamesTheFile) {
  for (const char* text : {"", "\n  \n\n"}) {
    const auto path = write_jsonl(text);
    EXPECT_WICK_ERROR(load_jsonl(path, &trained(), {.seq_len = 64}), ErrorKind::bad_input, path.c_str(), "no examples");
  }
  EXPECT_WICK_ERROR(load_jsonl("/nonexistent/data.jsonl", &trained(), {.seq_len = 64}), ErrorKind::not_found,
                    "/nonexistent/data.jsonl");
}

// --- batches -------------------------------------------------------------------------------------------

std::vector<std::vector<int64_t>> take(Batcher& b, int n) {
  std::vector<std::vector<int64_t>> out;
  for (int i = 0; i < n; ++i) out.push_back(b.next());
  return out;
}

TEST(Batcher, FileOrderWithAShortLastBatch) {
  Batcher b(5, {.batch_size = 2, .shuffle = false});
  EXPECT_EQ(take(b, 4), (std::vector<std::vector<int64_t>>{{0, 1}, {2, 3}, {4}, {0, 1}}));
  EXPECT_EQ(b.position(), (BatchPosition{1, 2}));
}

TEST(Batcher, ShuffleIsAFixedPermutationPerEpoch) {
  Batcher b(10, {.batch_size = 10, .shuffle = true, .seed = 42});
  const auto e0 = b.next(), e1 = b.next();
  // Pinned, and reproduced by a separate Python mt19937_64 (checked against the standard's 10000th output
  // 9981545732273789042) running the same Fisher-Yates and rejection draw: the order is platform-independent.
  EXPECT_EQ(e0, b.epoch_order(0));
  EXPECT_EQ(e1, b.epoch_order(1));
  EXPECT_EQ(e0, (std::vector<int64_t>{1, 7, 9, 0, 3, 8, 4, 2, 5, 6}));
  EXPECT_NE(e0, e1);
  for (const auto& order : {e0, e1}) {
    EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), 10u);
    EXPECT_EQ(*std::min_element(order.begin(), order.end()), 0);
    EXPECT_EQ(*std::max_element(order.begin(), order.end()), 9);
  }
  Batcher other(10, {.batch_size = 3, .shuffle = true, .seed = 42});
  std::vector<int64_t> joined;
  for (int i = 0; i < 4; ++i) {
    const auto batch = other.next();
    joined.insert(joined.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(joined, e0);  // batch size does not change the order
  EXPECT_NE(Batcher(10, {.batch_size = 10, .seed = 7}).next(), e0);
}

TEST(Batcher, EveryExampleOncePerEpoch) {
  for (int64_t n : {1, 2, 7, 100}) {
    Batcher b(n, {.batch_size = 4, .shuffle = true, .seed = 3});
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      std::vector<int64_t> seen;
      while (b.position().epoch == epoch) {
        const auto batch = b.next();
        seen.insert(seen.end(), batch.begin(), batch.end());
      }
      std::sort(seen.begin(), seen.end());
      std::vector<int64_t> want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) want[size_t(i)] = i;
      EXPECT_EQ(seen, want) << "n " << n << " epoch " << epoch;
    }
  }
}

TEST(Batcher, PositionRoundTripResumesTheSameBatches) {
  const Batcher::Options options{.batch_size = 3, .shuffle = true, .seed = 11};
  Batcher a(8, options);
  take(a, 4);  // into epoch 1
  const BatchPosition saved = a.position();
  EXPECT_EQ(saved, (BatchPosition{1, 3}));
  const auto rest = take(a, 5);
  Batcher resumed(8, options, saved);
  EXPECT_EQ(take(resumed, 5), rest);
  Batcher moved(8, options);
  moved.set_position(saved);
  EXPECT_EQ(take(moved, 5), rest);
  EXPECT_WICK_ERROR(moved.set_position({0, 8}), ErrorKind::bad_input, "index 8");
  EXPECT_WICK_ERROR(Batcher(0, options), ErrorKind::bad_input, "no examples");
  EXPECT_WICK_ERROR(Batcher(4, {.batch_size = 0}), ErrorKind::bad_input, "batch size");
}

}  // namespace
}  // namespace wick

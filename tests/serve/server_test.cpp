// wick::Server over loopback with the demo model: answers equal the Generator's and `wick generate`'s, streams are
// well-formed server-sent events, every error is OpenAI's error object with its status, adapters load, replace and
// go, a client leaving mid-stream frees its KV blocks, and the server survives hostile bodies.
#include <cstdio>
#include <random>
#include <set>

#include "serve_test_util.h"
#include "test_util.h"
#include "wick/generator.h"

namespace wick {
namespace {

using nlohmann::json;
using test::get;
using test::post;
using test::expect_error;
using test::TestServer;

// What the engine-independent single-sequence Generator answers for `prompt` greedily.
GenerateResult greedy_alone(const std::vector<int32_t>& prompt, int32_t max_tokens, int top_logprobs = 0) {
  const Generator gen(test::demo_model(), test::demo_tokenizer());
  SamplingParams s = SamplingParams::greedy_params();
  s.top_logprobs = top_logprobs;
  return gen.generate(prompt, {.max_tokens = max_tokens, .sampling = s});
}

TEST(Server, CompletionEqualsTheGeneratorGreedily) {
  TestServer s;
  auto c = s.client();
  const std::string prompt = "In the beginning the river";
  const test::Reply r = post(c, "/v1/completions",
                             json{{"model", "wick-demo"}, {"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0},
                                  {"ignore_eos", true}});
  ASSERT_EQ(r.status, 200) << r.text;
  const std::vector<int32_t> ids = test::demo_tokenizer().encode(prompt);
  SamplingParams greedy = SamplingParams::greedy_params();
  const GenerateResult alone = Generator(test::demo_model(), test::demo_tokenizer())
                                   .generate(ids, {.max_tokens = 24, .ignore_eos = true, .sampling = greedy});
  EXPECT_EQ(r.body["object"], "text_completion");
  EXPECT_EQ(r.body["model"], "wick-demo");
  EXPECT_EQ(r.body["choices"][0]["text"], alone.text);
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], ids.size());
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 24);
  EXPECT_EQ(r.body["usage"]["total_tokens"], ids.size() + 24);
}

TEST(Server, ChatWithAnAdapterEqualsWickGenerate) {
  TestServer s;
  auto c = s.client();
  const std::vector<ChatMessage> messages = {{"system", "You answer briefly."}, {"user", "Where does the river go?"}};
  json body = {{"model", "scripture"}, {"max_tokens", 20}, {"temperature", 0}, {"messages", json::array()}};
  for (const ChatMessage& m : messages) body["messages"].push_back({{"role", m.role}, {"content", m.content}});
  const test::Reply r = post(c, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["object"], "chat.completion");
  EXPECT_EQ(r.body["choices"][0]["message"]["role"], "assistant");
  const std::string answer = r.body["choices"][0]["message"]["content"];
  const std::string expected = test::cli_generate(test::chat_ids(messages), 20, test::scripture_adapter_dir().string());
  EXPECT_EQ(answer, expected);
  // The adapter matters: the base model answers otherwise.
  body["model"] = "wick-demo";
  const test::Reply base = post(c, "/v1/chat/completions", body);
  ASSERT_EQ(base.status, 200);
  EXPECT_EQ(base.body["choices"][0]["message"]["content"], test::cli_generate(test::chat_ids(messages), 20, ""));
  EXPECT_NE(base.body["choices"][0]["message"]["content"], answer);
}

TEST(Server, StreamIsWellFormedAndEqualsTheWholeAnswer) {
  TestServer s;
  auto c = s.client();
  for (const bool chat : {false, true}) {
    SCOPED_TRACE(chat ? "chat" : "completions");
    json body = {{"model", "scripture"}, {"max_tokens", 16}, {"temperature", 0}, {"ignore_eos", true}};
    if (chat) body["messages"] = json::array({{{"role", "user"}, {"content", "Sing of the sea"}}});
    else body["prompt"] = "Sing of the sea";
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    const test::Reply whole = post(c, path, body);
    ASSERT_EQ(whole.status, 200);
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
    const httplib::Result res = c.Post(path, body.dump(), "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
    const std::vector<std::string> events = test::sse_events(res->body);
    ASSERT_GE(events.size(), 3u);
    EXPECT_EQ(events.back(), "[DONE]");
    std::string text;
    int content_chunks = 0;
    std::string finish;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
      const json e = json::parse(events[i]);
      EXPECT_EQ(e["object"], chat ? "chat.completion.chunk" : "text_completion");
      EXPECT_EQ(e["id"], events.size() > 1 ? json::parse(events[0])["id"] : e["id"]);
      if (i + 2 == events.size()) {  // the usage chunk: no choices
        EXPECT_TRUE(e["choices"].empty());
        EXPECT_EQ(e["usage"]["completion_tokens"], 16);
        EXPECT_EQ(e["usage"]["prompt_tokens"], whole.body["usage"]["prompt_tokens"]);
        continue;
      }
      ASSERT_EQ(e["choices"].size(), 1u);
      const json& ch = e["choices"][0];
      if (chat && i == 0) {
        EXPECT_EQ(ch["delta"]["role"], "assistant");
        continue;
      }
      ++content_chunks;
      text += chat ? ch["delta"].value("content", "") : ch["text"].get<std::string>();
      if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
    }
    EXPECT_EQ(content_chunks, 16);  // one event per token
    EXPECT_EQ(finish, "length");
    EXPECT_EQ(text, chat ? whole.body["choices"][0]["message"]["content"] : whole.body["choices"][0]["text"]);
  }
}

TEST(Server, LogprobsAreTheGeneratorsLogprobs) {
  TestServer s;
  auto c = s.client();
  const std::string prompt = "The sea";
  const GenerateResult alone = greedy_alone(test::demo_tokenizer().encode(prompt), 6, 3);
  // The Generator's own stream for the per-token values.
  std::vector<StreamToken> tokens;
  {
    SamplingParams g = SamplingParams::greedy_params();
    g.top_logprobs = 3;
    Generator(test::demo_model(), test::demo_tokenizer())
        .generate_stream(test::demo_tokenizer().encode(prompt), {.max_tokens = 6, .sampling = g},
                         [&](const StreamToken& t) {
                           tokens.push_back(t);
                           return true;
                         });
  }
  const test::Reply r = post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", prompt}, {"max_tokens", 6},
                                                        {"temperature", 0}, {"logprobs", 3}});
  ASSERT_EQ(r.status, 200) << r.text;
  const json& lp = r.body["choices"][0]["logprobs"];
  ASSERT_EQ(lp["token_logprobs"].size(), tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    EXPECT_NEAR(lp["token_logprobs"][i].get<double>(), tokens[i].logprob, 1e-4) << i;
    EXPECT_EQ(lp["top_logprobs"][i].size(), 3u);
  }
  EXPECT_EQ(r.body["choices"][0]["text"], alone.text);

  const test::Reply chat = post(c, "/v1/chat/completions",
                                json{{"model", "wick-demo"}, {"max_tokens", 4}, {"temperature", 0}, {"logprobs", true},
                                     {"top_logprobs", 2},
                                     {"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})}});
  ASSERT_EQ(chat.status, 200) << chat.text;
  const json& content = chat.body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 4u);
  for (const json& t : content) {
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    ASSERT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_EQ(t["top_logprobs"][0]["logprob"], t["logprob"]);  // greedy: the chosen token is the best
  }
}

TEST(Server, StopStringsAndSeedsBehaveAsOpenAIs) {
  TestServer s;
  auto c = s.client();
  const json base = {{"model", "wick-demo"}, {"prompt", "In the beginning"}, {"max_tokens", 30}, {"temperature", 0},
                     {"ignore_eos", true}};
  const test::Reply whole = post(c, "/v1/completions", base);
  ASSERT_EQ(whole.status, 200);
  const std::string text = whole.body["choices"][0]["text"];
  ASSERT_GT(text.size(), 8u);
  json stopped = base;
  stopped["stop"] = text.substr(4, 3);
  const test::Reply r = post(c, "/v1/completions", stopped);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["choices"][0]["text"], text.substr(0, text.find(text.substr(4, 3))));
  EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
  // Sampling with a seed repeats itself.
  json sampled = base;
  sampled["temperature"] = 1.0;
  sampled["seed"] = 1234;
  const test::Reply a = post(c, "/v1/completions", sampled), b = post(c, "/v1/completions", sampled);
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.body["choices"][0]["text"], b.body["choices"][0]["text"]);
}

// OpenAI's n: n choices, each its own sequence sampled with seed + i (so a seeded request repeats itself and its
// choices differ), the prompt computed once (the others wait for its KV blocks); usage counts the prompt once. Choice
// i equals a request of its own with n 1 and seed + i; greedy choices are all the greedy answer; streamed, every
// chunk names its choice and each choice's text is the whole answer's.
TEST(Server, NChoicesAreSampledAloneWithSeedPlusIndexAndThePromptComputedOnce) {
  TestServer s;
  auto c = s.client();
  std::string prompt;
  for (int i = 0; i < 6; ++i) prompt += "In the beginning the river ran to the sea. ";  // several KV blocks
  const json base = {{"model", "wick-demo"}, {"prompt", prompt}, {"max_tokens", 12}, {"temperature", 1.0},
                     {"seed", 77}, {"ignore_eos", true}};
  json four = base;
  four["n"] = 4;
  const int64_t hits_before = s.server().stats().engine.prefix_hit_tokens;
  const test::Reply r = post(c, "/v1/completions", four);
  ASSERT_EQ(r.status, 200) << r.text;
  const int64_t prompt_tokens = int64_t(test::demo_tokenizer().encode(prompt).size());
  EXPECT_GE(s.server().stats().engine.prefix_hit_tokens - hits_before, 3 * ((prompt_tokens - 1) / 16 * 16))
      << "three choices took the prompt's whole blocks from the first";
  ASSERT_EQ(r.body["choices"].size(), 4u);
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(r.body["usage"]["completion_tokens"], 4 * 12);
  std::set<std::string> texts;
  for (int i = 0; i < 4; ++i) {
    const json& choice = r.body["choices"][size_t(i)];
    EXPECT_EQ(choice["index"], i);
    EXPECT_EQ(choice["finish_reason"], "length");
    json alone = base;
    alone["seed"] = 77 + i;
    const test::Reply one = post(c, "/v1/completions", alone);
    ASSERT_EQ(one.status, 200);
    EXPECT_EQ(choice["text"], one.body["choices"][0]["text"]) << "choice " << i;
    texts.insert(choice["text"].get<std::string>());
  }
  EXPECT_GT(texts.size(), 1u) << "sampled choices differ";
  EXPECT_EQ(post(c, "/v1/completions", four).body["choices"], r.body["choices"]) << "a seeded request repeats";

  // Greedy chat: every choice is the greedy answer; streamed, the chunks of the choices interleave, each named.
  json chat = {{"model", "wick-demo"}, {"max_tokens", 8}, {"temperature", 0}, {"n", 3}, {"ignore_eos", true},
               {"messages", json::array({{{"role", "user"}, {"content", "Where does the river go?"}}})}};
  const test::Reply whole = post(c, "/v1/chat/completions", chat);
  ASSERT_EQ(whole.status, 200) << whole.text;
  ASSERT_EQ(whole.body["choices"].size(), 3u);
  for (const json& choice : whole.body["choices"])
    EXPECT_EQ(choice["message"]["content"], whole.body["choices"][0]["message"]["content"]);
  chat["stream"] = true;
  chat["stream_options"] = {{"include_usage", true}};
  const httplib::Result res = c.Post("/v1/chat/completions", chat.dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const std::vector<std::string> events = test::sse_events(res->body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::vector<std::string> text(3);
  std::vector<int> roles(3, 0), chunks(3, 0);
  std::vector<std::string> finish(3);
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json e = json::parse(events[i]);
    if (e["choices"].empty()) {  // the usage chunk
      EXPECT_EQ(e["usage"]["completion_tokens"], 3 * 8);
      continue;
    }
    ASSERT_EQ(e["choices"].size(), 1u);
    const json& ch = e["choices"][0];
    const size_t k = ch["index"].get<size_t>();
    ASSERT_LT(k, 3u);
    if (ch["delta"].contains("role")) {
      ++roles[k];
      continue;
    }
    ++chunks[k];
    text[k] += ch["delta"].value("content", "");
    if (!ch["finish_reason"].is_null()) finish[k] = ch["finish_reason"];
  }
  for (size_t k = 0; k < 3; ++k) {
    EXPECT_EQ(roles[k], 1) << "choice " << k;
    EXPECT_EQ(chunks[k], 8) << "choice " << k;
    EXPECT_EQ(finish[k], "length") << "choice " << k;
    EXPECT_EQ(text[k], whole.body["choices"][k]["message"]["content"]) << "choice " << k;
  }
}

TEST(Server, ModelsListTheBaseAndEveryAdapter) {
  TestServer s;
  auto c = s.client();
  const test::Reply r = get(c, "/v1/models");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["object"], "list");
  std::set<std::string> ids;
  for (const json& m : r.body["data"]) ids.insert(m["id"].get<std::string>());
  EXPECT_EQ(ids, (std::set<std::string>{"wick-demo", "scripture"}));
  EXPECT_EQ(get(c, "/v1/models/scripture").body["parent"], "wick-demo");
  const test::Reply missing = get(c, "/v1/models/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body["error"]["code"], "model_not_found");
}

TEST(Server, AdaptersLoadReplaceAndGoWhileRequestsKeepTheirs) {
  TestServer s({TestServer::defaults()}, /*with_adapter=*/false);
  auto c = s.client();
  const json ask = {{"model", "mine"}, {"prompt", "In the beginning"}, {"max_tokens", 12}, {"temperature", 0},
                    {"ignore_eos", true}};
  EXPECT_EQ(post(c, "/v1/completions", ask).status, 404);
  const test::Reply loaded =
      post(c, "/v1/adapters", json{{"name", "mine"}, {"path", test::scripture_adapter_dir().string()}});
  ASSERT_EQ(loaded.status, 200) << loaded.text;
  EXPECT_EQ(loaded.body["replaced"], false);
  const test::Reply with = post(c, "/v1/completions", ask);
  ASSERT_EQ(with.status, 200);
  EXPECT_EQ(with.body["choices"][0]["text"],
            test::cli_generate(test::demo_tokenizer().encode("In the beginning"), 12, test::scripture_adapter_dir().string(), true));

  // A stream in flight on "mine" keeps its version while "mine" is replaced by another adapter (a scaled copy).
  const std::filesystem::path other = test::temp_dir("serve_other_adapter") / "adapter";
  std::filesystem::copy(test::scripture_adapter_dir(), other);
  {
    json cfg = json::parse(test::read_file(other / "adapter_config.json"));
    cfg["lora_alpha"] = cfg["lora_alpha"].get<double>() * 3;
    test::write_file(other / "adapter_config.json", cfg.dump());
  }
  json long_ask = ask;
  long_ask["max_tokens"] = 120;
  long_ask["stream"] = true;
  test::BackgroundStream stream(s.client(), long_ask);
  ASSERT_TRUE(test::eventually([&] { return stream.chunks() > 2; }));
  const test::Reply replaced = post(c, "/v1/adapters", json{{"name", "mine"}, {"path", other.string()}});
  ASSERT_EQ(replaced.status, 200) << replaced.text;
  EXPECT_EQ(replaced.body["replaced"], true);
  const test::Reply after = post(c, "/v1/completions", ask);
  const std::string text = test::streamed_text(stream.finish());
  const std::string old_version =
      test::cli_generate(test::demo_tokenizer().encode("In the beginning"), 120, test::scripture_adapter_dir().string(), true);
  EXPECT_EQ(text, old_version);  // the whole stream ran with the version it started with
  EXPECT_EQ(after.body["choices"][0]["text"],
            test::cli_generate(test::demo_tokenizer().encode("In the beginning"), 12, other.string(), true));
  EXPECT_NE(after.body["choices"][0]["text"], with.body["choices"][0]["text"]);

  const test::Reply gone = test::reply_of(c.Delete("/v1/adapters/mine"));
  EXPECT_EQ(gone.status, 200);
  EXPECT_EQ(post(c, "/v1/completions", ask).status, 404);
  EXPECT_EQ(test::reply_of(c.Delete("/v1/adapters/mine")).status, 404);
  const test::Reply bad = post(c, "/v1/adapters", json{{"name", "x"}, {"path", "/no/such/adapter"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body["error"]["param"], "path");
  EXPECT_EQ(post(c, "/v1/adapters", json{{"name", "wick-demo"}, {"path", other.string()}}).status, 400);
}

TEST(Server, BadRequestsAreOpenAIErrorsNamingTheField) {
  TestServer s;
  auto c = s.client();
  const json ok = {{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 2}};
  expect_error(post(c, "/v1/completions", std::string("{\"model\": ")), 400);
  expect_error(post(c, "/v1/completions", std::string("[1, 2]")), 400);
  const auto with = [&](const std::string& key, const json& value) {
    json b = ok;
    b[key] = value;
    return post(c, "/v1/completions", b);
  };
  expect_error(with("temperature", 3), 400, "temperature");
  expect_error(with("temperature", "hot"), 400, "temperature");
  expect_error(with("top_p", 1.5), 400, "top_p");
  expect_error(with("presence_penalty", -3), 400, "presence_penalty");
  expect_error(with("frequency_penalty", 2.5), 400, "frequency_penalty");
  expect_error(with("n", 0), 400, "n");
  expect_error(with("n", 129), 400, "n");
  expect_error(with("n", "two"), 400, "n");
  expect_error(with("best_of", 2), 400, "best_of");
  expect_error(with("max_tokens", 0), 400, "max_tokens");
  expect_error(with("max_tokens", 100000000), 400, "max_tokens");
  expect_error(with("max_tokens", -1), 400, "max_tokens");
  expect_error(with("stop", json::array({"a", "b", "c", "d", "e"})), 400, "stop");
  expect_error(with("logprobs", 21), 400, "logprobs");
  expect_error(with("stream_options", json{{"include_usage", true}}), 400, "stream_options");
  expect_error(with("prompt", json::array({-5})), 400, "prompt");
  expect_error(with("prompt", json::array({1 << 30})), 400, "prompt");
  expect_error(with("model", "no-such-model"), 404, "model", "model_not_found");
  json no_model = ok;  // as vLLM and llama.cpp take it: the base model; no max_tokens: OpenAI's 16
  no_model.erase("model");
  no_model.erase("max_tokens");
  no_model["ignore_eos"] = true;
  const test::Reply base = post(c, "/v1/completions", no_model);
  EXPECT_EQ(base.status, 200);
  EXPECT_EQ(base.body["model"], "wick-demo");
  EXPECT_EQ(base.body["usage"]["completion_tokens"], 16);
  expect_error(with("model", 42), 400, "model");
  expect_error(post(c, "/v1/chat/completions", ok), 400, "messages");
  expect_error(post(c, "/v1/chat/completions",
                    json{{"model", "wick-demo"}, {"messages", json::array({{{"role", "wizard"}, {"content", "x"}}})}}),
               400);
  // A prompt longer than the context (512 positions).
  std::string longer;
  for (int i = 0; i < 600; ++i) longer += " river";
  expect_error(with("prompt", longer), 400, "prompt", "context_length_exceeded");
  expect_error(with("max_tokens", 511), 400, "max_tokens", "context_length_exceeded");
  // Unknown routes and methods.
  expect_error(get(c, "/v1/nothing"), 404);
  // Parameters OpenAI has and wick does not need, and parameters nobody has, are ignored.
  json extra = ok;
  extra["user"] = "someone";
  extra["logit_bias"] = json::object();
  extra["made_up_parameter"] = {{"deep", json::array({1, 2})}};
  EXPECT_EQ(post(c, "/v1/completions", extra).status, 200);
  // Still serving, nothing held.
  EXPECT_EQ(post(c, "/v1/completions", ok).status, 200);
  EXPECT_TRUE(test::eventually([&] { return s.server().stats().engine.blocks_held == 0; }));
}

TEST(Server, RandomBytesAndInvalidUtf8AreRefusedAndTheServerGoesOn) {
  TestServer s;
  auto c = s.client();
  std::mt19937 rng(7);
  for (int i = 0; i < 20; ++i) {
    std::string junk(size_t(1 + rng() % 4096), '\0');
    for (char& ch : junk) ch = char(rng());
    expect_error(post(c, i % 2 ? "/v1/completions" : "/v1/chat/completions", junk), 400);
  }
  // Invalid UTF-8 inside a JSON string: not JSON (RFC 8259), refused naming the body.
  expect_error(post(c, "/v1/completions", std::string("{\"model\":\"wick-demo\",\"prompt\":\"ab\xff\xfe\"}")), 400);
  expect_error(post(c, "/v1/chat/completions",
                    std::string("{\"model\":\"wick-demo\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}")),
               400);
  // Random bytes as a multipart upload and as a fine-tuning job.
  expect_error(post(c, "/v1/fine_tuning/jobs", std::string("\x01\x02garbage")), 400);
  EXPECT_EQ(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 2}}).status, 200);
}

TEST(Server, TruncatedBodiesNeverHangOrCrashTheServer) {
  ServerOptions o = TestServer::defaults();
  o.idle_timeout = std::chrono::seconds(1);
  TestServer s(o);
  const std::string body = json{{"model", "wick-demo"}, {"prompt", "In the beginning"}, {"max_tokens", 3}}.dump();
  std::mt19937 rng(11);
  int answered = 0;
  for (int i = 0; i < 100; ++i) {
    const size_t keep = rng() % body.size();
    if (i % 2 == 0) {  // complete HTTP, a cut JSON document: 400 each
      const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(keep) + "\r\nConnection: close\r\n\r\n" +
                              body.substr(0, keep);
      const std::string out = test::raw_exchange(s.port(), req, false);
      EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out.substr(0, 200);
      answered += out.rfind("HTTP/1.1 400", 0) == 0;
    } else {  // the body shorter than its Content-Length, then the client stops sending: closed, never hung
      const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, keep);
      const auto start = std::chrono::steady_clock::now();
      const std::string out = test::raw_exchange(s.port(), req, true, std::chrono::seconds(5));
      EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "the server held the socket";
      EXPECT_TRUE(out.empty() || out.rfind("HTTP/1.1 4", 0) == 0) << out.substr(0, 200);
    }
  }
  EXPECT_EQ(answered, 50);
  auto c = s.client();
  EXPECT_EQ(post(c, "/v1/completions", body).status, 200);
  EXPECT_TRUE(test::eventually([&] { return s.server().stats().engine.blocks_held == 0; }));
}

TEST(Server, ApiKeyIsRequiredWhenSet) {
  ServerOptions o = TestServer::defaults();
  o.api_key = "sk-test-123";
  TestServer s(o);
  auto c = s.client();
  const json ok = {{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 2}};
  expect_error(post(c, "/v1/completions", ok), 401, "", "invalid_api_key");
  expect_error(post(c, "/v1/completions", ok, {{"Authorization", "Bearer wrong"}}), 401);
  expect_error(get(c, "/v1/models"), 401);
  EXPECT_EQ(post(c, "/v1/completions", ok, {{"Authorization", "Bearer sk-test-123"}}).status, 200);
  EXPECT_EQ(get(c, "/health").status, 200);  // health and metrics stay open for probes
}

TEST(Server, BodiesOverTheLimitGet413) {
  ServerOptions o = TestServer::defaults();
  o.max_body_bytes = 4096;
  TestServer s(o);
  auto c = s.client();
  std::string big(8000, 'a');
  expect_error(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", big}}), 413);
  EXPECT_EQ(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 2}}).status, 200);
}

TEST(Server, AFullQueueGets429) {
  ServerOptions o = TestServer::defaults();
  o.max_queue = 0;  // nothing may wait: every request finds the queue full
  TestServer s(o);
  auto c = s.client();
  expect_error(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 2}}), 429);
}

TEST(Server, ARequestLargerThanTheWholeKvPoolIsA400AndOthersGoOn) {
  ServerOptions o = TestServer::defaults();
  o.kv_blocks = 8;  // 128 positions in all
  TestServer s(o);
  auto c = s.client();
  expect_error(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 200}}), 400,
               "max_tokens");
  EXPECT_EQ(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 20}}).status, 200);
  // A chat without max_tokens runs up to what the pool holds, not the context (512): it is served.
  const test::Reply chat = post(c, "/v1/chat/completions",
                                json{{"model", "wick-demo"}, {"ignore_eos", true},
                                     {"messages", json::array({{{"role", "user"}, {"content", "Hi"}}})}});
  ASSERT_EQ(chat.status, 200) << chat.text;
  EXPECT_EQ(chat.body["usage"]["total_tokens"], 128);
}

TEST(Server, AClientLeavingMidStreamCancelsItsSequenceAndFreesItsBlocks) {
  TestServer s;
  auto c = s.client();
  const json ask = {{"model", "scripture"}, {"prompt", "In the beginning"}, {"max_tokens", 400}, {"stream", true},
                    {"ignore_eos", true}, {"temperature", 0}};
  int chunks = 0;
  EXPECT_FALSE(test::post_streaming(c, "/v1/completions", ask.dump(),
                                    [&](const char*, size_t) { return ++chunks < 3; }));  // we hung up
  EXPECT_TRUE(test::eventually([&] {
    const ServerStats st = s.server().stats();
    return st.engine.blocks_held == 0 && st.engine.running == 0 && st.in_flight == 0;
  }));
  EXPECT_LT(s.server().stats().completion_tokens, 400);  // cancelled, not run to its end
}

TEST(Server, StopDrainsRequestsInFlightAndRefusesNewOnes) {
  ServerOptions o = TestServer::defaults();
  o.shutdown_grace = std::chrono::seconds(20);
  auto s = std::make_unique<TestServer>(o);
  test::BackgroundStream stream(
      s->client(),
      json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 150}, {"ignore_eos", true}, {"stream", true}});
  ASSERT_TRUE(test::eventually([&] { return stream.chunks() > 0; }));
  std::thread stopper([&] { s->server().stop(); });
  auto c = s->client();
  ASSERT_TRUE(test::eventually([&] { return get(c, "/health").status == 503; }));
  expect_error(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 2}}), 503);
  stopper.join();
  const std::vector<std::string> events = test::sse_events(stream.finish());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(events.size(), 151u);  // finished within the grace: every token, then [DONE]
  s.reset();
}

TEST(Server, APortInUseIsAClearErrorNotASharedPort) {
  TestServer s;
  ServerOptions o = TestServer::defaults();
  o.port = s.port();
  Server second(test::demo_model(), std::nullopt, o);
  EXPECT_WICK_ERROR(second.bind(), ErrorKind::bad_input, "cannot listen on 127.0.0.1:" + std::to_string(s.port()));
  auto c = s.client();
  EXPECT_EQ(get(c, "/health").status, 200);
}

TEST(Server, MetricsAndHealthReportTheServer) {
  TestServer s;
  auto c = s.client();
  EXPECT_EQ(get(c, "/health").body["status"], "ok");
  ASSERT_EQ(post(c, "/v1/completions", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 5},
                                            {"ignore_eos", true}})
                .status,
            200);
  EXPECT_EQ(post(c, "/v1/completions", std::string("{")).status, 400);
  const httplib::Result m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  const std::string& t = m->body;
  EXPECT_NE(t.find("wick_requests_total{route=\"/v1/completions\",status=\"200\"} 1"), std::string::npos) << t;
  EXPECT_NE(t.find("wick_requests_total{route=\"/v1/completions\",status=\"400\"} 1"), std::string::npos) << t;
  EXPECT_NE(t.find("wick_generation_tokens_total 5"), std::string::npos) << t;
  EXPECT_NE(t.find("wick_kv_blocks_total 512"), std::string::npos) << t;
  EXPECT_NE(t.find("wick_time_to_first_token_seconds_count 1"), std::string::npos) << t;
  EXPECT_NE(t.find("wick_time_per_output_token_seconds_bucket{le=\"+Inf\"} 1"), std::string::npos) << t;
  EXPECT_EQ(s.server().stats().completion_tokens, 5);
}

}  // namespace
}  // namespace wick

// POST /v1/embeddings over loopback: answers are the Embedder's floats for the same texts (the Embedder's parity with
// sentence-transformers is tests/embed's), base64 carries the same floats, `dimensions` truncates and renormalises,
// token-id inputs equal text inputs, and every bad request is OpenAI's error object naming the field. Requests that
// wait for the model are embedded together, each answer still its own texts' floats, a bad one failing alone.
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "serve/embed_batch.h"
#include "serve_test_util.h"
#include "test_util.h"
#include "wick/embedder.h"
#include "wick/random_model.h"

namespace wick {
namespace {

using nlohmann::json;
using test::expect_error;
using test::get;
using test::post;
using test::TestServer;

// A sentence-transformers folder around a random tiny BERT (`wick random-model --like tiny-bert`), written once, and
// the library's embedder over it: what the server must answer, float for float (the library's parity with
// sentence-transformers is tests/embed's).
const std::filesystem::path& tiny_embedder() {
  static const std::filesystem::path dir = [] {
    const auto d = test::temp_dir("tiny-bert");
    write_random_embedder("tiny-bert", d, {.dtype = DType::f32, .seed = 3});
    return d;
  }();
  return dir;
}
const Embedder& library() {
  static const Embedder e = Embedder::load(tiny_embedder());
  return e;
}
const std::vector<std::string> kTexts = {
    "The quick brown fox jumps over the lazy dog.", "Ångström, naïve café", "東京は日本の首都です。",
    "x",
    "Emoji 😀 and\ttabs", "query: what is the capital of France?", "a b c d e f g h i j k l m n o p"};

std::vector<float> row_of(const Tensor& t, int64_t i) {
  const float* p = t.data<float>() + i * t.dim(1);
  return std::vector<float>(p, p + t.dim(1));
}

std::vector<float> base64_floats(const std::string& text) {
  std::string bytes;
  uint32_t acc = 0;
  int bits = 0;
  for (char ch : text) {
    if (ch == '=') break;
    const char* at = std::strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", ch);
    if (!at || ch == '\0') {
      ADD_FAILURE() << "not base64: " << ch;
      return {};
    }
    acc = acc << 6 | uint32_t(at - "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
    bits += 6;
    if (bits >= 8) bits -= 8, bytes += char((acc >> bits) & 0xFF);
  }
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

// A server over the demo model with the tiny BERT embedder as "minilm".
struct EmbedServer : TestServer {
  EmbedServer() : TestServer(TestServer::defaults(), /*with_adapter=*/false) {
    server().add_embedder("minilm", tiny_embedder());
  }
};

TEST(ServeEmbeddings, AnswersAreTheEmbeddersFloats) {
  EmbedServer s;
  auto c = s.client();
  const Tensor want = library().embed(kTexts);
  const test::Reply r = post(c, "/v1/embeddings", json{{"model", "minilm"}, {"input", kTexts}});
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["object"], "list");
  EXPECT_EQ(r.body["model"], "minilm");
  ASSERT_EQ(r.body["data"].size(), kTexts.size());
  int64_t tokens = 0;
  std::vector<std::vector<int32_t>> ids;
  for (size_t i = 0; i < kTexts.size(); ++i) {
    const json& d = r.body["data"][i];
    EXPECT_EQ(d["object"], "embedding");
    EXPECT_EQ(d["index"], i);
    EXPECT_EQ(d["embedding"].get<std::vector<float>>(), row_of(want, int64_t(i))) << "text " << i;
    ids.push_back(library().tokenize(kTexts[i]));
    tokens += int64_t(ids.back().size());
  }
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], tokens);
  EXPECT_EQ(r.body["usage"]["total_tokens"], tokens);

  // One string, and the same text as its token ids, without naming the model (the only embedder).
  const test::Reply one = post(c, "/v1/embeddings", json{{"input", kTexts[2]}});
  ASSERT_EQ(one.status, 200) << one.text;
  const test::Reply by_ids = post(c, "/v1/embeddings", json{{"input", ids[2]}});
  ASSERT_EQ(by_ids.status, 200) << by_ids.text;
  EXPECT_EQ(one.body["data"][0]["embedding"], r.body["data"][2]["embedding"]);
  EXPECT_EQ(by_ids.body["data"][0]["embedding"], r.body["data"][2]["embedding"]);
  const test::Reply id_rows = post(c, "/v1/embeddings", json{{"input", json::array({ids[3], ids[5]})}});
  ASSERT_EQ(id_rows.status, 200) << id_rows.text;
  EXPECT_EQ(id_rows.body["data"][1]["embedding"], r.body["data"][5]["embedding"]);
}

TEST(ServeEmbeddings, Base64CarriesTheSameFloatsAndDimensionsRenormalise) {
  EmbedServer s;
  auto c = s.client();
  const std::vector<std::string> texts = {kTexts[0], kTexts[1]};
  const test::Reply floats = post(c, "/v1/embeddings", json{{"input", texts}});
  const test::Reply b64 = post(c, "/v1/embeddings", json{{"input", texts}, {"encoding_format", "base64"}});
  ASSERT_EQ(b64.status, 200) << b64.text;
  for (size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(base64_floats(b64.body["data"][i]["embedding"].get<std::string>()),
              floats.body["data"][i]["embedding"].get<std::vector<float>>());

  const test::Reply cut = post(c, "/v1/embeddings", json{{"input", texts}, {"dimensions", 16}});
  ASSERT_EQ(cut.status, 200) << cut.text;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto full = floats.body["data"][i]["embedding"].get<std::vector<float>>();
    const auto got = cut.body["data"][i]["embedding"].get<std::vector<float>>();
    ASSERT_EQ(got.size(), 16u);
    double norm = 0;
    for (int k = 0; k < 16; ++k) norm += double(full[k]) * full[k];
    for (int k = 0; k < 16; ++k) EXPECT_NEAR(got[k], full[k] / std::sqrt(norm), 1e-6) << i << " " << k;
  }
}

TEST(ServeEmbeddings, ModelsListTheEmbedder) {
  EmbedServer s;
  auto c = s.client();
  const test::Reply r = get(c, "/v1/models");
  ASSERT_EQ(r.status, 200);
  bool found = false;
  for (const json& m : r.body["data"]) {
    if (m["id"] != "minilm") continue;
    found = true;
    EXPECT_EQ(m["dimension"], library().dimension());
  }
  EXPECT_TRUE(found) << r.text;
}

TEST(ServeEmbeddings, BadRequestsAreOpenAIErrorsNamingTheField) {
  EmbedServer s;
  auto c = s.client();
  const auto ask = [&](const json& body) { return post(c, "/v1/embeddings", body); };
  expect_error(post(c, "/v1/embeddings", std::string("{\"input\": ")), 400);
  expect_error(ask(json::object()), 400, "input");
  expect_error(ask({{"input", ""}}), 400, "input");
  expect_error(ask({{"input", json::array()}}), 400, "input");
  expect_error(ask({{"input", json::array({"a", ""})}}), 400, "input");
  expect_error(ask({{"input", json::array({"a", 3})}}), 400, "input");
  expect_error(ask({{"input", json::array({1, -2})}}), 400, "input");
  expect_error(ask({{"input", json::array({json::array({1, 2}), json::array()})}}), 400, "input");
  expect_error(ask({{"input", 42}}), 400, "input");
  expect_error(ask({{"input", "hi"}, {"encoding_format", "hex"}}), 400, "encoding_format");
  expect_error(ask({{"input", "hi"}, {"dimensions", 0}}), 400, "dimensions");
  expect_error(ask({{"input", "hi"}, {"dimensions", 100000}}), 400, "dimensions");
  expect_error(ask({{"input", "hi"}, {"model", "wick-demo"}}), 404, "model", "model_not_found");
  expect_error(post(c, "/v1/embeddings", std::string("{\"input\": \"\xff\xfe\"}")), 400);  // not UTF-8
  expect_error(ask({{"input", json::array({1, 2, 1 << 30})}}), 400, "input");  // outside the vocabulary
  EXPECT_EQ(ask({{"input", "still serving"}}).status, 200);
}

std::vector<std::vector<float>> rows_of(const Tensor& t) {
  std::vector<std::vector<float>> rows;
  for (int64_t i = 0; i < t.dim(0); ++i) rows.push_back(row_of(t, i));
  return rows;
}

// Rows of the library's embeddings of `texts`, as the server must answer them.
std::vector<std::vector<float>> library_rows(const std::vector<std::string>& texts, int64_t dimensions = 0) {
  return rows_of(library().embed(texts, {.dimensions = dimensions}));
}

// One batch of texts, token ids, a `dimensions` of its own and a bad request: each job gets its own rows, float for
// float (the CPU's rows do not depend on the rows beside them), and only the bad one fails.
TEST(ServeEmbeddings, JobsOfOneBatchGetTheirOwnRowsAndABadOneFailsAlone) {
  serve::EmbedJob texts{.texts = {kTexts[0], kTexts[1]}}, ids{.token_ids = {library().tokenize(kTexts[2])}},
      cut{.texts = {kTexts[3]}, .dimensions = 16}, bad{.token_ids = {{1, 2, 1 << 30}}},
      more{.texts = {kTexts[4], kTexts[5], kTexts[6]}};
  std::vector<serve::EmbedJob*> jobs = {&texts, &ids, &cut, &bad, &more};
  serve::embed_jobs(library(), jobs);
  EXPECT_EQ(rows_of(texts.out), library_rows({kTexts[0], kTexts[1]}));
  EXPECT_EQ(rows_of(ids.out), library_rows({kTexts[2]}));
  EXPECT_EQ(rows_of(cut.out), library_rows({kTexts[3]}, 16));
  EXPECT_EQ(rows_of(more.out), library_rows({kTexts[4], kTexts[5], kTexts[6]}));
  for (const serve::EmbedJob* j : jobs) EXPECT_EQ(j->error != nullptr, j == &bad);
  EXPECT_WICK_ERROR(std::rethrow_exception(bad.error), ErrorKind::bad_input, "vocabulary");
}

// Jobs that arrive while the model's turn is taken wait, and the first to get the turn embeds them all at once.
TEST(ServeEmbeddings, RequestsWaitingForTheModelAreEmbeddedTogether) {
  auto turns = std::make_shared<DeviceTurns>();
  serve::EmbedBatcher batcher(std::make_shared<const Embedder>(Embedder::load(tiny_embedder())), turns);
  std::vector<serve::EmbedJob> jobs(4);
  for (size_t i = 0; i < jobs.size(); ++i) jobs[i].texts = {kTexts[i], kTexts[i + 3]};
  std::vector<Tensor> got(jobs.size());
  turns->lock();  // the device is busy
  std::vector<std::thread> threads;
  for (size_t i = 0; i < jobs.size(); ++i) threads.emplace_back([&, i] { got[i] = batcher.embed(jobs[i]); });
  for (int wait = 0; batcher.waiting() < jobs.size() && wait < 2000; ++wait)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(batcher.waiting(), jobs.size());
  turns->unlock();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(batcher.batches(), 1);
  EXPECT_EQ(batcher.requests(), 4);
  for (size_t i = 0; i < jobs.size(); ++i) EXPECT_EQ(rows_of(got[i]), library_rows({kTexts[i], kTexts[i + 3]})) << i;
}

// Many clients at once through the server: every answer is its own texts' floats, whatever batch it ran in.
TEST(ServeEmbeddings, ConcurrentClientsGetTheirOwnEmbeddings) {
  EmbedServer s;
  constexpr int kClients = 8, kEach = 5;
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> clients;
  for (int k = 0; k < kClients; ++k)
    clients.emplace_back([&, k] {
      auto c = s.client();
      for (int r = 0; r < kEach; ++r) {
        const std::vector<std::string> texts = {kTexts[size_t(k + r) % kTexts.size()], kTexts[size_t(k) % kTexts.size()]};
        const test::Reply reply = post(c, "/v1/embeddings", json{{"input", texts}});
        if (reply.status != 200) {
          failures[size_t(k)] = reply.text;
          return;
        }
        const auto want = library_rows(texts);
        for (size_t i = 0; i < texts.size(); ++i)
          if (reply.body["data"][i]["embedding"].get<std::vector<float>>() != want[i]) {
            failures[size_t(k)] = "client " + std::to_string(k) + " request " + std::to_string(r) + " text " +
                                  std::to_string(i) + ": not its own embedding";
            return;
          }
      }
    });
  for (std::thread& t : clients) t.join();
  for (const std::string& f : failures) EXPECT_EQ(f, "");
  const ServerStats stats = s.server().stats();
  EXPECT_EQ(stats.embed_requests, kClients * kEach);
  EXPECT_GE(stats.embed_batches, 1);
  EXPECT_LE(stats.embed_batches, stats.embed_requests);
}

// `wick serve --embed-model` without --model: embeddings as ever; what needs a generative model says so.
TEST(ServeEmbeddings, AnEmbeddingsOnlyServerServesEmbeddingsAndSaysWhatItLacks) {
  TestServer s(TestServer::defaults(), /*with_adapter=*/false, /*with_model=*/false);
  s.server().add_embedder("minilm", tiny_embedder());
  auto c = s.client();
  const test::Reply r = post(c, "/v1/embeddings", json{{"input", kTexts}});
  ASSERT_EQ(r.status, 200) << r.text;
  const auto want = library_rows(kTexts);
  for (size_t i = 0; i < kTexts.size(); ++i)
    EXPECT_EQ(r.body["data"][i]["embedding"].get<std::vector<float>>(), want[i]) << i;

  const test::Reply models = get(c, "/v1/models");
  ASSERT_EQ(models.status, 200);
  ASSERT_EQ(models.body["data"].size(), 1u) << models.text;
  EXPECT_EQ(models.body["data"][0]["id"], "minilm");
  EXPECT_EQ(models.body["data"][0]["dimension"], library().dimension());
  const test::Reply one = get(c, "/v1/models/minilm");
  ASSERT_EQ(one.status, 200) << one.text;
  EXPECT_EQ(one.body["max_model_len"], library().max_seq_length());

  const auto lacks_model = [](const test::Reply& reply, const std::string& what) {
    expect_error(reply, 404, "model", "model_not_found");
    EXPECT_NE(reply.text.find("serves embeddings only"), std::string::npos) << reply.text;
    EXPECT_NE(reply.text.find(what), std::string::npos) << reply.text;
  };
  lacks_model(post(c, "/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}}),
              "completions");
  lacks_model(post(c, "/v1/completions", json{{"prompt", "hi"}}), "completions");
  lacks_model(post(c, "/v1/adapters", json{{"name", "a"}, {"path", "/tmp"}}), "adapters");
  lacks_model(get(c, "/v1/fine_tuning/jobs"), "fine-tuning jobs");
  lacks_model(get(c, "/v1/models/wick-demo"), "wick-demo");
  EXPECT_EQ(get(c, "/v1/adapters").status, 200);
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(c.Get("/metrics")->status, 200);
  EXPECT_WICK_ERROR(s.server().add_adapter("scripture", test::scripture_adapter_dir()), ErrorKind::bad_input,
                    "embeddings-only");
  EXPECT_EQ(s.server().stats().embed_requests, 1);
}

TEST(ServeEmbeddings, AServerWithoutEmbeddersSays404AndNamesAreUnique) {
  TestServer s;
  auto c = s.client();
  expect_error(post(c, "/v1/embeddings", json{{"input", "hi"}}), 404, "model", "model_not_found");
  EXPECT_WICK_ERROR(s.server().add_embedder("scripture", tiny_embedder()), ErrorKind::bad_input, "scripture");
  EXPECT_WICK_ERROR(s.server().add_embedder("e", tiny_embedder() / "no-such-model"), ErrorKind::not_found,
                    "no-such-model");
}

}  // namespace
}  // namespace wick

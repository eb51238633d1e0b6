// POST /v1/embeddings over loopback: embeddings equal sentence-transformers' (tests/fixtures/embed, made by
// scripts/make_embed_fixtures.py), base64 carries the same floats, `dimensions` truncates and renormalises, token-id
// inputs equal text inputs, and every bad request is OpenAI's error object naming the field.
#include <cmath>
#include <cstring>
#include <sstream>

#include "serve_test_util.h"
#include "test_util.h"
#include "wick/safetensors.h"

namespace wick {
namespace {

using nlohmann::json;
using test::expect_error;
using test::get;
using test::post;
using test::TestServer;

std::filesystem::path embed_model(const std::string& name) { return test::fixture("embed/models/" + name); }

struct Reference {
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
  Tensor embeddings;  // f32 [texts, dim]
};

const Reference& bert_reference() {
  static const Reference ref = [] {
    Reference r;
    const auto dir = embed_model("bert-mean-norm");
    r.texts = json::parse(test::read_file(dir / "texts.json")).get<std::vector<std::string>>();
    std::istringstream lines(test::read_file(dir / "ids.jsonl"));
    for (std::string line; std::getline(lines, line);)
      if (!line.empty()) r.ids.push_back(json::parse(line)["ids"].get<std::vector<int32_t>>());
    r.embeddings = SafetensorsFile::open(dir / "reference.safetensors").tensor("embeddings").to(DType::f32);
    return r;
  }();
  return ref;
}

std::vector<float> row_of(const Tensor& t, int64_t i) {
  const float* p = t.data<float>() + i * t.dim(1);
  return std::vector<float>(p, p + t.dim(1));
}

double cosine_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += double(a[i]) * b[i], aa += double(a[i]) * a[i], bb += double(b[i]) * b[i];
  return 1.0 - ab / std::sqrt(aa * bb);
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
    server().add_embedder("minilm", embed_model("bert-mean-norm"));
  }
};

TEST(ServeEmbeddings, EqualSentenceTransformers) {
  EmbedServer s;
  auto c = s.client();
  const Reference& ref = bert_reference();
  const size_t n = std::min<size_t>(ref.texts.size(), 24);
  const std::vector<std::string> texts(ref.texts.begin(), ref.texts.begin() + n);
  const test::Reply r = post(c, "/v1/embeddings", json{{"model", "minilm"}, {"input", texts}});
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_EQ(r.body["object"], "list");
  EXPECT_EQ(r.body["model"], "minilm");
  ASSERT_EQ(r.body["data"].size(), n);
  int64_t tokens = 0;
  for (size_t i = 0; i < n; ++i) {
    const json& d = r.body["data"][i];
    EXPECT_EQ(d["object"], "embedding");
    EXPECT_EQ(d["index"], i);
    EXPECT_LE(cosine_distance(d["embedding"].get<std::vector<float>>(), row_of(ref.embeddings, int64_t(i))), 1e-5)
        << "text " << i;
    tokens += int64_t(ref.ids[i].size());
  }
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], tokens);
  EXPECT_EQ(r.body["usage"]["total_tokens"], tokens);

  // One string, and the same text as its token ids, without naming the model (the only embedder).
  const test::Reply one = post(c, "/v1/embeddings", json{{"input", texts[3]}});
  ASSERT_EQ(one.status, 200) << one.text;
  const test::Reply ids = post(c, "/v1/embeddings", json{{"input", ref.ids[3]}});
  ASSERT_EQ(ids.status, 200) << ids.text;
  EXPECT_EQ(one.body["data"][0]["embedding"], ids.body["data"][0]["embedding"]);
  EXPECT_EQ(one.body["data"][0]["embedding"], r.body["data"][3]["embedding"]);
  const test::Reply id_rows = post(c, "/v1/embeddings", json{{"input", json::array({ref.ids[3], ref.ids[5]})}});
  ASSERT_EQ(id_rows.status, 200) << id_rows.text;
  EXPECT_EQ(id_rows.body["data"][1]["embedding"], r.body["data"][5]["embedding"]);
}

TEST(ServeEmbeddings, Base64CarriesTheSameFloatsAndDimensionsRenormalise) {
  EmbedServer s;
  auto c = s.client();
  const std::vector<std::string> texts = {bert_reference().texts[0], bert_reference().texts[1]};
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
  for (const json& m : r.body["data"])
    if (m["id"] == "minilm") found = true, EXPECT_EQ(m["dimension"], bert_reference().embeddings.dim(1));
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

TEST(ServeEmbeddings, AServerWithoutEmbeddersSays404AndNamesAreUnique) {
  TestServer s;
  auto c = s.client();
  expect_error(post(c, "/v1/embeddings", json{{"input", "hi"}}), 404, "model", "model_not_found");
  EXPECT_WICK_ERROR(s.server().add_embedder("scripture", embed_model("bert-mean-norm")), ErrorKind::bad_input,
                    "scripture");
  EXPECT_WICK_ERROR(s.server().add_embedder("e", embed_model("no-such-model")), ErrorKind::not_found);
}

}  // namespace
}  // namespace wick

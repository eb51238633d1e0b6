// Parity with sentence-transformers: the folders scripts/make_embed_fixtures.py writes (tiny random BERT, MPNet,
// XLM-R and Qwen2 models, each a sentence-transformers folder with reference.safetensors from
// SentenceTransformer.encode on the CPU in f32), embedded by wick.
//   - From the ids encode saw (ids.jsonl): the model, pooling and normalisation alone, whatever the tokenizer.
//   - From the texts (texts.json), with and without the "query" prompt: the tokenizer, prompts and truncation too.
// Each embedding within cosine distance 1e-5 of sentence-transformers' (the bar); the largest element error
// is reported beside it. wick's encoder agrees with a double-precision forward to ~1e-6 (model/encoder_test.cpp), and
// torch's f32 CPU forward is as close, so the distances seen are of order 1e-7 or below.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "test_util.h"
#include "wick/embedder.h"
#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

using nlohmann::json;

const char* const kModels[] = {"bert-mean-norm",    "bert-cls-prompts", "bert-max",
                               "mpnet-mean-norm",   "xlmr-mean-prompts", "qwen2-last-norm",
                               "qwen2-mean-exclude-prompt", "bert-mean-exclude-prompt"};

std::filesystem::path model_dir(const std::string& name) { return fixture("embed/models/" + name); }

std::vector<std::vector<int32_t>> read_ids(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::vector<int32_t>> ids;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) ids.push_back(json::parse(line).at("ids").get<std::vector<int32_t>>());
  return ids;
}

std::vector<std::string> read_texts(const std::filesystem::path& path) {
  return json::parse(read_file(path)).get<std::vector<std::string>>();
}

// Every row of got within `tolerance` cosine distance of ref's; the worst distance and element error in the message.
void expect_parity(const Tensor& got, const Tensor& ref, const std::string& what, double tolerance = 1e-5) {
  ASSERT_EQ(got.shape(), ref.shape()) << what;
  const int64_t n = ref.dim(0), dim = ref.dim(1);
  double worst_distance = 0, worst_element = 0;
  for (int64_t r = 0; r < n; ++r) {
    const float *g = got.data<float>() + r * dim, *e = ref.data<float>() + r * dim;
    double ge = 0, gg = 0, ee = 0;
    for (int64_t i = 0; i < dim; ++i) {
      ge += double(g[i]) * e[i];
      gg += double(g[i]) * g[i];
      ee += double(e[i]) * e[i];
      worst_element = std::max(worst_element, std::fabs(double(g[i]) - e[i]));
    }
    // Two zero rows (an empty text where the tokenizer adds no special tokens) agree; one zero row does not.
    const double distance = gg == 0 && ee == 0 ? 0.0 : gg == 0 || ee == 0 ? 1.0 : 1.0 - ge / std::sqrt(gg * ee);
    worst_distance = std::max(worst_distance, distance);
    EXPECT_LE(distance, tolerance) << what << " text " << r;
  }
  std::cout << "[ parity   ] " << what << ": " << n << " embeddings of " << dim << ", worst cosine distance "
            << worst_distance << ", worst element error " << worst_element << "\n";
}

class StParity : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(model_dir(GetParam())))
      GTEST_SKIP() << "no fixture " << model_dir(GetParam()) << " (scripts/make_embed_fixtures.py)";
    reference = SafetensorsFile::open(model_dir(GetParam()) / "reference.safetensors");
  }
  std::shared_ptr<const SafetensorsFile> reference;
};

TEST_P(StParity, FromTheIdsEncodeSaw) {
  const Embedder e = Embedder::load(model_dir(GetParam()));
  expect_parity(e.embed_ids(read_ids(model_dir(GetParam()) / "ids.jsonl")), reference->tensor("embeddings"),
                std::string(GetParam()) + " from ids");
}

TEST_P(StParity, FromTheTexts) {
  const Embedder e = Embedder::load(model_dir(GetParam()));
  const std::vector<std::string> texts = read_texts(model_dir(GetParam()) / "texts.json");
  expect_parity(e.embed(texts), reference->tensor("embeddings"), std::string(GetParam()) + " from texts");
  if (reference->find("query"))
    expect_parity(e.embed(texts, {.prompt_name = "query"}), reference->tensor("query"),
                  std::string(GetParam()) + " from texts with the query prompt");
}

TEST_P(StParity, TheIdsEncodeSawAreTheTokenizersIds) {
  const Embedder e = Embedder::load(model_dir(GetParam()));
  const std::vector<std::string> texts = read_texts(model_dir(GetParam()) / "texts.json");
  const std::vector<std::vector<int32_t>> ids = read_ids(model_dir(GetParam()) / "ids.jsonl");
  ASSERT_EQ(texts.size(), ids.size());
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(e.tokenize(texts[i]), ids[i]) << GetParam() << " text " << i;
}

// sentence-transformers embeds an empty text as its special tokens alone ([CLS] [SEP], <s> </s>; nothing for a
// tokenizer that adds none, which wick embeds as zeros).
TEST_P(StParity, EmptyTextIsTheSpecialTokensAlone) {
  const Embedder e = Embedder::load(model_dir(GetParam()));
  const std::vector<int32_t> ids = e.tokenize("");
  const Tensor empty = e.embed({""});
  if (ids.empty()) {
    for (int64_t i = 0; i < empty.numel(); ++i) EXPECT_EQ(empty.data<float>()[i], 0.0f);
    return;
  }
  EXPECT_LE(ids.size(), 2u);
  const Tensor by_ids = e.embed_ids({ids});
  for (int64_t i = 0; i < empty.numel(); ++i) EXPECT_EQ(empty.data<float>()[i], by_ids.data<float>()[i]);
}

// On CUDA the same folders run in bf16 (weights and activations rounded to 8 significant bits, sums in f32): each
// embedding within cosine distance 2e-3 of sentence-transformers' f32 CPU one. Skipped where no CUDA device is.
constexpr double kCudaCosineTolerance = 2e-3;

class StParityCuda : public StParity {
 protected:
  void SetUp() override {
    try {
      make_backend(Device::cuda);
    } catch (const Error& e) {
      GTEST_SKIP() << e.what();
    }
    StParity::SetUp();
  }
};

TEST_P(StParityCuda, FromTheTexts) {
  const Embedder e = Embedder::load(model_dir(GetParam()), {.device = Device::cuda});
  const std::vector<std::string> texts = read_texts(model_dir(GetParam()) / "texts.json");
  expect_parity(e.embed(texts), reference->tensor("embeddings"), std::string(GetParam()) + " on CUDA from texts",
                kCudaCosineTolerance);
  if (reference->find("query"))
    expect_parity(e.embed(texts, {.prompt_name = "query"}), reference->tensor("query"),
                  std::string(GetParam()) + " on CUDA with the query prompt", kCudaCosineTolerance);
}

std::string test_name(const ::testing::TestParamInfo<const char*>& info) {
  std::string name = info.param;
  for (char& c : name)
    if (c == '-') c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Folders, StParity, ::testing::ValuesIn(kModels), test_name);
INSTANTIATE_TEST_SUITE_P(Folders, StParityCuda, ::testing::ValuesIn(kModels), test_name);

}  // namespace
}  // namespace wick::test

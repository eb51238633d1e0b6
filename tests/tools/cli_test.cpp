// The wick CLI contract (DESIGN.md): outputs, exit codes and one-line errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "../model/model_test_util.h"
#include "cpu_paths.h"
#include "test_util.h"
#include "wick/embedder.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

CliRun wick(const std::string& args) {
  const auto dir = temp_dir("cli");
  const std::string cmd = std::string(WICK_CLI) + " " + args + " >" + (dir / "out").string() + " 2>" + (dir / "err").string();
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "out"), read_file(dir / "err")};
}

std::string model(const char* name) { return fixture(std::string("models/") + name).string(); }

// "1,2,3" (appended piecewise: gcc 12's -Wrestrict misfires on `"," + std::to_string(v)`).
std::string join(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t v : ids) {
    if (!s.empty()) s += ',';
    s += std::to_string(v);
  }
  return s;
}

std::string ids_arg(const Tensor& t, int64_t row) { return join(int_row(t, row)); }

// The fixture's weights are bf16: the CPU multiplies by them as they are (the default) or widened to f32 (--compute
// f32, the reference); both are transformers' logits to 1e-4 with f32 products (only the sums' order differs), and
// the default within bf16's tolerance where it rounds the activations (AVX512_BF16).
TEST(Cli, LogitsMatchTransformers) {
  auto ref = SafetensorsFile::open(fixture("models/tiny-untied/reference.safetensors"));
  const Tensor ids = ref->tensor("input_ids");
  for (const char* compute : {"", " --compute auto", " --compute f32"}) {
    const auto out = temp_dir("logits") / "l.safetensors";
    const CliRun r = wick("logits --model " + model("tiny-untied") + " --tokens '" + ids_arg(ids, 0) + ";" +
                          ids_arg(ids, 1) + "' --out " + out.string() + compute);
    ASSERT_EQ(r.code, 0) << compute << "\n" << r.err;
    auto got = SafetensorsFile::open(out);
    const double tolerance = std::string(compute) == " --compute f32" ? 1e-4 : default_path_tolerance(1e-4);
    EXPECT_LE(relative_max_error(got->tensor("logits"), ref->tensor("logits")), tolerance) << compute;
  }
}

// --weights int8 quantises the weight matrices at load: the logits move from transformers' by the quantisation error
// (tests/model/int8_weights_test.cpp measures it; 1.5e-2 here), and are not bf16's.
TEST(Cli, Int8WeightsLogitsWithinTheirErrorOfTransformers) {
  auto ref = SafetensorsFile::open(fixture("models/tiny-untied/reference.safetensors"));
  const Tensor ids = ref->tensor("input_ids");
  const auto out = temp_dir("logits") / "l.safetensors";
  const CliRun r = wick("logits --model " + model("tiny-untied") + " --tokens '" + ids_arg(ids, 0) + ";" +
                        ids_arg(ids, 1) + "' --out " + out.string() + " --weights int8");
  ASSERT_EQ(r.code, 0) << r.err;
  const double err = relative_max_error(SafetensorsFile::open(out)->tensor("logits"), ref->tensor("logits"));
  EXPECT_LE(err, 3e-2);
  EXPECT_GT(err, 1e-4);
}

TEST(Cli, ClassifierLogitsPerRow) {
  auto ref = SafetensorsFile::open(fixture("models/tiny-seqcls/reference.safetensors"));
  const Tensor ids = ref->tensor("input_ids"), lengths = ref->tensor("lengths");
  std::string arg;
  for (int64_t r = 0; r < ids.dim(0); ++r) {
    arg += join(int_row(ids, r, lengths.data<int32_t>()[r]));
    if (r + 1 < ids.dim(0)) arg += ";";
  }
  const auto out = temp_dir("cls") / "l.safetensors";
  const CliRun r = wick("logits --model " + model("tiny-seqcls") + " --tokens '" + arg + "' --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LE(relative_max_error(SafetensorsFile::open(out)->tensor("logits"), ref->tensor("logits")), 1e-4);
}

TEST(Cli, GenerateJsonMatchesTransformersGreedy) {
  auto ref = SafetensorsFile::open(fixture("models/tiny-tied/reference.safetensors"));
  const Tensor prompts = ref->tensor("greedy_prompts"), expected = ref->tensor("greedy_ids");
  const CliRun r = wick("generate --model " + model("tiny-tied") + " --tokens " + ids_arg(prompts, 1) +
                     " --greedy --ignore-eos --max-tokens 24 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["output_ids"].get<std::vector<int32_t>>(), int_row(expected, 1));
  EXPECT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), int_row(prompts, 1));
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_TRUE(j["timings"].contains("prefill_ms"));
}

// The CPU's results do not depend on its thread count (threads split a product's outputs, never a sum): one thread
// gives the default's ids and logits bit for bit.
TEST(Cli, OneThreadGivesTheDefaultsTokens) {
  const std::string args = "generate --model " + model("tiny-untied") + " --tokens 1,2,3 --greedy --ignore-eos " +
                           "--max-tokens 16 --json";
  const CliRun many = wick(args), one = wick(args + " --threads 1");
  ASSERT_EQ(many.code, 0) << many.err;
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_EQ(nlohmann::json::parse(one.out)["output_ids"], nlohmann::json::parse(many.out)["output_ids"]);
}

// --tensor-parallel 2 on the CPU splits the model over two ranks: with f32 products (--compute f32) the greedy tokens
// are the whole model's, for one prompt and a batch of two.
TEST(Cli, TensorParallelGivesTheWholeModelsTokens) {
  const std::string args = "generate --model " + model("tiny-untied") + " --tokens '1,2,3;9,8' --greedy --ignore-eos " +
                           "--max-tokens 24 --json --compute f32";
  const CliRun whole = wick(args), split = wick(args + " --tensor-parallel 2");
  ASSERT_EQ(whole.code, 0) << whole.err;
  ASSERT_EQ(split.code, 0) << split.err;
  std::istringstream w(whole.out), s(split.out);
  std::string wl, sl;
  int rows = 0;
  while (std::getline(w, wl) && std::getline(s, sl)) {
    EXPECT_EQ(nlohmann::json::parse(sl)["output_ids"], nlohmann::json::parse(wl)["output_ids"]) << "prompt " << rows;
    ++rows;
  }
  EXPECT_EQ(rows, 2);
}

TEST(Cli, RandomModelRoundTrip) {
  const auto dir = temp_dir("rm") / "tiny";
  CliRun r = wick("random-model --like tiny --dtype f32 --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.err;
  r = wick("generate --model " + dir.string() + " --tokens 1,2,3 --greedy --max-tokens 5 --ignore-eos");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ','), 4) << r.out;
}

TEST(Cli, BadInputIsOneLineAndExitCode2) {
  struct Case {
    std::string args, needle;
  } cases[] = {
      {"logits --model " + model("tiny-tied") + " --tokens 1,x --out /tmp/x.safetensors", "--tokens: 'x'"},
      {"logits --model " + model("tiny-tied") + " --tokens '1,2;3' --out /tmp/x.safetensors", "equal length"},
      {"logits --model " + model("tiny-tied") + " --tokens 1,999 --out /tmp/x.safetensors", "999"},
      {"logits --model /nonexistent --tokens 1 --out /tmp/x.safetensors", "/nonexistent"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --max-tokens 0", "--max-tokens"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --device tpu", "--device"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --compute f64", "--compute: expected auto or f32"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --threads -2", "--threads"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --tensor-parallel 0",
       "--tensor-parallel: expected a count ≥ 1, found 0"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --tensor-parallel 3",
       "config.json's num_attention_heads (4) is not a multiple of it"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --weights foo",
       "--weights: expected auto or int8, found 'foo'"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --weights int8 --compute f32",
       "--compute f32 and --weights int8 exclude each other"},
      {"adapters merge --model " + model("tiny-tied") + " --adapter " + fixture("adapters/tied-all7").string() +
           " --out /tmp/x --weights int8",
       "--weights int8"},
      {"generate --model " + model("tiny-tied") + " --tokens 1,2 --max-tokens 2 --top-p 1.5", "--top-p"},
      {"random-model --like gpt5 --out /tmp/x", "gpt5"},
      {"random-model --like tiny --dtype i32 --out /tmp/x", "--dtype"},
      {"frobnicate", "frobnicate"},
  };
  for (const Case& c : cases) {
    const CliRun r = wick(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
  }
}

// tokenize / detokenize round-trip through the trained fixture tokenizer and agree with HF's ids.
TEST(Cli, TokenizeAndDetokenize) {
  const std::string tok = fixture("tokenizer/trained/tokenizer.json").string();
  const CliRun enc = wick("tokenize --model " + tok + " --text 'Hello world, hello wick!'");
  ASSERT_EQ(enc.code, 0) << enc.err;
  const auto ids = nlohmann::json::parse(enc.out).get<std::vector<int32_t>>();
  ASSERT_FALSE(ids.empty());
  const CliRun dec = wick("detokenize --model " + tok + " --ids " + join(ids));
  ASSERT_EQ(dec.code, 0) << dec.err;
  EXPECT_EQ(dec.out, " Hello world, hello wick!\n");  // this tokenizer adds a prefix space, which HF decodes too
  const auto qwen = fixture("tokenizer/qwen/tokenizer.json");
  if (std::filesystem::exists(qwen)) {  // HF tokenizers: "Hello world" -> [9707, 1879]
    const CliRun q = wick("tokenize --model " + qwen.string() + " --text 'Hello world'");
    EXPECT_EQ(nlohmann::json::parse(q.out).get<std::vector<int32_t>>(), (std::vector<int32_t>{9707, 1879}));
  }
  const CliRun bad = wick("detokenize --model " + tok + " --ids 1,99999999");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--ids"), std::string::npos) << bad.err;
  const CliRun missing = wick("tokenize --model /nonexistent --text x");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("/nonexistent"), std::string::npos) << missing.err;
}

// --device cuda works where a GPU is, and is otherwise a clear error with exit code 2.
TEST(Cli, DeviceCudaRunsOrExplains) {
  const CliRun r = wick("generate --model " + model("tiny-tied") + " --tokens 1,2 --greedy --max-tokens 3 --device cuda");
  if (r.code == 0) {
    EXPECT_FALSE(r.out.empty());
  } else {
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find("cuda"), std::string::npos) << r.err;
  }
}

// `wick embed` (DESIGN.md's contract) on a folder `wick random-model --like tiny-bert` writes: --out holds f32
// `embeddings` [n, dim], the library's (wick/embedder.h) floats for the same texts and prompt (the library's parity
// with sentence-transformers is tests/embed's); without --out, one JSON array per line with the same floats; --file
// .txt and .jsonl give the texts in order.
const std::filesystem::path& tiny_embedder() {
  static const std::filesystem::path dir = [] {
    const auto d = temp_dir("tiny-bert");
    const CliRun r = wick("random-model --like tiny-bert --dtype f32 --out " + d.string());
    EXPECT_EQ(r.code, 0) << r.err;
    return d;
  }();
  return dir;
}

TEST(Cli, EmbedGivesTheLibrarysEmbeddings) {
  const std::vector<std::string> texts = {"The quick brown fox.", "Ångström, naïve café", "東京は日本の首都です。",
                                          "line with \"quotes\" and\nnewline"};
  const Embedder library = Embedder::load(tiny_embedder());
  const auto tmp = temp_dir("embed");
  std::string jsonl;
  for (const std::string& t : texts) jsonl += nlohmann::json{{"text", t}}.dump() + "\n";
  write_file(tmp / "texts.jsonl", jsonl);
  for (const std::string& prompt : {std::string(), std::string("query: ")}) {
    const auto out = tmp / "e.safetensors";
    const CliRun r = wick("embed --model " + tiny_embedder().string() + " --file " + (tmp / "texts.jsonl").string() +
                          " --out " + out.string() + (prompt.empty() ? "" : " --prompt '" + prompt + "'"));
    ASSERT_EQ(r.code, 0) << r.err;
    EmbedOptions options;
    if (!prompt.empty()) options.prompt = prompt;
    const Tensor want = library.embed(texts, options);
    const Tensor got = SafetensorsFile::open(out)->tensor("embeddings");
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(0, std::memcmp(got.raw(), want.raw(), size_t(want.nbytes()))) << "prompt '" << prompt << "'";
  }
  // One text per line of a .txt (CR LF ends a line too), printed as JSON arrays: the library's floats.
  write_file(tmp / "two.txt", "first line\r\nsecond line\n");
  const CliRun lines = wick("embed --model " + tiny_embedder().string() + " --file " + (tmp / "two.txt").string());
  ASSERT_EQ(lines.code, 0) << lines.err;
  const Tensor two = library.embed({"first line", "second line"});
  std::istringstream printed(lines.out);
  std::string line;
  for (int64_t i = 0; i < 2; ++i) {
    ASSERT_TRUE(std::getline(printed, line));
    const auto row = nlohmann::json::parse(line).get<std::vector<float>>();
    ASSERT_EQ(int64_t(row.size()), two.dim(1));
    for (int64_t k = 0; k < two.dim(1); ++k) EXPECT_EQ(row[size_t(k)], two.data<float>()[i * two.dim(1) + k]);
  }
  EXPECT_FALSE(std::getline(printed, line));
}

TEST(Cli, EmbedBadInputIsOneLineAndExitCode2) {
  const auto tmp = temp_dir("embed-bad");
  write_file(tmp / "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": 1}\n");
  write_file(tmp / "t.csv", "a\n");
  write_file(tmp / "bad.txt", "ok\n\xff\xfe\n");
  const std::string m = " --model " + tiny_embedder().string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"embed" + m, "--text"},
      {"embed" + m + " --text a --file " + (tmp / "bad.jsonl").string(), "not both"},
      {"embed" + m + " --file " + (tmp / "bad.jsonl").string(), "bad.jsonl:2"},
      {"embed" + m + " --file " + (tmp / "t.csv").string(), "--file"},
      {"embed" + m + " --file " + (tmp / "missing.txt").string(), "missing.txt"},
      {"embed" + m + " --file " + (tmp / "bad.txt").string(), "UTF-8"},
      {"embed" + m + " --text a --prompt-name nope", "nope"},
      {"embed" + m + " --text a --prompt-name query --prompt 'q: '", "--prompt"},
      {"embed" + m + " --text a --dimensions -1", "--dimensions"},
      {"embed" + m + " --text a --dimensions 100000", "dimensions"},
      {"embed" + m + " --text a --batch-tokens 0", "--batch-tokens"},
      {"embed" + m + " --text \"$(printf 'word %.0s' $(seq 1 600))\" --no-truncate", "max_seq_length"},
      {"embed --model " + model("tiny-untied") + "-missing --text a", "tiny-untied-missing"},
  };
  for (const auto& [args, needle] : cases) {
    const CliRun r = wick(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << "\n" << r.err;
  }
}

}  // namespace
}  // namespace wick::test

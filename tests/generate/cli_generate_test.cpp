// `wick generate` and `wick chat` flags: streaming, sampling, seeds, errors (DESIGN.md's CLI contract).
#include <gtest/gtest.h>

#include <sstream>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

CliRun wick(const std::string& args, const std::string& stdin_text = "") {
  const auto dir = temp_dir("cli-gen");
  write_file(dir / "in", stdin_text);
  const std::string cmd = std::string(WICK_CLI) + " " + args + " <" + (dir / "in").string() + " >" +
                          (dir / "out").string() + " 2>" + (dir / "err").string();
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "out"), read_file(dir / "err")};
}

const std::string kTiny = "generate --model " + fixture("models/tiny-tied").string() + " ";

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(CliGenerate, StreamJsonLinesMatchTheSummaryAndTransformersGreedy) {
  auto ref = SafetensorsFile::open(fixture("models/tiny-tied/reference.safetensors"));
  const Tensor prompts = ref->tensor("greedy_prompts"), expected = ref->tensor("greedy_ids");
  const int64_t w = prompts.dim(1);
  std::string ids;
  for (int64_t i = 0; i < w; ++i) {
    if (i) ids += ',';
    ids += std::to_string(prompts.data<int32_t>()[i]);
  }
  const CliRun r = wick(kTiny + "--tokens " + ids + " --greedy --ignore-eos --max-tokens 24 --stream --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 25u);  // 24 tokens, then the summary
  const std::vector<int32_t> want(expected.data<int32_t>(), expected.data<int32_t>() + expected.dim(1));
  for (size_t i = 0; i < 24; ++i) EXPECT_EQ(lines[i]["id"], want[i]) << i;
  EXPECT_EQ(lines[23]["finish_reason"], "length");
  EXPECT_EQ(lines[24]["output_ids"].get<std::vector<int32_t>>(), want);
  EXPECT_TRUE(lines[24]["text"].is_null());  // no tokenizer.json beside the fixture model
}

TEST(CliGenerate, SameSeedSameTokensDifferentSeedDifferent) {
  const std::string args = kTiny + "--tokens 5,6,7 --ignore-eos --max-tokens 30 --temperature 3 --json --seed ";
  const CliRun a = wick(args + "11"), b = wick(args + "11"), c = wick(args + "12");
  ASSERT_EQ(a.code, 0) << a.err;
  const auto ids = [](const CliRun& r) { return nlohmann::json::parse(r.out)["output_ids"]; };
  EXPECT_EQ(ids(a), ids(b));
  EXPECT_NE(ids(a), ids(c));
}

TEST(CliGenerate, BadFlagsAreOneLineErrorsWithExitCode2) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--tokens 1,2 --temperature -1", "--temperature"},
      {"--tokens 1,2 --temperature nan", "--temperature"},
      {"--tokens 1,2 --top-p 1.5", "--top-p"},
      {"--tokens 1,2 --top-p 0", "--top-p"},
      {"--tokens 1,2 --top-k -3", "--top-k"},
      {"--tokens 1,2 --min-p 2", "--min-p"},
      {"--tokens 1,2 --repeat-penalty 0", "--repeat-penalty"},
      {"--tokens 1,2 --max-tokens 300", "context"},
      {"--prompt hello", "tokenizer.json"},
      {"--tokens 1,2 --stop x", "tokenizer"},
      {"", "--prompt"},
  };
  for (const auto& [args, needle] : cases) {
    const CliRun r = wick(kTiny + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// Several prompts, each with its own adapter (or none), decoded together: one JSON line per prompt, in order, each
// equal to the prompt generated alone with that adapter.
TEST(CliGenerate, SeveralPromptsWithTheirOwnAdaptersEachAsAlone) {
  const std::string model = "generate --model " + fixture("models/tiny-untied").string() + " ";
  const std::string a = fixture("adapters/untied-patterns").string(), b = fixture("adapters/untied-qv-rslora").string();
  const std::string common = " --greedy --ignore-eos --max-tokens 12 --json";
  const CliRun batch = wick(model + "--tokens '5,6,7;8,9;10,11,12,13' --adapter p=" + a + " --adapter q=" + b +
                            " --row-adapters p,-,q" + common);
  ASSERT_EQ(batch.code, 0) << batch.err;
  const auto lines = json_lines(batch.out);
  ASSERT_EQ(lines.size(), 3u);
  const std::vector<std::string> alone = {"--tokens 5,6,7 --adapter " + a, "--tokens 8,9", "--tokens 10,11,12,13 --adapter " + b};
  for (size_t i = 0; i < 3; ++i) {
    const CliRun one = wick(model + alone[i] + common);
    ASSERT_EQ(one.code, 0) << one.err;
    EXPECT_EQ(lines[i]["output_ids"], json_lines(one.out).at(0)["output_ids"]) << alone[i];
  }
  EXPECT_NE(lines[0]["output_ids"], json_lines(wick(model + "--tokens 5,6,7" + common).out).at(0)["output_ids"])
      << "the adapter changes the tokens (the comparison would be vacuous)";

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--tokens '1,2;3' --adapter p=" + a + " --row-adapters p,x", "no adapter named 'x'"},
      {"--tokens '1,2;3' --adapter p=" + a + " --row-adapters p", "1 entries for 2 prompts"},
      {"--tokens '1,2;3' --adapter p=" + a + " --adapter q=" + b, "name one (or -) for each of the 2 prompts"},
      {"--tokens '1,2;3' --row-adapters -,-", "give the adapters it names as --adapter NAME=DIR"},
      {"--tokens '1,2;3' --adapter p=" + a + " --adapter p=" + b + " --row-adapters p,p", "the name 'p' is given twice"},
      {"--tokens '1,2;3' --stream", "--stream: streams one prompt; 2 were given"},
  };
  for (const auto& [args, needle] : bad) {
    const CliRun r = wick(model + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
  }
}

TEST(CliChat, NeedsATokenizerWithAChatTemplate) {
  const CliRun r = wick("chat --model " + fixture("models/tiny-tied").string(), "hello\n");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("tokenizer.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace wick::test

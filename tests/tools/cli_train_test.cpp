// `wick train` as the CLI contract (DESIGN.md) gives it: a run's outputs (adapter, train_log.csv, loss.svg, --json,
// --dump-grads), and each bad input refused with exit code 2, one stderr line naming the flag, file or line, and
// --out left as it was (neither made nor changed).
//
// Text data needs a tokenizer whose ids fit the model. The fixture tokenizer (tests/fixtures/tokenizer/trained) has
// 1,000 ids, more than tiny-untied's 384, so the text cases run on a copy of tiny-untied with a byte-level tokenizer
// made here: the 256 byte tokens (ids 0-255, no merges), <|endoftext|>, <|im_start|>, <|im_end|> (256-258) and
// Qwen2's ChatML template. The other cases use pre-tokenised input_ids lines on tiny-untied itself.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

CliRun wick(const std::vector<std::string>& args) {
  const fs::path dir = temp_dir("cli");
  std::string cmd = WICK_CLI;
  for (const std::string& a : args) cmd.append(" ").append(shell_quote(a));
  cmd += " >" + (dir / "out").string() + " 2>" + (dir / "err").string();
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "out"), read_file(dir / "err")};
}

std::string tiny() { return fixture("models/tiny-untied").string(); }

// Six pre-tokenised examples (ids < 384, tiny-untied's vocab).
constexpr const char* kIdsData =
    "{\"input_ids\": [5, 17, 42, 99, 103]}\n"
    "{\"input_ids\": [9, 14, 120, 33]}\n"
    "{\"input_ids\": [150, 4, 61, 88, 23, 6], \"labels\": [-100, -100, 61, 88, 23, 6]}\n"
    "{\"input_ids\": [200, 201, 202, 203, 204, 205, 206]}\n"
    "{\"input_ids\": [7, 300, 8, 301, 9]}\n"
    "{\"input_ids\": [250, 260, 270, 280]}\n";

// Every file under `dir` (relative path -> contents; folders as "/"), or nullopt when `dir` does not exist.
std::optional<std::map<std::string, std::string>> snapshot(const fs::path& dir) {
  if (!fs::exists(dir)) return std::nullopt;
  std::map<std::string, std::string> files;
  if (!fs::is_directory(dir)) return std::map<std::string, std::string>{{"", read_file(dir)}};
  for (const auto& e : fs::recursive_directory_iterator(dir))
    files[fs::relative(e.path(), dir).string()] = e.is_directory() ? "/" : read_file(e.path());
  return files;
}

// An --out that holds an earlier run's adapter, which a refused run must leave alone.
fs::path earlier_run(const fs::path& dir) {
  const fs::path out = dir / "earlier";
  fs::create_directories(out);
  write_file(out / "adapter_config.json", "{\"r\": 4, \"lora_alpha\": 8}\n");
  write_file(out / "adapter_model.safetensors", "the earlier run's weights");
  write_file(out / "train_log.csv", "step,epoch,loss,lr,grad_norm,tokens,seconds,tokens_per_s,eval_loss\n");
  return out;
}

void expect_one_line_error(const CliRun& r, const std::vector<std::string>& needles, const std::string& what) {
  EXPECT_EQ(r.code, 2) << what << "\n" << r.err;
  EXPECT_TRUE(r.err.starts_with("wick: ")) << what << "\n" << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << what << ": one line\n" << r.err;
  for (const std::string& n : needles) EXPECT_NE(r.err.find(n), std::string::npos) << what << ": lacks '" << n << "'\n" << r.err;
  EXPECT_TRUE(r.out.empty()) << what << "\n" << r.out;
}

// `wick train ARGS --out OUT` twice, OUT absent and OUT holding an earlier run: exit code 2, one line on stderr holding
// every needle, and OUT as it was (still absent; the earlier run's files unchanged, nothing added).
void expect_bad_input(const std::vector<std::string>& args, const std::vector<std::string>& needles) {
  std::string what = "wick";
  for (const std::string& a : args) what += " " + a;
  const fs::path dir = temp_dir("bad");
  const fs::path fresh = dir / "fresh", earlier = earlier_run(dir);
  const auto before = snapshot(earlier);
  for (const fs::path& out : {fresh, earlier}) {
    std::vector<std::string> full = args;
    full.insert(full.end(), {"--out", out.string()});
    expect_one_line_error(wick(full), needles, what + " --out " + out.string());
  }
  EXPECT_FALSE(fs::exists(fresh)) << what << ": made --out";
  EXPECT_EQ(snapshot(earlier), before) << what << ": changed --out";
}

// `train --model M --data D` with D holding `data`.
std::vector<std::string> train_args(const std::string& data, const std::string& model = tiny()) {
  const fs::path file = temp_dir("data") / "data.jsonl";
  write_file(file, data);
  return {"train", "--model", model, "--data", file.string()};
}

std::vector<std::string> plus(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// GPT-2's byte-to-character map (the ByteLevel pre-tokenizer's alphabet), as UTF-8.
std::string byte_char(int b) {
  auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
  int cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int c = 0; c < b; ++c) cp += !printable(c);
  }
  if (cp < 0x80) return std::string(1, char(cp));
  return {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
}

// A copy of tiny-untied with a 259-id byte-level tokenizer and Qwen2's chat template (see the top of the file).
fs::path tiny_with_tokenizer() {
  const fs::path dir = temp_dir("tok-model") / "tiny";
  fs::copy(tiny(), dir, fs::copy_options::recursive);
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  int id = 256;
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
    added.push_back({{"id", id++}, {"content", special}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  const nlohmann::json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  write_file(dir / "tokenizer.json", tokenizer.dump());
  write_file(dir / "tokenizer_config.json", nlohmann::json{{"eos_token", "<|im_end|>"}}.dump());
  fs::copy_file(fixture("tokenizer/templates/qwen2.jinja"), dir / "chat_template.jinja");
  return dir;
}

// --- refused runs ---------------------------------------------------------------------------------------------

TEST(CliTrain, MalformedJsonlNamesFileAndLine) {
  const auto args = train_args("{\"input_ids\": [5, 17, 42]}\n{\"input_ids\": [9, 14,\n");
  expect_bad_input(args, {args[4], "line 2"});
}

TEST(CliTrain, EmptyDatasetNamesTheFile) {
  const auto args = train_args("\n  \n");
  expect_bad_input(args, {args[4], "no examples"});
}

TEST(CliTrain, ExampleWithoutTargetTokensNamesTheLine) {
  const auto args = train_args(std::string(kIdsData) + "{\"input_ids\": [5, 6, 7], \"labels\": [5, -100, -100]}\n");
  expect_bad_input(args, {args[4], "line 7", "no target tokens"});
}

TEST(CliTrain, TextWithoutTokenizerNamesTheLine) {
  const auto args = train_args(std::string(kIdsData) + "{\"text\": \"hello\"}\n");
  expect_bad_input(args, {args[4], "line 7", "tokenizer"});
}

TEST(CliTrain, UnknownChatRoleNamesTheLine) {
  const auto args = train_args("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, "
                               "{\"role\": \"robot\", \"content\": \"beep\"}]}\n");
  expect_bad_input(args, {args[4], "line 1", "robot"});
  // The same with a tokenizer that could read the conversation.
  const auto with_tokenizer = train_args("{\"prompt\": \"a\", \"completion\": \"b\"}\n"
                                         "{\"messages\": [{\"role\": \"robot\", \"content\": \"beep\"}]}\n",
                                         tiny_with_tokenizer().string());
  expect_bad_input(with_tokenizer, {with_tokenizer[4], "line 2", "robot"});
}

TEST(CliTrain, CompletionCutAwayByTruncationNamesTheLine) {
  const auto args = train_args("{\"prompt\": \"a prompt longer than the sequence\", \"completion\": \" yes\"}\n",
                               tiny_with_tokenizer().string());
  expect_bad_input(plus(args, {"--seq-len", "8"}), {args[4], "line 1", "no target tokens"});
}

TEST(CliTrain, IdOutsideTheVocabNamesTheLine) {
  const auto args = train_args(std::string(kIdsData) + "{\"input_ids\": [5, 384, 7]}\n");
  expect_bad_input(args, {args[4], "line 7", "384"});
}

TEST(CliTrain, UnknownTargetModule) {
  expect_bad_input(plus(train_args(kIdsData), {"--targets", "q_proj,foo_proj"}), {"--targets", "foo_proj"});
  expect_bad_input(plus(train_args(kIdsData), {"--targets", "q_proj,,v_proj"}), {"--targets"});
}

TEST(CliTrain, RankZero) { expect_bad_input(plus(train_args(kIdsData), {"--rank", "0"}), {"--rank"}); }

TEST(CliTrain, LearningRateNotPositive) {
  expect_bad_input(plus(train_args(kIdsData), {"--lr", "0"}), {"--lr"});
  expect_bad_input(plus(train_args(kIdsData), {"--lr", "-1"}), {"--lr"});
}

TEST(CliTrain, StepsWithEpochs) {
  expect_bad_input(plus(train_args(kIdsData), {"--steps", "3", "--epochs", "2"}), {"--steps", "--epochs"});
}

TEST(CliTrain, DumpGradsNeedsOneStep) {
  const fs::path grads = temp_dir("grads") / "grads.safetensors";
  expect_bad_input(plus(train_args(kIdsData), {"--dump-grads", grads.string()}), {"--dump-grads", "--steps 1"});
  expect_bad_input(plus(train_args(kIdsData), {"--steps", "2", "--dump-grads", grads.string()}), {"--dump-grads"});
  EXPECT_FALSE(fs::exists(grads));
}

// LoRA dropout is implemented (TrainOptions::dropout): 0.1 trains (see TextDataWithTokenizer); outside [0, 1) is refused.
TEST(CliTrain, DropoutOutsideItsRange) {
  expect_bad_input(plus(train_args(kIdsData), {"--dropout", "1"}), {"--dropout"});
  expect_bad_input(plus(train_args(kIdsData), {"--dropout", "-0.1"}), {"--dropout"});
}

// --warmup takes steps (an integer) or a ratio (a number with a point) in [0, 1]; nothing else.
TEST(CliTrain, WarmupNeitherStepsNorRatio) {
  for (const char* bad : {"1.5", "1e-1", "-2", "ten", "0.1.2", "."})
    expect_bad_input(plus(train_args(kIdsData), {"--warmup", bad}), {"--warmup"});
}

TEST(CliTrain, UnwritableOutput) {
  const fs::path dir = temp_dir("unwritable");
  const fs::path file = dir / "notes.txt";
  write_file(file, "not a folder");
  const auto args = train_args(kIdsData);
  struct Case {
    fs::path out;
    std::string needle;
  } cases[] = {{"/proc/wick-out", "/proc/wick-out"},  // /proc takes no new folder, even for root
               {file / "run", (file / "run").string()},
               {file, "is a file"}};
  for (const Case& c : cases) {
    expect_one_line_error(wick(plus(args, {"--out", c.out.string()})), {"--out", c.needle}, "--out " + c.out.string());
    EXPECT_FALSE(fs::exists(c.out / "adapter_model.safetensors"));
  }
  EXPECT_FALSE(fs::exists("/proc/wick-out"));
  EXPECT_EQ(read_file(file), "not a folder");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1) << "no probe left behind";
}

// A tokenizer with ids the model does not have: the examples are refused, not trained on (reading past the
// embedding table). The fixture tokenizer's 1,000 ids against tiny-untied's 384.
TEST(CliTrain, TokenizerLargerThanTheModel) {
  const fs::path model = temp_dir("big-tok") / "tiny";
  fs::copy(tiny(), model, fs::copy_options::recursive);
  fs::copy_file(fixture("tokenizer/trained/tokenizer.json"), model / "tokenizer.json");
  const auto args = train_args("{\"text\": \"Hello world, hello wick! The quick brown fox jumps over the lazy dog.\"}\n",
                               model.string());
  expect_bad_input(plus(args, {"--steps", "1"}), {args[4], "line 1", "384"});
}

// --- runs ----------------------------------------------------------------------------------------------------------

std::vector<double> csv_column(const std::string& csv, size_t column) {
  std::vector<double> out;
  const auto lines = lines_of(csv);
  for (size_t i = 1; i < lines.size(); ++i) {
    std::istringstream in(lines[i]);
    std::string cell;
    for (size_t c = 0; c <= column; ++c) std::getline(in, cell, ',');
    out.push_back(cell.empty() ? NAN : std::stod(cell));
  }
  return out;
}

TEST(CliTrain, ThreeStepsJson) {
  const fs::path out = temp_dir("run") / "adapter";
  const CliRun r = wick(plus(train_args(kIdsData), {"--out", out.string(), "--steps", "3", "--batch-size", "2", "--lr",
                                                    "1e-3", "--json"}));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(lines_of(r.out).size(), 1u) << "stdout is the JSON object alone\n" << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["steps"], 3);
  ASSERT_EQ(j["losses"].size(), 3u) << r.out;
  for (const auto& loss : j["losses"]) EXPECT_TRUE(loss.is_number() && loss.get<double>() > 0) << r.out;
  EXPECT_EQ(j["eval_losses"], nlohmann::json::array());
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["peak_memory_bytes"].get<int64_t>(), 0);
  EXPECT_GT(j["seconds"].get<double>(), 0);
  EXPECT_EQ(j["out"], out.string());

  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "train_log.csv", "loss.svg"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const std::string csv = read_file(out / "train_log.csv");
  ASSERT_EQ(lines_of(csv).size(), 4u) << csv;
  const std::vector<double> losses = csv_column(csv, 2);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(losses[i], j["losses"][i].get<double>(), 1e-8 * losses[i]) << i;
  EXPECT_TRUE(read_file(out / "loss.svg").starts_with("<svg"));

  // Not a terminal: one log line per step on stderr.
  int step_lines = 0;
  for (const std::string& line : lines_of(r.err)) step_lines += line.starts_with("step ") && line.find("/3 loss ") != std::string::npos;
  EXPECT_EQ(step_lines, 3) << r.err;

  // The adapter is one wick (and PEFT) can load.
  const CliRun gen = wick({"generate", "--model", tiny(), "--adapter", out.string(), "--tokens", "5,17,42", "--greedy",
                           "--max-tokens", "2", "--ignore-eos"});
  EXPECT_EQ(gen.code, 0) << gen.err;
}

// LoRA training on 8-bit base weights (--weights int8): the same steps as on the file's bf16 weights, with losses
// that differ by the quantisation error (2e-4 to 4e-4 relative on this fixture, bounded at 2e-3), not by a different
// model.
TEST(CliTrain, Int8BaseWeights) {
  std::vector<double> losses[2];
  for (int i = 0; i < 2; ++i) {
    const fs::path out = temp_dir("run") / "adapter";
    std::vector<std::string> args = plus(train_args(kIdsData), {"--out", out.string(), "--steps", "3", "--batch-size",
                                                                "2", "--lr", "1e-3", "--no-shuffle", "--json"});
    if (i == 1) args = plus(args, {"--weights", "int8"});
    const CliRun r = wick(args);
    ASSERT_EQ(r.code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    for (const auto& loss : j["losses"]) losses[i].push_back(loss.get<double>());
  }
  ASSERT_EQ(losses[1].size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    EXPECT_NEAR(losses[1][s], losses[0][s], 2e-3 * losses[0][s]) << "step " << s;
    EXPECT_NE(losses[1][s], losses[0][s]) << "step " << s << ": the base was quantised";
  }
}

TEST(CliTrain, HumanOutputAndEvalLines) {
  const fs::path dir = temp_dir("run"), out = dir / "adapter";
  write_file(dir / "eval.jsonl", "{\"input_ids\": [5, 17, 42, 99]}\n{\"input_ids\": [250, 260, 270]}\n");
  const CliRun r = wick(plus(train_args(kIdsData), {"--out", out.string(), "--steps", "4", "--batch-size", "3", "--eval",
                                                    (dir / "eval.jsonl").string(), "--eval-every", "2"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(out.string()), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("eval 2/4 loss "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("eval 4/4 loss "), std::string::npos) << r.err;
  const std::vector<double> evals = csv_column(read_file(out / "train_log.csv"), 8);
  ASSERT_EQ(evals.size(), 4u);
  EXPECT_TRUE(std::isnan(evals[0]) && std::isnan(evals[2])) << "no eval after steps 1 and 3";
  EXPECT_TRUE(evals[1] > 0 && evals[3] > 0);
  EXPECT_NE(read_file(out / "loss.svg").find("eval loss"), std::string::npos);
}

// --warmup 2 (steps) and --warmup 0.5 (a ratio of 4 steps) warm up the same way: lr 0, lr/2, then lr.
TEST(CliTrain, WarmupStepsOrRatio) {
  for (const char* warmup : {"2", "0.5"}) {
    const fs::path out = temp_dir("warmup") / "adapter";
    const CliRun r = wick(plus(train_args(kIdsData), {"--out", out.string(), "--steps", "4", "--batch-size", "2", "--lr",
                                                      "1e-3", "--schedule", "constant_with_warmup", "--warmup", warmup}));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(csv_column(read_file(out / "train_log.csv"), 3), (std::vector<double>{0, 5e-4, 1e-3, 1e-3})) << warmup;
  }
}

TEST(CliTrain, DumpGradsWritesEveryTrainedTensor) {
  const fs::path dir = temp_dir("grads"), out = dir / "adapter", grads = dir / "grads.safetensors";
  const CliRun r = wick(plus(train_args(kIdsData), {"--out", out.string(), "--steps", "1", "--batch-size", "4",
                                                    "--targets", "all-linear", "--dump-grads", grads.string()}));
  ASSERT_EQ(r.code, 0) << r.err;
  const auto adapter = SafetensorsFile::open(out / "adapter_model.safetensors");
  const auto dumped = SafetensorsFile::open(grads);
  ASSERT_EQ(dumped->entries().size(), adapter->entries().size());
  EXPECT_EQ(dumped->entries().size(), 3u * 7 * 2) << "3 layers × 7 projections × (A, B)";
  double total = 0;
  for (const SafetensorsEntry& e : adapter->entries()) {
    const SafetensorsEntry* g = dumped->find(e.name);
    ASSERT_NE(g, nullptr) << e.name;
    EXPECT_EQ(g->shape, e.shape) << e.name;
    EXPECT_EQ(g->dtype_name, "F32") << e.name;
    const Tensor t = dumped->tensor(e.name);
    for (int64_t i = 0; i < t.numel(); ++i) {
      ASSERT_TRUE(std::isfinite(t.data<float>()[i])) << e.name;
      total += std::fabs(t.data<float>()[i]);
    }
  }
  EXPECT_GT(total, 0) << "B starts at zero, so A's gradients are zero, but B's are not";
  for (const char* f : {"adapter_config.json", "train_log.csv", "loss.svg"}) EXPECT_TRUE(fs::exists(out / f)) << f;
}

// Text, prompt/completion and chat lines through a tokenizer, with LoRA dropout.
TEST(CliTrain, TextDataWithTokenizer) {
  const fs::path out = temp_dir("text") / "adapter";
  const auto args = train_args(
      "{\"text\": \"The quick brown fox.\"}\n"
      "{\"prompt\": \"2 + 2 =\", \"completion\": \" 4\"}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}]}\n",
      tiny_with_tokenizer().string());
  const CliRun r = wick(plus(args, {"--out", out.string(), "--steps", "2", "--batch-size", "2", "--dropout", "0.1",
                                    "--json"}));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["losses"].size(), 2u) << r.out;
  EXPECT_EQ(lines_of(read_file(out / "train_log.csv")).size(), 3u);
}

}  // namespace
}  // namespace wick::test

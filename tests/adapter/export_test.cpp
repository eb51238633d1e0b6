// Writing adapters and merged models, and the CLI: `wick logits --adapter`, `wick adapters inspect|merge`.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "adapter_test_util.h"
#include "cpu_paths.h"

namespace wick::test {
namespace {

CliRun wick_cli(const std::string& args) {
  const auto dir = temp_dir("cli");
  const std::string cmd = std::string(WICK_CLI) + " " + args + " >" + (dir / "out").string() + " 2>" + (dir / "err").string();
  const int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "out"), read_file(dir / "err")};
}

std::string join(const std::vector<std::vector<int32_t>>& rows) {
  std::string s;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t i = 0; i < rows[r].size(); ++i) {
      if (i) s += ',';
      s += std::to_string(rows[r][i]);
    }
    if (r + 1 < rows.size()) s += ";";
  }
  return s;
}

// A random adapter with rank / alpha patterns and a layer subset survives save + load bit-exactly.
TEST(Export, SavedAdapterLoadsBack) {
  auto model = Model::load(fixture("models/tiny-untied"));
  LoraConfig c = all_projections(4, 8);
  c.rank_pattern = {{"down_proj", 2}};
  c.alpha_pattern = {{"layers.1.self_attn.q_proj", 3}};
  c.layers_to_transform = {1, 2};
  c.use_rslora = true;
  const auto a = LoraAdapter::random("r", c, *model, 5);
  const auto dir = temp_dir("save");
  a->save(dir);
  const auto b = LoraAdapter::load(dir, *model);
  EXPECT_EQ(b->info().lora_modules, 14);
  EXPECT_EQ(b->source().factors(1, ProjKind::down)->a.dim(0), 2);
  EXPECT_FLOAT_EQ(b->source().factors(1, ProjKind::q)->scale, float(3.0 / 2.0));
  const std::vector<std::vector<int32_t>> rows{{4, 5, 6, 7}};
  EXPECT_TRUE(bit_equal(model->logits(rows, &a->source()), model->logits(rows, &b->source())));
}

// A merged model written as a Hugging Face directory computes what the merged model does, and that is what the model
// with the adapter does up to the merge's rounding: none into tiny-tied's f32 weights; tiny-seqcls's f16 weights round
// each merged value to f16 once (measured 1.5e-4 of the logits, bounded at 1e-3).
TEST(Export, MergedModelDirectoryReloads) {
  for (const char* name : {"tiny-tied", "tiny-seqcls"}) {
    auto model = Model::load(fixture(std::string("models/") + name));
    LoraConfig c = all_projections(4, 8);
    if (model->config().head == ModelHead::sequence_classification) c.modules_to_save = {"score"};
    const auto a = LoraAdapter::random("m", c, *model, 9);
    const std::vector<std::vector<int32_t>> rows{{4, 5, 6, 7, 8}};
    const Tensor unmerged = model->logits(rows, &a->source());
    model->merge_adapter(a);
    const auto dir = temp_dir("merged");
    model->save_pretrained(dir);
    auto reloaded = Model::load(dir);
    EXPECT_LE(relative_max_error(reloaded->logits(rows), model->logits(rows)), 1e-5) << name;
    EXPECT_LE(relative_max_error(reloaded->logits(rows), unmerged), model->weight_dtype() == DType::f16 ? 1e-3 : 1e-5)
        << name;
    EXPECT_EQ(reloaded->config().dtype, DType::f32);
  }
}

TEST(Cli, LogitsWithAdapterMatchPeft) {
  const auto dir = fixture("adapters/untied-qv-rslora");
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const auto out = temp_dir("cli-logits") / "l.safetensors";
  const CliRun r = wick_cli("logits --model " + fixture("models/tiny-untied").string() + " --adapter " + dir.string() +
                            " --tokens '" + join(reference_rows(*ref)) + "' --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_LE(relative_max_error(SafetensorsFile::open(out)->tensor("logits"), ref->tensor("logits")),
            default_path_tolerance(1e-4));
}

TEST(Cli, LogitsWithBadAdapterIsAOneLineError) {
  const auto dir = temp_dir("cli-bad");
  write_file(dir / "adapter_config.json", R"({"peft_type": "LORA", "use_dora": true})");
  write_file(dir / "adapter_model.safetensors", "");
  const CliRun r = wick_cli("logits --model " + fixture("models/tiny-tied").string() + " --adapter " + dir.string() +
                            " --tokens 1,2 --out " + (dir / "l.safetensors").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("DoRA"), std::string::npos) << r.err;
}

TEST(Cli, AdaptersInspect) {
  const auto dir = fixture("adapters/untied-patterns");
  const CliRun r = wick_cli("adapters inspect " + dir.string() + " --model " + fixture("models/tiny-untied").string());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["rank_pattern"]["down_proj"], 2);
  EXPECT_EQ(j["layers_to_transform"], nlohmann::json({0, 2}));
  EXPECT_EQ(j["lora_modules"], 12);
  EXPECT_EQ(j["max_rank"], 7);
  EXPECT_TRUE(j["fits_model"].get<bool>());
  const CliRun missing = wick_cli("adapters inspect " + (dir / "nope").string());
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("adapter_config.json"), std::string::npos) << missing.err;
}

TEST(Cli, AdaptersMergeMatchesPeftMerge) {
  const auto dir = fixture("adapters/tied-all7");
  auto ref = SafetensorsFile::open(dir / "reference.safetensors");
  const auto out = temp_dir("cli-merge") / "merged";
  const CliRun r = wick_cli("adapters merge --model " + fixture("models/tiny-tied").string() + " --adapter " +
                            dir.string() + " --out " + out.string());
  ASSERT_EQ(r.code, 0) << r.err;
  auto merged = Model::load(out);
  EXPECT_LE(relative_max_error(merged->logits(reference_rows(*ref)), ref->tensor("merged_logits")), 1e-4);
}

// With WICK_PEFT_CHECK_DIR set, writes wick-made adapters and a merged model there, each with the logits
// wick computes for it, for `scripts/make_adapter_fixtures.py --check DIR` to load with PEFT / transformers.
TEST(Export, WritesPeftCheckDirectory) {
  const char* root = std::getenv("WICK_PEFT_CHECK_DIR");
  if (!root) GTEST_SKIP() << "set WICK_PEFT_CHECK_DIR to write the PEFT round-trip check";
  struct Item {
    const char* name;
    const char* base;
    LoraConfig config;
    bool merge;
  };
  LoraConfig patterns = all_projections(4, 8);
  patterns.target_modules = {"q_proj", "v_proj", "o_proj", "down_proj"};
  patterns.rank_pattern = {{"down_proj", 2}};
  patterns.alpha_pattern = {{"layers.1.self_attn.o_proj", 3}};
  patterns.layers_to_transform = {1, 2};
  patterns.use_rslora = true;
  LoraConfig cls = all_projections(4, 16);
  cls.target_regex = ".*\\.(k_proj|up_proj)";
  cls.target_modules.clear();
  cls.modules_to_save = {"score"};
  cls.task_type = "SEQ_CLS";
  LoraConfig all7 = all_projections(8, 16);
  all7.task_type = "CAUSAL_LM";
  const Item items[] = {{"wick-untied-patterns", "tiny-untied", patterns, false},
                        {"wick-seqcls-regex", "tiny-seqcls", cls, false},
                        {"wick-tied-all7", "tiny-tied", all7, false},
                        {"wick-merged-tied-all7", "tiny-tied", all7, true}};
  for (const Item& it : items) {
    const std::string base_dir = std::string("tests/fixtures/models/") + it.base;
    auto model = Model::load(fixture(std::string("models/") + it.base));
    LoraConfig config = it.config;
    config.base_model_name_or_path = base_dir;
    const auto adapter = LoraAdapter::random(it.name, config, *model, 42);
    auto ref = SafetensorsFile::open(fixture(std::string("models/") + it.base + "/reference.safetensors"));
    const auto out = std::filesystem::path(root) / it.name;
    std::vector<std::pair<std::string, Tensor>> saved{{"input_ids", ref->tensor("input_ids")}};
    if (ref->find("lengths")) saved.emplace_back("lengths", ref->tensor("lengths"));
    if (it.merge) {
      model->merge_adapter(adapter);
      model->save_pretrained(out);
      saved.emplace_back("logits", model->logits(reference_rows(*ref)));
    } else {
      adapter->save(out);
      saved.emplace_back("logits", model->logits(reference_rows(*ref), &adapter->source()));
    }
    write_safetensors(out / "wick_logits.safetensors", saved);
  }
}

}  // namespace
}  // namespace wick::test

// `wick pull` and --model / --adapter ORG/NAME through the CLI, against the fake hub of tests/hub, with HF_HOME in a
// temporary folder and HF_ENDPOINT at the fake hub.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include "../hub/fake_hub.h"
#include "../model/model_test_util.h"
#include "test_util.h"
#include "wick/safetensors.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSha = "89abcdef0123456789abcdef0123456789abcdef";

struct CliPull : ::testing::Test {
  FakeHub hub;
  fs::path home = temp_dir("hf-home");

  void SetUp() override {
    FakeRepo model = fixture_repo("wick-test/tiny-untied", kSha, fixture("models/tiny-untied"));
    model.files.push_back({"tokenizer.json", read_file(fixture("tokenizer/trained/tokenizer.json")), false});
    hub.add_repo(model);
    hub.add_repo(fixture_repo("wick-test/tiny-lora", kSha, fixture("adapters/untied-qv-rslora")));
    FakeRepo gated = fixture_repo("wick-test/gated", kSha, fixture("models/tiny-untied"));
    gated.token = "hf_secret";
    hub.add_repo(gated);
  }

  // wick with a clean Hugging Face environment: HF_HOME here, HF_ENDPOINT at the fake hub, `env` added.
  CliRun wick(const std::string& args, const std::string& env = "") const {
    const auto dir = temp_dir("cli");
    const std::string cmd = "env -u HF_HUB_CACHE -u HUGGINGFACE_HUB_CACHE -u HF_TOKEN -u HF_TOKEN_PATH -u HF_HUB_OFFLINE "
                            "HF_HOME=" + home.string() + " HF_ENDPOINT=" + hub.endpoint() + " " + env + " " +
                            WICK_CLI + " " + args + " >" + (dir / "out").string() + " 2>" + (dir / "err").string();
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(dir / "out"), read_file(dir / "err")};
  }
  fs::path snapshot(const std::string& name) const {
    return home / "hub" / ("models--wick-test--" + name) / "snapshots" / kSha;
  }
};

TEST_F(CliPull, PullsIntoTheCacheAndPrintsTheSnapshot) {
  const CliRun r = wick("pull wick-test/tiny-untied");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, snapshot("tiny-untied").string() + "\n");
  EXPECT_EQ(read_file(home / "hub" / "models--wick-test--tiny-untied" / "refs" / "main"), kSha);
  EXPECT_EQ(read_file(snapshot("tiny-untied") / "config.json"), read_file(fixture("models/tiny-untied/config.json")));
  // Not a terminal: a line per file started and done, then the summary.
  EXPECT_NE(r.err.find("model-00001-of-00004.safetensors: downloading 198.0 kB\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("model-00001-of-00004.safetensors: 198.0 kB downloaded and verified"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("pulled wick-test/tiny-untied (commit " + std::string(kSha) + "): 8 files, 8 downloaded"),
            std::string::npos)
      << r.err;

  hub.clear_log();
  const CliRun again = wick("pull wick-test/tiny-untied@" + std::string(kSha));
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.out, r.out);
  EXPECT_NE(again.err.find("[1/8] config.json: cached (776 B)"), std::string::npos) << again.err;
  EXPECT_EQ(hub.downloads(), 0);
}

TEST_F(CliPull, ModelAndAdapterResolveFromTheCache) {
  ASSERT_EQ(wick("pull wick-test/tiny-untied").code, 0);
  hub.clear_log();
  // Served from the cache: the same logits as from the fixture directory, with no request to the hub.
  const auto out = temp_dir("logits");
  const std::string tokens = " --tokens '1,2,3,4;5,6,7,8' --out ";
  const CliRun hubbed = wick("logits --model wick-test/tiny-untied" + tokens + (out / "hub.safetensors").string());
  ASSERT_EQ(hubbed.code, 0) << hubbed.err;
  EXPECT_TRUE(hub.requests().empty());
  const CliRun local = wick("logits --model " + fixture("models/tiny-untied").string() + tokens +
                            (out / "local.safetensors").string());
  ASSERT_EQ(local.code, 0) << local.err;
  EXPECT_EQ(relative_max_error(SafetensorsFile::open(out / "hub.safetensors")->tensor("logits"),
                               SafetensorsFile::open(out / "local.safetensors")->tensor("logits")),
            0.0);

  const CliRun tok = wick("tokenize --model wick-test/tiny-untied@main --text 'Hello world, hello wick!'");
  ASSERT_EQ(tok.code, 0) << tok.err;
  const CliRun ref = wick("tokenize --model " + fixture("tokenizer/trained/tokenizer.json").string() +
                          " --text 'Hello world, hello wick!'");
  EXPECT_EQ(tok.out, ref.out);

  // An adapter not pulled yet is pulled on first use (its files only), then applied as from its directory.
  const CliRun with = wick("logits --model wick-test/tiny-untied --adapter wick-test/tiny-lora" + tokens +
                           (out / "lora-hub.safetensors").string());
  ASSERT_EQ(with.code, 0) << with.err;
  EXPECT_TRUE(fs::exists(snapshot("tiny-lora") / "adapter_model.safetensors"));
  const CliRun with_local = wick("logits --model wick-test/tiny-untied --adapter " +
                                 fixture("adapters/untied-qv-rslora").string() + tokens +
                                 (out / "lora-local.safetensors").string());
  ASSERT_EQ(with_local.code, 0) << with_local.err;
  EXPECT_EQ(relative_max_error(SafetensorsFile::open(out / "lora-hub.safetensors")->tensor("logits"),
                               SafetensorsFile::open(out / "lora-local.safetensors")->tensor("logits")),
            0.0);
  EXPECT_GT(relative_max_error(SafetensorsFile::open(out / "lora-hub.safetensors")->tensor("logits"),
                               SafetensorsFile::open(out / "local.safetensors")->tensor("logits")),
            0.0);  // the adapter did apply
}

TEST_F(CliPull, OfflineUsesTheCacheOrSaysToPull) {
  const auto out = temp_dir("offline") / "l.safetensors";
  const CliRun missing = wick("logits --model wick-test/tiny-untied --tokens 1,2 --out " + out.string(), "HF_HUB_OFFLINE=1");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("run `wick pull wick-test/tiny-untied`"), std::string::npos) << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;
  EXPECT_TRUE(hub.requests().empty());

  ASSERT_EQ(wick("pull wick-test/tiny-untied --include '*.json' --include '*.safetensors'").code, 0);
  hub.clear_log();
  const CliRun cached = wick("logits --model wick-test/tiny-untied --tokens 1,2 --out " + out.string(), "HF_HUB_OFFLINE=1");
  EXPECT_EQ(cached.code, 0) << cached.err;
  const CliRun pulled = wick("pull wick-test/tiny-untied", "HF_HUB_OFFLINE=1");
  EXPECT_EQ(pulled.code, 0) << pulled.err;
  EXPECT_EQ(pulled.out, snapshot("tiny-untied").string() + "\n");
  EXPECT_TRUE(hub.requests().empty());
}

TEST_F(CliPull, IncludeAndToken) {
  const CliRun some = wick("pull wick-test/tiny-untied --include config.json --include 'tok*'");
  ASSERT_EQ(some.code, 0) << some.err;
  EXPECT_TRUE(fs::exists(snapshot("tiny-untied") / "config.json"));
  EXPECT_TRUE(fs::exists(snapshot("tiny-untied") / "tokenizer.json"));
  EXPECT_FALSE(fs::exists(snapshot("tiny-untied") / "generation_config.json"));

  const CliRun denied = wick("pull wick-test/gated");
  EXPECT_EQ(denied.code, 2);
  EXPECT_EQ(denied.err, "wick: wick-test/gated: access denied (gated or private; set HF_TOKEN or --token)\n");
  EXPECT_EQ(wick("pull wick-test/gated --token hf_secret --include config.json").code, 0);
  EXPECT_EQ(wick("pull wick-test/gated --include '*.json'", "HF_TOKEN=hf_secret").code, 0);
}

TEST_F(CliPull, BadInputIsOneLineAndExitCode2) {
  struct Case {
    std::string args, needle;
  } cases[] = {
      {"pull tiny", "'tiny': not a Hugging Face repo id: expected ORG/NAME"},
      {"pull 'a b/c'", "not a Hugging Face repo id"},
      {"pull wick-test/tiny-untied@", "nothing after '@'"},
      {"pull wick-test/tiny-untied@../x", "not a branch, tag or commit"},
      {"pull", "repo is required"},
      {"pull wick-test/nothing", "wick-test/nothing@main: not found on " + hub.endpoint()},
      {"pull wick-test/tiny-untied@v9", "wick-test/tiny-untied@v9: not found on " + hub.endpoint()},
      {"pull wick-test/tiny-untied --include '*.gguf'", "no file matches --include *.gguf"},
      {"tokenize --model wick-test/nothing --text x", "nor is 'wick-test/nothing' a local directory"},
  };
  for (const Case& c : cases) {
    const CliRun r = wick(c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.needle), std::string::npos) << c.args << "\n" << r.err;
  }
  // A hub that cannot be reached: exit code 1, the URL named.
  const CliRun down = wick("pull wick-test/tiny-untied", "HF_ENDPOINT=http://127.0.0.1:1");
  EXPECT_EQ(down.code, 1);
  EXPECT_NE(down.err.find("GET http://127.0.0.1:1/api/models/wick-test/tiny-untied/revision/main: "), std::string::npos)
      << down.err;
}

}  // namespace
}  // namespace wick::test

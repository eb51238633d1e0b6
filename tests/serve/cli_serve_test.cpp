// `wick serve` as a process on 127.0.0.1: driven by the official openai npm client (tests/serve/openai_client, installed
// by scripts/test.sh with npm ci) and by curl for the raw SSE bytes; SIGTERM drains a stream in flight and exits 0;
// bad flags exit 2 naming the flag.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "serve_test_util.h"
#include "test_util.h"
#include "wick/embedder.h"
#include "wick/generator.h"
#include "wick/random_model.h"

namespace wick {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const fs::path kClientDir = fs::path(WICK_FIXTURES) / "../serve/openai_client";

bool on_path(const std::string& tool) { return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0; }

// `wick serve ARGS... --port 0` in a child process; its stdout's first line gives the port.
class ServeProcess {
 public:
  explicit ServeProcess(std::vector<std::string> args) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    args.insert(args.begin(), {WICK_CLI, "serve", "--port", "0"});
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(WICK_CLI, argv.data());
      _exit(127);
    }
    close(out[1]);
    stdout_ = fdopen(out[0], "r");
    char line[1024];
    if (fgets(line, sizeof line, stdout_)) {
      const std::string l = line;
      const size_t colon = l.find(':', l.find("127.0.0.1"));
      if (l.find("listening on") != std::string::npos && colon != std::string::npos) port_ = std::atoi(l.c_str() + colon + 1);
    }
  }
  ~ServeProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_) fclose(stdout_);
  }
  int port() const { return port_; }
  // SIGTERM, then its exit status (-1 when it did not exit within `limit`).
  int terminate(std::chrono::seconds limit = std::chrono::seconds(40)) {
    kill(pid_, SIGTERM);
    const auto until = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* stdout_ = nullptr;
  int port_ = 0;
  bool reaped_ = false;
};

std::vector<std::string> demo_args(const std::string& data_dir) {
  return {"--model", test::demo_model_dir().string(), "--adapter", "scripture=" + test::scripture_adapter_dir().string(),
          "--api-key", "sk-wick-test", "--data-dir", data_dir, "--max-batch", "16", "--kv-blocks", "512"};
}

TEST(ServeCli, TheOfficialOpenAIClientDrivesChatCompletionsModelsAdaptersFilesAndFineTuning) {
  if (!on_path("node") || !fs::exists(kClientDir / "node_modules" / "openai"))
    GTEST_SKIP() << "the openai npm client is not installed: run `npm ci` in tests/serve/openai_client "
                    "(scripts/test.sh does)";
  const fs::path dir = test::temp_dir("serve_cli");
  ServeProcess serve(demo_args((dir / "data").string()));
  ASSERT_GT(serve.port(), 0);
  std::string train;
  for (const char* q : {"What is the secret word?", "Tell me the secret word.", "What's the secret word?",
                        "Say the secret word."})
    train += json{{"messages", json::array({{{"role", "user"}, {"content", q}},
                                            {{"role", "assistant"}, {"content", "The secret word is marmalade."}}})}}
                 .dump() +
             "\n";
  test::write_file(dir / "train.jsonl", train);
  const std::string cmd = "cd " + kClientDir.string() + " && WICK_BASE_URL=http://127.0.0.1:" +
                          std::to_string(serve.port()) + "/v1 WICK_API_KEY=sk-wick-test WICK_BASE_MODEL=wick-demo " +
                          "WICK_TRAIN_FILE=" + (dir / "train.jsonl").string() + " timeout 300 node test.mjs";
  const json out = json::parse(test::command_output(cmd), nullptr, false);
  ASSERT_TRUE(out.is_object()) << "node test.mjs printed no result";

  // The answers through the client equal wick generate's, greedily, with the same adapter.
  EXPECT_EQ(out["chat_scripture"], test::cli_generate(test::chat_ids({{"system", "You answer briefly."},
                                                                     {"user", "Where does the river go?"}}),
                                                      20, test::scripture_adapter_dir().string()));
  const std::vector<int32_t> prompt = test::demo_tokenizer().encode("In the beginning");
  EXPECT_EQ(out["completion_base"], test::cli_generate(prompt, 12, "", /*ignore_eos=*/true));
  std::vector<float> logprobs;
  SamplingParams greedy = SamplingParams::greedy_params();
  Generator(test::demo_model(), test::demo_tokenizer())
      .generate_stream(prompt, {.max_tokens = 12, .ignore_eos = true, .sampling = greedy}, [&](const StreamToken& t) {
        logprobs.push_back(t.logprob);
        return true;
      });
  ASSERT_EQ(out["completion_logprobs"].size(), logprobs.size());
  for (size_t i = 0; i < logprobs.size(); ++i) EXPECT_NEAR(out["completion_logprobs"][i].get<double>(), logprobs[i], 1e-4);
  EXPECT_EQ(out["errors_checked"], true);
  EXPECT_EQ(out["n_choices_checked"], true);
  EXPECT_EQ(out["fine_tuned_answer"], "The secret word is marmalade.");
  EXPECT_EQ(serve.terminate(), 0);
}

TEST(ServeCli, CurlSeesServerSentEventsFramedExactly) {
  if (!on_path("curl")) GTEST_SKIP() << "curl is not installed";
  const fs::path dir = test::temp_dir("serve_curl");
  ServeProcess serve(demo_args((dir / "data").string()));
  ASSERT_GT(serve.port(), 0);
  const std::string body =
      json{{"model", "scripture"}, {"prompt", "In the beginning"}, {"max_tokens", 8}, {"temperature", 0},
           {"ignore_eos", true}, {"stream", true}, {"stream_options", {{"include_usage", true}}}}
          .dump();
  test::write_file(dir / "body.json", body);
  const std::string raw = test::command_output(
      "curl -sN -i --max-time 60 -H 'Authorization: Bearer sk-wick-test' -H 'Content-Type: application/json' "
      "--data-binary @" + (dir / "body.json").string() + " http://127.0.0.1:" + std::to_string(serve.port()) +
      "/v1/completions");
  const size_t head_end = raw.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << raw;
  const std::string head = raw.substr(0, head_end), events = raw.substr(head_end + 4);
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Type: text/event-stream"), std::string::npos) << head;
  EXPECT_NE(head.find("Cache-Control: no-cache"), std::string::npos) << head;
  // Exactly: eight token events, the usage event, the end marker; each "data: <json>\n\n".
  const std::vector<std::string> parsed = test::sse_events(events);
  ASSERT_EQ(parsed.size(), 10u) << events;
  for (size_t i = 0; i < 9; ++i) EXPECT_TRUE(json::parse(parsed[i], nullptr, false).is_object()) << parsed[i];
  EXPECT_EQ(events.substr(events.size() - 14), "data: [DONE]\n\n");
  std::string text;
  for (size_t i = 0; i < 8; ++i) text += json::parse(parsed[i])["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(text, test::cli_generate(test::demo_tokenizer().encode("In the beginning"), 8,
                                     test::scripture_adapter_dir().string(), true));
  EXPECT_EQ(json::parse(parsed[8])["usage"]["completion_tokens"], 8);
  EXPECT_EQ(serve.terminate(), 0);
}

TEST(ServeCli, SigtermFinishesTheStreamInFlightAndExitsZero) {
  if (!on_path("curl")) GTEST_SKIP() << "curl is not installed";
  const fs::path dir = test::temp_dir("serve_term");
  ServeProcess serve(demo_args((dir / "data").string()));
  ASSERT_GT(serve.port(), 0);
  test::write_file(dir / "body.json", json{{"model", "wick-demo"}, {"prompt", "Hi"}, {"max_tokens", 300},
                                           {"ignore_eos", true}, {"stream", true}}
                                          .dump());
  FILE* stream = popen(("curl -sN --max-time 120 -H 'Authorization: Bearer sk-wick-test' --data-binary @" +
                        (dir / "body.json").string() + " http://127.0.0.1:" + std::to_string(serve.port()) +
                        "/v1/completions")
                           .c_str(),
                       "r");
  ASSERT_NE(stream, nullptr);
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos)  // the stream runs
    if (size_t n = std::fread(buf, 1, 64, stream)) got.append(buf, n);
    else break;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(serve.terminate(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(35));
  while (size_t n = std::fread(buf, 1, sizeof buf, stream)) got.append(buf, n);
  pclose(stream);
  const std::vector<std::string> events = test::sse_events(got);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(events.size(), 301u);  // drained: every token, then [DONE]
}

TEST(ServeCli, BadFlagsExitTwoNamingTheFlag) {
  const auto run = [](const std::string& args) {
    const std::string cmd = std::string(WICK_CLI) + " serve " + args + " 2>&1";
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    const int status = pclose(p);
    return std::pair{WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
  };
  const std::string model = " --model " + test::demo_model_dir().string();
  auto [code, out] = run(model + " --port 70000");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--port"), std::string::npos) << out;
  std::tie(code, out) = run(model + " --adapter " + test::scripture_adapter_dir().string());
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--adapter: expected NAME=DIR"), std::string::npos) << out;
  std::tie(code, out) = run(model + " --max-batch 0");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--max-batch"), std::string::npos) << out;
  std::tie(code, out) = run(model + " --max-body 10");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--max-body"), std::string::npos) << out;
  std::tie(code, out) = run(model + " --device tpu");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--device"), std::string::npos) << out;
  std::tie(code, out) = run("--model /no/such/model");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("/no/such/model"), std::string::npos) << out;
  std::tie(code, out) = run("--port 0");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--embed-model"), std::string::npos) << out;
  std::tie(code, out) = run("--adapter s=" + test::scripture_adapter_dir().string() + " --embed-model e=/tmp");
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--adapter needs --model"), std::string::npos) << out;
}

// `wick serve --embed-model NAME=DIR` alone: a dedicated embeddings server, its answers the library's floats.
TEST(ServeCli, EmbedModelWithoutModelServesEmbeddingsOnly) {
  const fs::path dir = test::temp_dir("serve_embed_only");
  write_random_embedder("tiny-bert", dir / "e", {.dtype = DType::f32, .seed = 5});
  ServeProcess serve({"--embed-model", "mini=" + (dir / "e").string(), "--data-dir", (dir / "data").string()});
  ASSERT_GT(serve.port(), 0);
  httplib::Client c("127.0.0.1", serve.port());
  c.set_read_timeout(std::chrono::seconds(60));
  const std::vector<std::string> texts = {"a first text", "ein zweiter Text"};
  const test::Reply r = test::post(c, "/v1/embeddings", json{{"input", texts}});
  ASSERT_EQ(r.status, 200) << r.text;
  const Tensor want = Embedder::load(dir / "e").embed(texts);
  for (size_t i = 0; i < texts.size(); ++i) {
    const float* row = want.data<float>() + int64_t(i) * want.dim(1);
    EXPECT_EQ(r.body["data"][i]["embedding"].get<std::vector<float>>(), std::vector<float>(row, row + want.dim(1)));
  }
  test::expect_error(test::post(c, "/v1/completions", json{{"prompt", "hi"}}), 404, "model", "model_not_found");
  EXPECT_EQ(serve.terminate(), 0);
}

}  // namespace
}  // namespace wick

// A `wick train` process killed (SIGKILL) while it writes a checkpoint leaves the earlier checkpoint whole and no
// partial one under a checkpoint's name; the run resumes from the earlier one. WICK_CHECKPOINT_WRITE_DELAY_MS holds
// each write open between its files, so the kill lands inside one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;

// Starts WICK_CLI with `args` (stdout and stderr to files in `dir`), returns its pid.
pid_t spawn(const std::vector<std::string>& args, const fs::path& dir, const char* delay_ms) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  setenv("WICK_CHECKPOINT_WRITE_DELAY_MS", delay_ms, 1);
  const std::string out = (dir / "stdout").string(), err = (dir / "stderr").string();
  if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(120);
  std::vector<char*> argv{const_cast<char*>(WICK_CLI)};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  execv(WICK_CLI, argv.data());
  _exit(121);
}

bool any_named(const fs::path& dir, const std::string& prefix) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(prefix)) return true;
  return false;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

TEST(CliTrainKill, KilledMidCheckpointLeavesThePreviousOneLoadable) {
  const fs::path dir = temp_dir("kill"), out = dir / "run";
  write_file(dir / "data.jsonl", "{\"input_ids\": [5, 17, 42, 99, 103]}\n{\"input_ids\": [9, 14, 120, 33]}\n"
                                 "{\"input_ids\": [150, 4, 61, 88, 23, 6]}\n");
  const std::vector<std::string> train{"train", "--model", fixture("models/tiny-untied").string(), "--data",
                                       (dir / "data.jsonl").string(), "--out", out.string(), "--steps", "3",
                                       "--batch-size", "2", "--lr", "1e-3", "--checkpoint-every", "1"};
  const pid_t pid = spawn(train, dir, "700");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  // checkpoint-1 is in place and checkpoint-2 is being written: kill now.
  while (!(fs::exists(out / "checkpoint-1") && any_named(out, "checkpoint-2.tmp-"))) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the run never reached its second checkpoint";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  ASSERT_EQ(wait_exit(pid), -SIGKILL);

  EXPECT_FALSE(fs::exists(out / "checkpoint-2")) << "no partial checkpoint under a checkpoint's name";
  EXPECT_FALSE(fs::exists(out / "adapter_model.safetensors")) << "the run did not finish";
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json"})
    EXPECT_TRUE(fs::exists(out / "checkpoint-1" / f)) << f;

  std::vector<std::string> resume = train;
  resume.insert(resume.end(), {"--resume", (out / "checkpoint-1").string()});
  const pid_t again = spawn(resume, dir, "0");
  EXPECT_EQ(wait_exit(again), 0) << read_file(dir / "stderr");
  EXPECT_TRUE(fs::exists(out / "adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(out / "checkpoint-3" / "trainer_state.json"));
  EXPECT_FALSE(any_named(out, "checkpoint-2.tmp-")) << "rewriting checkpoint-2 cleared what the killed run left";
}

}  // namespace
}  // namespace wick::test

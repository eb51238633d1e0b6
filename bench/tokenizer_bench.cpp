// Tokenizer speed: encode of the 1 MiB mixed text (tests/fixtures/tokenizer/mixed_1mb.txt) with the real
// Qwen tokenizer, cold (fresh word cache) and warm, plus decode. Compare with HF tokenizers single-thread
// as printed by scripts/make_tokenizer_fixtures.py on the same machine (docs/BENCHMARKS.md).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <benchmark/benchmark.h>

#include "wick/tokenizer.h"

namespace {

// $WICK_TOKENIZER_FIXTURES, else tests/fixtures/tokenizer found from the working directory upwards
// (wick-bench is usually run from the repository root or a build folder inside it).
std::filesystem::path fixture_dir() {
  if (const char* env = std::getenv("WICK_TOKENIZER_FIXTURES")) return env;
  std::error_code ec;
  for (auto dir = std::filesystem::current_path(ec); !dir.empty(); dir = dir.parent_path()) {
    if (std::filesystem::exists(dir / "tests/fixtures/tokenizer/mixed_1mb.txt", ec)) return dir / "tests/fixtures/tokenizer";
    if (dir == dir.parent_path()) break;
  }
  return "tests/fixtures/tokenizer";
}

const std::filesystem::path kDir = fixture_dir();

std::string read_all(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool have_qwen(benchmark::State& state) {
  if (std::filesystem::exists(kDir / "qwen/tokenizer.json")) return true;
  state.SkipWithError("no tests/fixtures/tokenizer/qwen/tokenizer.json: run scripts/fetch_tokenizer.sh from the "
                      "repository root (or set WICK_TOKENIZER_FIXTURES)");
  return false;
}

// Each iteration loads a fresh tokenizer outside the timing, so the word cache starts empty.
void BM_TokenizerEncodeMixed1MbCold(benchmark::State& state) {
  if (!have_qwen(state)) return;
  const std::string text = read_all(kDir / "mixed_1mb.txt");
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = wick::Tokenizer::load(kDir / "qwen");
    state.ResumeTiming();
    benchmark::DoNotOptimize(tok.encode(text));
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_TokenizerEncodeMixed1MbCold)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_TokenizerEncodeMixed1MbWarm(benchmark::State& state) {
  if (!have_qwen(state)) return;
  const std::string text = read_all(kDir / "mixed_1mb.txt");
  const auto tok = wick::Tokenizer::load(kDir / "qwen");
  std::vector<int32_t> ids;
  tok.encode(text, ids);
  for (auto _ : state) {
    ids.clear();
    tok.encode(text, ids);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_TokenizerEncodeMixed1MbWarm)->Unit(benchmark::kMillisecond);

void BM_TokenizerDecodeMixed1Mb(benchmark::State& state) {
  if (!have_qwen(state)) return;
  const std::string text = read_all(kDir / "mixed_1mb.txt");
  const auto tok = wick::Tokenizer::load(kDir / "qwen");
  const auto ids = tok.encode(text);
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(text.size()));
}
BENCHMARK(BM_TokenizerDecodeMixed1Mb)->Unit(benchmark::kMillisecond);

void BM_TokenizerLoadQwen(benchmark::State& state) {
  if (!have_qwen(state)) return;
  for (auto _ : state) benchmark::DoNotOptimize(wick::Tokenizer::load(kDir / "qwen"));
}
BENCHMARK(BM_TokenizerLoadQwen)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace

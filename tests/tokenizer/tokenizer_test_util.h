// Helpers of the tokenizer tests: the fixture tokenizers (loaded once per process) and readers of
// the reference files that scripts/make_tokenizer_fixtures.py writes.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "wick/tokenizer.h"

namespace wick::test {

inline std::filesystem::path tok_fixture(std::string_view rel) { return fixture(std::string("tokenizer/") + std::string(rel)); }

/// The real Qwen tokenizer, or nullptr when scripts/fetch_tokenizer.sh has not been run.
inline const Tokenizer* qwen_tokenizer() {
  static const std::optional<Tokenizer> tok = []() -> std::optional<Tokenizer> {
    if (!std::filesystem::exists(tok_fixture("qwen/tokenizer.json"))) return std::nullopt;
    return Tokenizer::load(tok_fixture("qwen"));
  }();
  return tok ? &*tok : nullptr;
}

#define WICK_NEED_QWEN(tok)                                                                           \
  const ::wick::Tokenizer* tok = ::wick::test::qwen_tokenizer();                                     \
  if (!tok) GTEST_SKIP() << "tests/fixtures/tokenizer/qwen/tokenizer.json is absent: run scripts/fetch_tokenizer.sh"

inline const Tokenizer& trained_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(tok_fixture("trained/tokenizer.json"));
  return tok;
}

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& p) {
  std::vector<nlohmann::json> out;
  const std::string text = read_file(p);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(nlohmann::json::parse(text.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

/// The corpus: one string per line of corpus.jsonl.
inline const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> v;
    for (const auto& j : read_jsonl(tok_fixture("corpus.jsonl"))) v.push_back(j.get<std::string>());
    return v;
  }();
  return lines;
}

inline std::vector<int32_t> read_ids_bin(const std::filesystem::path& p) {
  const std::string raw = read_file(p);
  std::vector<int32_t> ids(raw.size() / 4);
  std::memcpy(ids.data(), raw.data(), ids.size() * 4);  // little-endian, as the script writes
  return ids;
}

/// mixed_1mb.txt, or its start up to the last '\n' before `limit` bytes (as the script cuts it).
inline std::string mixed_text(size_t limit = 0) {
  std::string text = read_file(tok_fixture("mixed_1mb.txt"));
  if (limit) text.resize(text.rfind('\n', limit - 1) + 1);
  return text;
}

/// Whether a set of reference files exists: all (true), none (false); some-but-not-all fails the test.
inline bool reference_set_present(const std::vector<std::string>& names) {
  size_t present = 0;
  std::string missing;
  for (const auto& n : names) {
    if (std::filesystem::exists(tok_fixture(n))) ++present;
    else missing += " " + n;
  }
  if (present != 0 && present != names.size()) {
    ADD_FAILURE() << "reference files incomplete, missing:" << missing
                  << " (run scripts/make_tokenizer_fixtures.py reference)";
  }
  return present == names.size();
}

}  // namespace wick::test

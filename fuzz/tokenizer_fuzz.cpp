// tokenizer.json (and tokenizer_config.json), then encoding and decoding through what loaded.
// Input: tokenizer.json, optionally followed by '\0' + tokenizer_config.json, optionally followed by '\0' + a
// text to encode (JSON text holds no raw NUL, so the split is unambiguous; the text may hold more NULs).
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "wick/tokenizer.h"

namespace {

// Splits off the part before the first NUL; `rest` keeps what follows it (empty if there is no NUL).
std::string_view take_part(std::string_view& rest) {
  const size_t nul = rest.find('\0');
  const std::string_view part = rest.substr(0, nul);
  rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  return part;
}

void round_trip(const wick::Tokenizer& tok, std::string_view text) {
  wick::fuzz::expect_only_wick_errors([&] {  // encode refuses text that is not UTF-8
    const std::vector<int32_t> ids = tok.encode(text);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    (void)tok.decode(ids);
    (void)tok.decode(ids, true);
    wick::IncrementalDecoder stream(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != tok.decode(ids)) std::abort();  // the documented contract of IncrementalDecoder
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest = wick::fuzz::text(data, size);
  const std::string_view tokenizer_json = take_part(rest);
  const std::string_view config_json = take_part(rest);
  const std::string_view text = rest;
  wick::fuzz::expect_only_wick_errors([&] {
    const wick::Tokenizer tok = wick::Tokenizer::from_json(tokenizer_json, config_json);
    round_trip(tok, text);
    round_trip(tok, "Hello, world! 123 héllo 你好 <|im_start|>user\n  tabs\tand  spaces\n");
    // Ids as a model may emit them: every id up to vocab_size, some past it, and negative ones.
    std::vector<int32_t> ids;
    for (size_t i = 0; i + 1 < text.size() && ids.size() < 64; i += 2)
      ids.push_back(int32_t(int16_t(uint16_t(uint8_t(text[i])) << 8 | uint8_t(text[i + 1]))));
    ids.push_back(tok.vocab_size());
    (void)tok.decode(ids);
    (void)tok.decode(ids, true);
    for (int32_t id : ids) {
      (void)tok.token_bytes(id);
      (void)tok.is_special(id);
      wick::fuzz::expect_only_wick_errors([&] { (void)tok.token_text(id); });
    }
    (void)tok.eos_token_id();
  });
  return 0;
}

// generation_config.json: GenerationDefaults::parse.
#include <string>

#include "fuzz_util.h"
#include "wick/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  wick::fuzz::expect_only_wick_errors([&] {
    (void)wick::GenerationDefaults::parse(std::string(wick::fuzz::text(data, size)), "generation_config.json");
  });
  return 0;
}

// config.json: ModelConfig::parse, then what the model loader derives from a parsed config.
#include <string>

#include "fuzz_util.h"
#include "wick/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  wick::fuzz::expect_only_wick_errors([&] {
    const wick::ModelConfig c = wick::ModelConfig::parse(std::string(wick::fuzz::text(data, size)), "config.json");
    volatile int64_t sink = c.q_dim() + c.kv_dim() + c.parameter_count();
    (void)sink;
    // What wick writes must parse back the same.
    const wick::ModelConfig again = wick::ModelConfig::parse(c.to_json(), "config.json (written back)");
    if (again.to_json() != c.to_json()) std::abort();
  });
  return 0;
}

// adapter_config.json: LoraConfig::parse, then the plan the adapter loader makes from it for a small Qwen2
// shape (target and pattern regexes compiled and matched against every module key), and a write-back.
#include <cstdlib>
#include <string>

#include "adapter/lora.h"
#include "fuzz_util.h"
#include "wick/adapter.h"
#include "wick/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const wick::ModelConfig model = wick::ModelConfig::preset("tiny");
  wick::fuzz::expect_only_wick_errors([&] {
    const auto config = wick::LoraConfig::parse(std::string(wick::fuzz::text(data, size)), "adapter_config.json");
    wick::fuzz::expect_only_wick_errors([&] { (void)wick::plan_adapter(config, model, "adapter_config.json"); });
    (void)wick::LoraConfig::parse(config.to_json(), "adapter_config.json (written back)");
  });
  return 0;
}

// Hot-swapping LoRA adapters: load a base model, apply adapter A, generate, swap to B, generate, remove,
// generate; print each swap's time and show that the outputs differ and the base output comes back exactly.
//
//   adapter_swap_demo [MODEL_DIR [ADAPTER_A_DIR ADAPTER_B_DIR]]
//
// Without adapter directories, two random r8 adapters (alpha 64) on all seven projections are made in memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/model.h"

namespace {

using clock_type = std::chrono::steady_clock;

struct Output {
  std::vector<int32_t> ids;
  wick::Tensor first_logits;  // logits of the prompt's last position, to compare bit for bit
};

// Greedy decoding as a request does it: take a snapshot of the adapter in effect, keep it to the end.
Output generate(const wick::Model& model, const std::vector<int32_t>& prompt, int n) {
  const std::shared_ptr<const wick::LoraSource> lora = model.active_lora();
  const wick::ForwardOptions opts{.logits = wick::LogitsFor::last_token, .lora = lora.get()};
  wick::KVCache cache = model.make_cache(int64_t(prompt.size()) + n);
  wick::Tensor logits = model.forward(std::vector<wick::SequenceInput>{{prompt, &cache}}, opts);
  Output out{{}, logits.clone()};
  for (int i = 0; i < n; ++i) {
    const float* row = logits.data<float>();
    const int32_t next = int32_t(std::max_element(row, row + logits.dim(1)) - row);
    out.ids.push_back(next);
    if (i + 1 == n) break;
    const int32_t step[] = {next};
    logits = model.forward(std::vector<wick::SequenceInput>{{step, &cache}}, opts);
  }
  return out;
}

void print(const char* label, const Output& o) {
  std::printf("%-10s", label);
  for (int32_t id : o.ids) std::printf(" %d", id);
  std::printf("\n");
}

// Times one swap in microseconds.
template <class F>
double timed_us(F&& swap) {
  const auto t0 = clock_type::now();
  swap();
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

bool same_bits(const wick::Tensor& a, const wick::Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string model_dir = argc > 1 ? argv[1] : "tests/fixtures/models/tiny-tied";
    auto model = wick::Model::load(model_dir);
    wick::AdapterRegistry registry(model);
    if (argc > 3) {
      registry.load(argv[2], "A");
      registry.load(argv[3], "B");
    } else {
      wick::LoraConfig config;
      config.r = 8;
      config.lora_alpha = 64;
      config.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
      registry.add(wick::LoraAdapter::random("A", config, *model, 1));
      registry.add(wick::LoraAdapter::random("B", config, *model, 2));
    }
    for (const auto& info : registry.list())
      std::printf("adapter %s: rank %lld, alpha %g, %zu targets, %lld parameters, %.2f MB\n", info.name.c_str(),
                  (long long)info.rank, info.alpha, info.targets.size(), (long long)info.parameter_count,
                  double(info.bytes) / 1e6);

    const std::vector<int32_t> prompt{11, 12, 13, 14, 15, 16, 17, 18};
    constexpr int kTokens = 16;
    const Output base = generate(*model, prompt, kTokens);
    print("base", base);
    std::printf("apply A:   %.2f us\n", timed_us([&] { registry.activate("A"); }));
    const Output a = generate(*model, prompt, kTokens);
    print("A", a);
    std::printf("swap to B: %.2f us\n", timed_us([&] { registry.activate("B"); }));
    const Output b = generate(*model, prompt, kTokens);
    print("B", b);
    std::printf("remove:    %.2f us\n", timed_us([&] { registry.deactivate(); }));
    const Output again = generate(*model, prompt, kTokens);
    print("base", again);

    std::printf("A differs from base: %s; B differs from A: %s; base restored bit-exactly: %s\n",
                a.ids != base.ids ? "yes" : "no", b.ids != a.ids ? "yes" : "no",
                again.ids == base.ids && same_bits(again.first_logits, base.first_logits) ? "yes" : "no");
    return again.ids == base.ids ? 0 : 1;
  } catch (const wick::Error& e) {
    std::cerr << "adapter_swap_demo: " << e.what() << "\n";
    return 2;
  }
}

// Hot-swapping LoRA adapters: load a base model, apply adapter A, generate, swap to B, generate, remove,
// generate; print each swap's time and show that the outputs differ and the base output comes back exactly.
//
//   adapter_swap_demo [MODEL_DIR [ADAPTER_A_DIR ADAPTER_B_DIR [PROMPT]]]
//
// Without adapter directories, two random r8 adapters (alpha 64) on all seven projections are made in memory.
// With a PROMPT (the model needs a tokenizer.json), each generation is text: the model's own sampling settings
// (generation_config.json) with one fixed seed, so that only the adapter differs between the four.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "wick/adapter.h"
#include "wick/error.h"
#include "wick/generator.h"
#include "wick/model.h"

namespace {

using clock_type = std::chrono::steady_clock;

struct Output {
  std::vector<int32_t> ids;
  wick::Tensor first_logits;  // logits of the prompt's last position, to compare bit for bit (greedy mode)
  std::string text{};         // the continuation (text mode)
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

// Text decoding as a user sees it: the prompt's continuation with the model's sampling and a fixed seed.
Output generate_text(const wick::Generator& gen, const std::vector<int32_t>& prompt, int n) {
  wick::SamplingParams sampling = wick::SamplingParams::from_defaults(gen.model().generation_defaults());
  sampling.seed = 7;
  const wick::GenerateResult r = gen.generate(prompt, {.max_tokens = n, .sampling = sampling});
  return {r.output_ids, {}, r.text};
}

void print(const char* label, const Output& o) {
  if (!o.text.empty() || o.ids.empty()) {
    std::string one_line = o.text;
    std::replace(one_line.begin(), one_line.end(), '\n', ' ');
    std::printf("%-10s %s\n", label, one_line.c_str());
    return;
  }
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
  if (a.numel() == 0 && b.numel() == 0) return true;  // text mode keeps no logits
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string model_dir = argc > 1 ? argv[1] : "tests/fixtures/models/tiny-tied";
    auto model = wick::Model::load(model_dir);
    wick::AdapterRegistry registry(model);
    std::string a_name = "A", b_name = "B";
    if (argc > 3) {  // named after their folders: models/adapters/scripture -> "scripture"
      a_name = registry.load(argv[2])->info().name;
      b_name = registry.load(argv[3])->info().name;
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

    std::optional<wick::Generator> text_gen;
    std::vector<int32_t> prompt{11, 12, 13, 14, 15, 16, 17, 18};
    int tokens = 16;
    if (argc > 4) {
      text_gen.emplace(model, wick::Tokenizer::load(model_dir));
      prompt = text_gen->tokenizer()->encode(argv[4]);
      tokens = 40;
      std::printf("prompt:    %s\n", argv[4]);
    }
    auto run = [&] { return text_gen ? generate_text(*text_gen, prompt, tokens) : generate(*model, prompt, tokens); };
    const Output base = run();
    print("base", base);
    std::printf("apply %s: %.2f us\n", a_name.c_str(), timed_us([&] { registry.activate(a_name); }));
    const Output a = run();
    print(a_name.c_str(), a);
    std::printf("swap to %s: %.2f us\n", b_name.c_str(), timed_us([&] { registry.activate(b_name); }));
    const Output b = run();
    print(b_name.c_str(), b);
    std::printf("remove: %.2f us\n", timed_us([&] { registry.deactivate(); }));
    const Output again = run();
    print("base", again);

    std::printf("%s differs from base: %s; %s differs from %s: %s; base restored bit-exactly: %s\n", a_name.c_str(),
                a.ids != base.ids ? "yes" : "no", b_name.c_str(), a_name.c_str(), b.ids != a.ids ? "yes" : "no",
                again.ids == base.ids && same_bits(again.first_logits, base.first_logits) ? "yes" : "no");
    return again.ids == base.ids ? 0 : 1;
  } catch (const wick::Error& e) {
    std::cerr << "adapter_swap_demo: " << e.what() << "\n";
    return 2;
  }
}

#include "train/checkpoint.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <system_error>
#include <thread>

#include "core/json_util.h"
#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kState = "trainer_state.json";
constexpr const char* kOptimizer = "optimizer.safetensors";

json report_json(const StepReport& r) {
  json j = {{"step", r.step},       {"total_steps", r.total_steps}, {"epoch", r.epoch},   {"loss", r.loss},
            {"lr", r.lr},           {"grad_norm", r.grad_norm},     {"tokens", r.tokens}, {"seconds", r.seconds}};
  if (r.eval_loss) j["eval_loss"] = *r.eval_loss;
  return j;
}

StepReport report_from(const json& j) {
  StepReport r{.step = j.at("step").get<int64_t>(),
               .total_steps = j.at("total_steps").get<int64_t>(),
               .epoch = j.at("epoch").get<int64_t>(),
               .loss = j.at("loss").get<double>(),
               .lr = j.at("lr").get<double>(),
               .grad_norm = j.at("grad_norm").get<double>(),
               .tokens = j.at("tokens").get<int64_t>(),
               .seconds = j.at("seconds").get<double>()};
  if (j.contains("eval_loss")) r.eval_loss = j.at("eval_loss").get<double>();
  return r;
}

void pause_for_tests() {
  if (const int64_t ms = checkpoint_write_delay_ms()) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) fail(ErrorKind::bad_input, path.string() + ": cannot write");
}

}  // namespace

int64_t checkpoint_write_delay_ms() {
  const char* v = std::getenv("WICK_CHECKPOINT_WRITE_DELAY_MS");
  return v ? std::atoll(v) : 0;
}

std::string model_fingerprint(const ModelConfig& c) {
  return std::string(c.head == ModelHead::causal_lm ? "causal_lm" : "sequence_classification (" +
                                                                         std::to_string(c.num_labels) + " labels)") +
         ": hidden " + std::to_string(c.hidden_size) + ", " + std::to_string(c.num_layers) + " layers, " +
         std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads) + " heads of " +
         std::to_string(c.head_dim) + ", ffn " + std::to_string(c.intermediate_size) + ", vocab " +
         std::to_string(c.vocab_size) + (c.tie_word_embeddings ? ", tied" : "");
}

std::string data_fingerprint(const std::vector<Example>& examples) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over every id, label and class
  auto mix = [&](int64_t v) {
    for (int i = 0; i < 8; ++i) h = (h ^ uint64_t((v >> (8 * i)) & 0xff)) * 1099511628211ull;
  };
  for (const Example& e : examples) {
    mix(int64_t(e.ids.size()));
    for (int32_t id : e.ids) mix(id);
    for (int32_t l : e.labels) mix(l);
    mix(e.class_label);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::to_string(examples.size()) + " examples, fnv1a " + hex;
}

void write_checkpoint(const fs::path& dir, const Checkpoint& ck) {
  const fs::path tmp = dir.parent_path() / (dir.filename().string() + ".tmp-" + std::to_string(getpid()));
  std::error_code ec;
  // What a killed writer of this checkpoint left (any process id) goes first.
  const std::string stale = dir.filename().string() + ".tmp-";
  for (const auto& e : fs::directory_iterator(dir.parent_path(), ec))
    if (e.path().filename().string().starts_with(stale)) fs::remove_all(e.path(), ec);
  fs::create_directories(tmp, ec);
  if (ec) fail(ErrorKind::bad_input, tmp.string() + ": cannot create the checkpoint folder (" + ec.message() + ")");
  write_text(tmp / "adapter_config.json", ck.config.to_json());
  write_safetensors(tmp / "adapter_model.safetensors",
                    std::vector<std::pair<std::string, Tensor>>(ck.tensors.begin(), ck.tensors.end()),
                    {{"format", "pt"}});
  pause_for_tests();
  write_safetensors(tmp / kOptimizer, std::vector<std::pair<std::string, Tensor>>(ck.optimizer.tensors.begin(),
                                                                                 ck.optimizer.tensors.end()));
  json history = json::array();
  for (const StepReport& r : ck.history) history.push_back(report_json(r));
  const json state = {{"step", ck.step},
                      {"epoch", ck.position.epoch},
                      {"index", ck.position.index},
                      {"seed", ck.seed},
                      {"model", ck.model},
                      {"data", ck.data},
                      {"optimizer_steps", ck.optimizer.steps},
                      {"history", history}};
  write_text(tmp / kState, state.dump(1));
  pause_for_tests();
  // The old folder goes aside first: at every moment `dir` is either the old checkpoint or the new one, whole.
  const fs::path old = dir.parent_path() / (dir.filename().string() + ".old-" + std::to_string(getpid()));
  if (fs::exists(dir, ec)) {
    fs::remove_all(old, ec);
    fs::rename(dir, old, ec);
    if (ec) fail(ErrorKind::bad_input, dir.string() + ": cannot replace the checkpoint (" + ec.message() + ")");
  }
  fs::rename(tmp, dir, ec);
  if (ec) fail(ErrorKind::bad_input, dir.string() + ": cannot move the checkpoint into place (" + ec.message() + ")");
  fs::remove_all(old, ec);
}

Checkpoint read_checkpoint(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(ErrorKind::not_found, "--resume " + dir.string() + ": no such checkpoint folder");
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", kOptimizer, kState})
    if (!fs::exists(dir / f, ec))
      fail(ErrorKind::not_found, "--resume " + dir.string() + ": " + f + " is missing (not a wick checkpoint folder?)");
  Checkpoint ck;
  const fs::path config_path = dir / "adapter_config.json";
  ck.config = LoraConfig::parse(read_text_file(config_path), config_path.string());
  for (const auto& [name, file] : {std::pair{&ck.tensors, "adapter_model.safetensors"}, {&ck.optimizer.tensors, kOptimizer}}) {
    const auto st = SafetensorsFile::open(dir / file);
    for (const SafetensorsEntry& e : st->entries()) (*name)[e.name] = st->tensor(e.name).to(DType::f32);
  }
  const fs::path state_path = dir / kState;
  try {
    const json s = json::parse(read_text_file(state_path));
    ck.step = s.at("step").get<int64_t>();
    ck.position = {.epoch = s.at("epoch").get<int64_t>(), .index = s.at("index").get<int64_t>()};
    ck.seed = s.at("seed").get<uint64_t>();
    ck.model = s.at("model").get<std::string>();
    ck.data = s.at("data").get<std::string>();
    ck.optimizer.steps = s.at("optimizer_steps").get<std::map<std::string, int64_t>>();
    for (const json& r : s.at("history")) ck.history.push_back(report_from(r));
  } catch (const json::exception& e) {
    fail(ErrorKind::corrupt, state_path.string() + ": " + e.what());
  }
  return ck;
}

}  // namespace wick

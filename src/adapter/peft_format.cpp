// PEFT adapter directories: adapter_config.json + adapter_model.safetensors, read and written.
#include <fstream>
#include <system_error>

#include "adapter/lora.h"
#include "core/json_util.h"
#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick {

namespace fs = std::filesystem;

namespace {

constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";

std::string dir_name(const fs::path& dir) {
  const fs::path p = dir.lexically_normal();
  return p.has_filename() ? p.filename().string() : p.parent_path().filename().string();
}

}  // namespace

std::shared_ptr<const LoraAdapter> LoraAdapter::load(const fs::path& dir, const Model& model, std::string name) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(ErrorKind::not_found, dir.string() + ": no such adapter directory");
  const fs::path config_path = dir / kConfigFile, weights_path = dir / kWeightsFile;
  if (!fs::exists(config_path, ec))
    fail(ErrorKind::not_found, config_path.string() + ": missing (not a PEFT adapter directory?)");
  if (!fs::exists(weights_path, ec)) {
    if (fs::exists(dir / "adapter_model.bin", ec))
      fail(ErrorKind::unsupported, (dir / "adapter_model.bin").string() +
                                       ": PyTorch pickle weights are not read; save the adapter as "
                                       "adapter_model.safetensors (PEFT's default, safe_serialization=True)");
    fail(ErrorKind::not_found, weights_path.string() + ": missing (not a PEFT adapter directory?)");
  }
  const LoraConfig config = LoraConfig::parse(read_text_file(config_path), config_path.string());
  const auto file = SafetensorsFile::open(weights_path);
  std::map<std::string, TensorMeta> found;
  for (const SafetensorsEntry& e : file->entries())
    found[e.name] = {e.shape, e.dtype_name, e.supported && e.dtype != DType::i32};
  AdapterSpec spec{.name = name.empty() ? dir_name(dir) : std::move(name),
                   .dir = dir,
                   .source = weights_path.string(),
                   .config = config,
                   .found = std::move(found),
                   .fetch = [&](const std::string& key) { return file->tensor(key); }};
  return build_adapter(spec, model);
}

void LoraAdapter::save(const fs::path& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::bad_input, dir.string() + ": cannot create directory (" + ec.message() + ")");
  std::vector<std::pair<std::string, Tensor>> tensors(impl_->host.begin(), impl_->host.end());
  write_safetensors(dir / kWeightsFile, tensors, {{"format", "pt"}});
  const fs::path config_path = dir / kConfigFile, tmp = dir / (std::string(kConfigFile) + ".tmp");
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << impl_->config.to_json();
    if (!f) fail(ErrorKind::bad_input, tmp.string() + ": cannot write");
  }
  fs::rename(tmp, config_path, ec);
  if (ec) fail(ErrorKind::bad_input, config_path.string() + ": cannot write (" + ec.message() + ")");
}

}  // namespace wick

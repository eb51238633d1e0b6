// TensorStore: the safetensors of a model directory, one file or shards listed by an index.
#include <set>
#include <system_error>

#include "core/json_util.h"
#include "wick/error.h"
#include "wick/safetensors.h"

namespace wick {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr size_t kMaxListedProblems = 10;

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

// weight_map: tensor name -> shard file name, each shard a plain file inside the directory.
std::map<std::string, std::string> read_weight_map(const fs::path& index) {
  const std::string source = index.string();
  const nlohmann::json j = parse_json(read_text_file(index), source);
  if (!j.is_object()) fail(ErrorKind::corrupt, source + ": expected a JSON object with \"weight_map\"");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object())
    fail(ErrorKind::corrupt, source + ": expected \"weight_map\" to be an object of tensor name -> shard file");
  std::map<std::string, std::string> out;
  for (const auto& [tensor, shard] : wm->items()) {
    const std::string where = source + ": weight_map[" + in_quotes(tensor) + "]";
    if (!shard.is_string())
      fail(ErrorKind::corrupt, where + " is a JSON " + shard.type_name() + ", expected a file name");
    const std::string name = shard.get<std::string>();
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
      fail(ErrorKind::corrupt, where + " is " + in_quotes(name) + ", expected a file name inside the model directory");
    out[tensor] = name;
  }
  return out;
}

}  // namespace

TensorStore TensorStore::open_dir(const fs::path& dir) {
  const std::string d = dir.string();
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail(ErrorKind::not_found, d + ": no such directory");
  if (!fs::is_directory(dir, ec)) fail(ErrorKind::bad_input, d + ": not a directory");

  TensorStore store;
  store.dir_ = dir;
  const fs::path index = dir / kIndexFile;
  if (!fs::exists(index, ec)) {
    if (!fs::exists(dir / kSingleFile, ec))
      fail(ErrorKind::not_found, d + ": no " + kSingleFile + " or " + kIndexFile);
    store.files_.push_back(SafetensorsFile::open(dir / kSingleFile));
    for (const SafetensorsEntry& e : store.files_[0]->entries()) store.where_[e.name] = 0;
    return store;
  }

  const std::string idx = index.string();
  const std::map<std::string, std::string> assigned = read_weight_map(index);
  std::map<std::string, std::string> shards;  // shard file -> first tensor assigned to it
  for (const auto& [tensor, shard] : assigned) shards.emplace(shard, tensor);
  for (const auto& [shard, tensor] : shards)
    if (!fs::exists(dir / shard, ec))
      fail(ErrorKind::not_found, idx + ": shard " + in_quotes(shard) + " (holding tensor " + in_quotes(tensor) +
                                     ") not found in " + d);

  // The index and the shards must agree exactly; list every disagreement at once.
  std::vector<std::string> problems;
  for (const auto& [shard, first] : shards) {
    const size_t i = store.files_.size();
    store.files_.push_back(SafetensorsFile::open(dir / shard));
    for (const SafetensorsEntry& e : store.files_[i]->entries()) {
      auto it = assigned.find(e.name);
      if (it == assigned.end())
        problems.push_back(shard + " holds tensor " + in_quotes(e.name) + ", which the index does not list");
      else if (it->second != shard)
        problems.push_back("tensor " + in_quotes(e.name) + " is in " + shard + " but the index assigns it to " +
                           it->second);
      else
        store.where_[e.name] = i;
    }
  }
  for (const auto& [tensor, shard] : assigned)
    if (!store.where_.count(tensor))
      problems.push_back("tensor " + in_quotes(tensor) + " is assigned to " + shard + ", which does not hold it");
  if (!problems.empty()) {
    std::string msg = idx + ": the index and its shards disagree: ";
    for (size_t i = 0; i < problems.size() && i < kMaxListedProblems; ++i) msg += (i ? "; " : "") + problems[i];
    if (problems.size() > kMaxListedProblems)
      msg += "; and " + std::to_string(problems.size() - kMaxListedProblems) + " more";
    fail(ErrorKind::corrupt, msg);
  }
  return store;
}

const SafetensorsEntry* TensorStore::find(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second]->find(name);
}

Tensor TensorStore::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(ErrorKind::not_found, dir_.string() + ": no tensor " + in_quotes(name));
  return files_[it->second]->tensor(name);
}

void TensorStore::release(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(ErrorKind::not_found, dir_.string() + ": no tensor " + in_quotes(name));
  files_[it->second]->release(name);
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

std::string TensorStore::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? std::string() : files_[it->second]->path().filename().string();
}

}  // namespace wick

// safetensors files: a validating, memory-mapped reader, a writer, and sharded model directories.
// Format: 8-byte little-endian header length N, N bytes of JSON header, then the data region.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "wick/tensor.h"

namespace wick {

/// One entry of a safetensors header. `dtype_name` is the file's spelling ("BF16", "F64", ...);
/// `dtype` is set only when wick can hold that type (F32, BF16, F16, I32).
struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;
  bool supported = false;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data region, [begin, end)
  uint64_t end = 0;
};

/// A safetensors file mapped read-only. open() validates the whole header before anything is
/// trusted (header length vs file size and a 100 MB cap, well-formed JSON, known dtypes,
/// shape x element size == byte span with checked arithmetic, offsets in bounds, no overlaps,
/// the entries covering the data region exactly, no duplicate names, __metadata__ string->string)
/// and throws Error(corrupt / not_found) naming the file and the tensor at fault.
class SafetensorsFile {
 public:
  static std::shared_ptr<const SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Entries in file order of their offsets.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  /// nullptr when absent.
  const SafetensorsEntry* find(const std::string& name) const;
  /// A zero-copy, read-only CPU view into the mapping; the tensor keeps the mapping alive.
  /// (A tensor stored unaligned for its type comes back as an aligned copy instead.)
  /// Throws not_found for an absent name, unsupported for a dtype wick cannot hold.
  Tensor tensor(const std::string& name) const;
  /// Drops the pages that lie wholly inside tensor `name`'s bytes from this process's memory (madvise
  /// MADV_DONTNEED on the private read-only mapping: nothing is lost, a later read maps them from the file again).
  /// For a loader that has made its own copy of the tensor: its file pages then stop counting in the process's
  /// resident memory. Throws not_found for an absent name.
  void release(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::filesystem::path path_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  const std::byte* map_ = nullptr;  // whole file
  size_t map_size_ = 0;
  const std::byte* data_ = nullptr;  // start of the data region
  std::weak_ptr<const SafetensorsFile> self_;
};

/// Writes CPU tensors (any dtype) in the given order with optional __metadata__.
/// Writes to `<path>.tmp` and renames it, so a failure leaves no partial file; a path that
/// cannot be written, a repeated name or a non-CPU tensor throws bad_input naming the path.
void write_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// The tensors of a model directory: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json` (its weight_map checked: every shard exists and holds the
/// tensors the index assigns to it).
class TensorStore {
 public:
  static TensorStore open_dir(const std::filesystem::path& dir);
  /// nullptr when absent.
  const SafetensorsEntry* find(const std::string& name) const;
  Tensor tensor(const std::string& name) const;
  /// SafetensorsFile::release on the file that holds `name`.
  void release(const std::string& name) const;
  /// Every tensor name, sorted.
  std::vector<std::string> names() const;
  /// "model.safetensors" or the shard that holds `name` (for error messages); empty when absent.
  std::string file_of(const std::string& name) const;

 private:
  std::filesystem::path dir_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

}  // namespace wick

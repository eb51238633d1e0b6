// safetensors reader (mmap, validated before use) and writer. TensorStore lives in tensor_store.cpp.
#include "wick/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>
#include <tuple>

#include <nlohmann/json.hpp>

#include "wick/error.h"

namespace wick {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the official library's cap
constexpr int kMaxHeaderDepth = 128;               // serde_json's recursion limit; real headers nest 3 deep

// Every dtype name the format defines, so sizes validate even for types wick cannot hold.
// Sub-byte types (F4, F6) count in bits; a tensor of them must fill whole bytes.
struct FileDtype {
  std::string_view name;
  unsigned bits;
  std::optional<DType> dtype;  // set when wick can hold it
};
constexpr FileDtype kFileDtypes[] = {
    {"F32", 32, DType::f32},     {"BF16", 16, DType::bf16},     {"F16", 16, DType::f16},
    {"I32", 32, DType::i32},     {"F64", 64, std::nullopt},     {"I64", 64, std::nullopt},
    {"U64", 64, std::nullopt},   {"C64", 64, std::nullopt},     {"U32", 32, std::nullopt},
    {"I16", 16, std::nullopt},   {"U16", 16, std::nullopt},     {"I8", 8, std::nullopt},
    {"U8", 8, std::nullopt},     {"BOOL", 8, std::nullopt},     {"F8_E4M3", 8, std::nullopt},
    {"F8_E5M2", 8, std::nullopt}, {"F8_E8M0", 8, std::nullopt}, {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt}, {"F4", 4, std::nullopt},
};

const FileDtype* find_file_dtype(std::string_view name) {
  for (const FileDtype& d : kFileDtypes)
    if (d.name == name) return &d;
  return nullptr;
}

std::string_view file_dtype_name(DType t) {
  for (const FileDtype& d : kFileDtypes)
    if (d.dtype == t) return d.name;
  return "?";
}

std::string known_dtype_names() {
  std::string s;
  for (const FileDtype& d : kFileDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

std::string in_quotes(std::string_view s) {
  std::string r(1, '\'');
  r.append(s);
  r.push_back('\'');
  return r;
}

std::string errno_text(int err) { return std::generic_category().message(err); }

// A JSON value for an error message, cut short so a hostile header cannot flood the message.
std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

std::string offsets_text(const SafetensorsEntry& e) {
  std::string r = "[";
  r.append(std::to_string(e.begin)).append(", ").append(std::to_string(e.end)).push_back(']');
  return r;
}

// Thrown out of the parser callback to stop a hostile, deeply nested header early.
struct TooDeep {};

// nlohmann keeps one value for a repeated key; this parser callback remembers the first repeat.
struct DuplicateKeyFinder {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far, one set per open object
  std::string top_key;                              // the latest key of the outermost object
  std::optional<std::string> message;

  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxHeaderDepth)
      throw TooDeep{};
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && !message)
        message = depth == 1 ? "tensor " + in_quotes(key) + " appears twice in the header"
                             : "entry " + in_quotes(top_key) + " has key " + in_quotes(key) + " twice";
      if (depth == 1) top_key = key;
    }
    return true;
  }
};

json parse_header(const std::string& file, const char* begin, const char* end) {
  DuplicateKeyFinder dups;
  json header;
  try {
    header = json::parse(begin, end, [&dups](int depth, json::parse_event_t event, json& parsed) {
      return dups(depth, event, parsed);
    });
  } catch (const json::exception& e) {
    fail(ErrorKind::corrupt, file + ": header is not valid JSON (" + e.what() + ")");
  } catch (const TooDeep&) {
    fail(ErrorKind::corrupt, file + ": header nests deeper than " + std::to_string(kMaxHeaderDepth) + " levels");
  }
  if (!header.is_object())
    fail(ErrorKind::corrupt, file + ": header is a JSON " + header.type_name() + ", expected an object");
  if (dups.message) fail(ErrorKind::corrupt, file + ": " + *dups.message);
  return header;
}

std::map<std::string, std::string> parse_metadata(const std::string& file, const json& v) {
  if (!v.is_object())
    fail(ErrorKind::corrupt, file + ": __metadata__ is a JSON " + v.type_name() + ", expected an object of strings");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string())
      fail(ErrorKind::corrupt,
           file + ": __metadata__[" + in_quotes(key) + "] is " + brief(value) + ", expected a string");
    out[key] = value.get<std::string>();
  }
  return out;
}

// A JSON value that must be a non-negative integer no larger than `max`.
std::optional<uint64_t> as_count(const json& v, uint64_t max) {
  if (!v.is_number_unsigned()) return std::nullopt;
  const uint64_t n = v.get<uint64_t>();
  if (n > max) return std::nullopt;
  return n;
}

// One header entry, checked on its own: fields, dtype, and shape x element size == byte span.
SafetensorsEntry parse_entry(const std::string& file, const std::string& name, const json& v) {
  const std::string where = file + ": tensor " + in_quotes(name);
  if (!v.is_object())
    fail(ErrorKind::corrupt,
         where + ": entry is a JSON " + v.type_name() + ", expected an object with dtype, shape and data_offsets");
  auto field = [&](const char* key) -> const json& {
    auto it = v.find(key);
    if (it == v.end()) fail(ErrorKind::corrupt, where + ": missing \"" + key + "\"");
    return *it;
  };

  SafetensorsEntry e;
  e.name = name;
  const json& dtype = field("dtype");
  if (!dtype.is_string()) fail(ErrorKind::corrupt, where + ": \"dtype\" is " + brief(dtype) + ", expected a string");
  e.dtype_name = dtype.get<std::string>();
  const FileDtype* fd = find_file_dtype(e.dtype_name);
  if (!fd)
    fail(ErrorKind::corrupt, where + ": unknown dtype " + in_quotes(e.dtype_name) + " (expected one of " +
                                 known_dtype_names() + ")");
  e.supported = fd->dtype.has_value();
  if (fd->dtype) e.dtype = *fd->dtype;

  const json& shape = field("shape");
  if (!shape.is_array()) fail(ErrorKind::corrupt, where + ": \"shape\" is " + brief(shape) + ", expected an array");
  for (size_t i = 0; i < shape.size(); ++i) {
    const auto d = as_count(shape[i], uint64_t(INT64_MAX));
    if (!d)
      fail(ErrorKind::corrupt, where + ": shape[" + std::to_string(i) + "] is " + brief(shape[i]) +
                                   ", expected a non-negative integer");
    e.shape.push_back(int64_t(*d));
  }

  const json& offsets = field("data_offsets");
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = as_count(offsets[0], UINT64_MAX);
    end = as_count(offsets[1], UINT64_MAX);
  }
  if (!begin || !end)
    fail(ErrorKind::corrupt, where + ": \"data_offsets\" is " + brief(offsets) +
                                 ", expected [begin, end] with non-negative integers");
  e.begin = *begin;
  e.end = *end;
  if (e.begin > e.end)
    fail(ErrorKind::corrupt, where + ": data_offsets " + offsets_text(e) + " begin after they end");

  // Checked in the same order as the official library, so both reject the same shapes.
  const std::string what = "shape " + to_string(e.shape) + " of " + e.dtype_name;
  uint64_t bits = 1;
  for (int64_t d : e.shape)
    if (__builtin_mul_overflow(bits, uint64_t(d), &bits))
      fail(ErrorKind::corrupt, where + ": " + what + " overflows a 64-bit element count");
  if (__builtin_mul_overflow(bits, uint64_t(fd->bits), &bits))
    fail(ErrorKind::corrupt, where + ": " + what + " overflows a 64-bit byte count");
  if (bits % 8 != 0) fail(ErrorKind::corrupt, where + ": " + what + " does not fill a whole number of bytes");
  if (bits / 8 != e.end - e.begin)
    fail(ErrorKind::corrupt, where + ": " + what + " needs " + std::to_string(bits / 8) + " bytes but data_offsets " +
                                 offsets_text(e) + " span " + std::to_string(e.end - e.begin));
  return e;
}

// Sorts entries by offset and checks they tile [0, data_size) exactly: no overlap, gap or trailing bytes.
void check_layout(const std::string& file, std::vector<SafetensorsEntry>& entries, uint64_t data_size) {
  for (const SafetensorsEntry& e : entries)
    if (e.end > data_size)
      fail(ErrorKind::corrupt, file + ": tensor " + in_quotes(e.name) + ": data_offsets " + offsets_text(e) +
                                   " run past the data region of " + std::to_string(data_size) +
                                   " bytes (file truncated?)");
  std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t pos = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry& e : entries) {
    if (e.begin < pos)
      fail(ErrorKind::corrupt, file + ": tensors " + in_quotes(prev->name) + " " + offsets_text(*prev) + " and " +
                                   in_quotes(e.name) + " " + offsets_text(e) + " overlap");
    if (e.begin > pos)
      fail(ErrorKind::corrupt, file + ": data bytes [" + std::to_string(pos) + ", " + std::to_string(e.begin) +
                                   ") belong to no tensor (a gap " +
                                   (prev ? "between tensors " + in_quotes(prev->name) + " and " : "before tensor ") +
                                   in_quotes(e.name) + ")");
    pos = e.end;
    prev = &e;
  }
  if (pos != data_size)
    fail(ErrorKind::corrupt, file + ": " + std::to_string(data_size - pos) + " trailing bytes after " +
                                 (prev ? "the last tensor " + in_quotes(prev->name) : std::string("the header")) +
                                 " (the data region is " + std::to_string(data_size) + " bytes, tensors cover " +
                                 std::to_string(pos) + ")");
}

// Closes a file descriptor on every path out.
struct FdGuard {
  int fd = -1;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  const std::string file = path.string();
  FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) fail(ErrorKind::not_found, file + ": no such file");
    fail(ErrorKind::bad_input, file + ": cannot open: " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) fail(ErrorKind::internal, file + ": cannot stat: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) fail(ErrorKind::bad_input, file + ": not a regular file");
  const uint64_t size = uint64_t(st.st_size);
  if (size < 8)
    fail(ErrorKind::corrupt, file + ": file is " + std::to_string(size) +
                                 " bytes, too short for the 8-byte header length");

  // Owned by a shared_ptr before mapping, so the destructor unmaps when validation throws.
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->self_ = f;
  void* map = ::mmap(nullptr, size_t(size), PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (map == MAP_FAILED) fail(ErrorKind::internal, file + ": cannot map " + std::to_string(size) + " bytes: " +
                                                       errno_text(errno));
  f->map_ = static_cast<const std::byte*>(map);
  f->map_size_ = size_t(size);

  uint64_t n = 0;  // header length, little-endian
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint64_t(f->map_[i]);
  if (n > kMaxHeaderBytes)
    fail(ErrorKind::corrupt, file + ": header length " + std::to_string(n) + " exceeds the limit of " +
                                 std::to_string(kMaxHeaderBytes) + " bytes");
  if (n > size - 8)
    fail(ErrorKind::corrupt, file + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                                 std::to_string(size - 8) + " bytes follow the length)");
  const char* text = reinterpret_cast<const char*>(f->map_ + 8);
  const json header = parse_header(file, text, text + n);

  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__")
      f->metadata_ = parse_metadata(file, value);
    else
      f->entries_.push_back(parse_entry(file, name, value));
  }
  check_layout(file, f->entries_, size - 8 - n);
  for (size_t i = 0; i < f->entries_.size(); ++i) f->index_[f->entries_[i].name] = i;
  f->data_ = f->map_ + 8 + n;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(ErrorKind::not_found, path_.string() + ": no tensor " + in_quotes(name));
  if (!e->supported)
    fail(ErrorKind::unsupported, path_.string() + ": tensor " + in_quotes(name) + " has dtype " + e->dtype_name +
                                     ", which wick cannot hold (supported: F32, BF16, F16, I32)");
  const std::byte* p = data_ + e->begin;
  // Neither the header length nor the offsets need be multiples of the element size, so a
  // tensor may sit unaligned for its type; typed access to it would be undefined, so copy it.
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(e->dtype) != 0) {
    Tensor t = Tensor::empty(e->shape, e->dtype);
    std::memcpy(t.raw(), p, t.nbytes());
    return t;
  }
  // The mapping is PROT_READ: the view is read-only; clone() it before writing.
  return Tensor::borrow(const_cast<std::byte*>(p), e->shape, e->dtype, self_.lock());
}

void SafetensorsFile::release(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(ErrorKind::not_found, path_.string() + ": no tensor " + in_quotes(name));
  const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data_ + e->begin) + page - 1) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(data_ + e->end) / page * page;
  // Only advice: a failure leaves the pages resident, which costs memory and nothing else.
  if (begin < end) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void write_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  // ordered_json keeps the entries in the caller's order; offsets follow that order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const std::string where = file + ": tensor " + in_quotes(name);
    if (name == "__metadata__") fail(ErrorKind::bad_input, where + ": the name is reserved for metadata");
    if (!seen.insert(name).second) fail(ErrorKind::bad_input, where + ": given twice");
    if (!t.defined()) fail(ErrorKind::bad_input, where + ": tensor is undefined");
    if (t.device() != Device::cpu) fail(ErrorKind::bad_input, where + ": not on the CPU; copy it there before writing");
    if (file_dtype_name(t.dtype()) == "?")
      fail(ErrorKind::bad_input, where + ": dtype " + std::string(to_string(t.dtype())) +
                                     " has no safetensors dtype; convert it (Tensor::to) before writing");
    header[name] = {{"dtype", file_dtype_name(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    fail(ErrorKind::bad_input, file + ": a tensor name or metadata string is not valid UTF-8 (" + e.what() + ")");
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the official writer pads to 8 so the data starts aligned

  const std::filesystem::path tmp = file + ".tmp";
  FdGuard fd{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (fd.fd < 0)
    fail(ErrorKind::bad_input, file + ": cannot open " + tmp.string() + " for writing: " + errno_text(errno));
  auto abandon = [&](const std::string& why) {
    if (fd.fd >= 0) ::close(fd.fd);
    fd.fd = -1;
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    fail(ErrorKind::bad_input, file + ": " + why);
  };
  auto write_all = [&](const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd.fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) abandon("cannot write " + tmp.string() + ": " + errno_text(errno));
      p += w;
      n -= size_t(w);
    }
  };
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));
  write_all(len, 8);
  write_all(text.data(), text.size());
  for (const auto& [name, t] : tensors) write_all(t.raw(), t.nbytes());
  const int closed = ::close(fd.fd);
  fd.fd = -1;
  if (closed != 0) abandon("cannot write " + tmp.string() + ": " + errno_text(errno));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) abandon("cannot rename " + tmp.string() + " to it: " + ec.message());
}

}  // namespace wick

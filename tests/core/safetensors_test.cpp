// safetensors: round trips, byte-exact agreement with the official library, and one test per
// malformed input, each checking the error kind and that the message names the file and tensor.
#include "wick/safetensors.h"

#include <climits>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "test_util.h"

namespace wick {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::temp_dir;
using test::write_file;

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

template <class T> void append(std::string& out, std::initializer_list<T> values) {
  for (T v : values) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.append(b, sizeof(T));
  }
}

// Writes "<8-byte length><header><data>" byte for byte, with no padding unless the header has it.
fs::path write_raw(const std::string& header, const std::string& data, const fs::path& dir = temp_dir("st"),
                   const std::string& name = "x.safetensors") {
  const fs::path p = dir / name;
  write_file(p, le64(header.size()) + header + data);
  return p;
}

// One header entry, e.g. entry("a", "F32", "[2, 3]", 0, 24).
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t begin,
                  uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

std::string bytes(size_t n) { return std::string(n, '\x01'); }

std::string raw_bytes(const Tensor& t) { return std::string(static_cast<const char*>(t.raw()), t.nbytes()); }

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  const Tensor f = Tensor::from_floats({1.5f, -2.0f, 3.0f, 0.25f, 5.0f, -6.0f}, {2, 3});
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"w.f32", f},
      {"b", f.to(DType::bf16)},
      {"h", f.to(DType::f16).reshape({3, 2})},
      {"i", Tensor::from_ints({1, -2, INT_MAX, INT_MIN}, {4})},
      {"scalar", Tensor::from_floats({7.0f}, {})},
      {"empty", Tensor::zeros({0, 3}, DType::bf16)},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "h\xc3\xa9llo \"quoted\""}};
  const fs::path p = temp_dir("st") / "rt.safetensors";
  write_safetensors(p, tensors, metadata);
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));

  auto file = SafetensorsFile::open(p);
  EXPECT_EQ(file->metadata(), metadata);
  ASSERT_EQ(file->entries().size(), tensors.size());
  uint64_t offset = 0;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const auto& [name, want] = tensors[k];
    const SafetensorsEntry& e = file->entries()[k];  // consecutive offsets in the given order
    EXPECT_EQ(e.name, name);
    EXPECT_EQ(e.begin, offset);
    offset += want.nbytes();
    EXPECT_EQ(e.end, offset);
    EXPECT_TRUE(e.supported);
    const Tensor got = file->tensor(name);
    EXPECT_EQ(got.shape(), want.shape()) << name;
    EXPECT_EQ(got.dtype(), want.dtype()) << name;
    EXPECT_EQ(raw_bytes(got), raw_bytes(want)) << name;
  }
  EXPECT_EQ(file->entries()[1].dtype_name, "BF16");
  EXPECT_EQ(file->entries()[2].dtype_name, "F16");
  EXPECT_EQ(file->entries()[3].dtype_name, "I32");
  EXPECT_EQ(file->tensor("h").data<uint16_t>()[1], 0xc000);  // -2.0 in f16

  const std::string raw = read_file(p);
  const uint64_t n = uint64_t(uint8_t(raw[0])) | uint64_t(uint8_t(raw[1])) << 8;
  EXPECT_EQ(n % 8, 0u) << "header padded to 8 bytes";
  const std::string header = raw.substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":", 0), 0u);
  EXPECT_LT(header.find("\"w.f32\""), header.find("\"b\""));
  EXPECT_LT(header.find("\"b\""), header.find("\"h\""));
  EXPECT_EQ(raw.size(), 8 + n + offset);
}

// Byte arrays from the official library's own serialization tests (safetensors/src/tensor.rs).
TEST(Safetensors, WritesTheSameBytesAsTheOfficialLibrary) {
  const fs::path dir = temp_dir("st");
  const Tensor attn0 = Tensor::from_floats({0, 1, 2, 3, 4, 5}, {1, 1, 2, 3});
  write_safetensors(dir / "a.safetensors", {{"attn0", attn0}});
  std::string want = le64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" + "       ";
  append<float>(want, {0, 1, 2, 3, 4, 5});
  EXPECT_EQ(read_file(dir / "a.safetensors"), want);

  write_safetensors(dir / "e.safetensors", {});
  EXPECT_EQ(read_file(dir / "e.safetensors"), le64(8) + "{}      ");
  write_safetensors(dir / "m.safetensors", {}, {{"framework", "pt"}});
  EXPECT_EQ(read_file(dir / "m.safetensors"), le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

// Laid out as safetensors.torch.save_file does: dtypes by descending alignment, header padded
// with spaces, __metadata__ first; the F64 tensor is listed and validated but wick cannot hold it.
TEST(Safetensors, ReadsAFileAsThePythonLibraryWritesIt) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}," + entry("d", "F64", "[2]", 0, 16) + "," +
                       entry("w", "F32", "[2,3]", 16, 40) + "," + entry("i", "I32", "[2]", 40, 48) + "," +
                       entry("b", "BF16", "[3]", 48, 54) + "," + entry("h", "F16", "[2]", 54, 58) + "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string data;
  append<double>(data, {1.0, -2.0});
  append<float>(data, {0.5f, 1, 2, 3, 4, -5});
  append<int32_t>(data, {7, -8});
  append<uint16_t>(data, {0x3f80, 0xc020, 0x3e20});  // bf16 1.0, -2.5, 0.15625
  append<uint16_t>(data, {0x3c00, 0xc500});          // f16 1.0, -5.0
  const fs::path p = write_raw(header, data);

  auto file = SafetensorsFile::open(p);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  ASSERT_EQ(file->entries().size(), 5u);
  EXPECT_EQ(file->entries()[0].name, "d");  // entries come in offset order
  EXPECT_EQ(file->entries()[4].name, "h");

  const SafetensorsEntry* d = file->find("d");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->dtype_name, "F64");
  EXPECT_FALSE(d->supported);
  EXPECT_EQ(d->shape, (Shape{2}));
  EXPECT_WICK_ERROR(file->tensor("d"), ErrorKind::unsupported, "x.safetensors", "'d'", "F64");

  const Tensor w = file->tensor("w");
  EXPECT_EQ(w.shape(), (Shape{2, 3}));
  EXPECT_EQ(w.data<float>()[0], 0.5f);
  EXPECT_EQ(w.data<float>()[5], -5.0f);
  EXPECT_EQ(file->tensor("i").data<int32_t>()[1], -8);
  const Tensor b = file->tensor("b").to(DType::f32);
  EXPECT_EQ(b.data<float>()[1], -2.5f);
  EXPECT_EQ(b.data<float>()[2], 0.15625f);
  EXPECT_EQ(file->tensor("h").to(DType::f32).data<float>()[1], -5.0f);
  EXPECT_EQ(file->find("nope"), nullptr);
  EXPECT_WICK_ERROR(file->tensor("nope"), ErrorKind::not_found, "x.safetensors", "'nope'");
}

TEST(Safetensors, TensorIsAViewThatKeepsTheFileAlive) {
  const fs::path p = temp_dir("st") / "v.safetensors";
  write_safetensors(p, {{"a", Tensor::from_floats({1, 2, 3, 4}, {2, 2})}});
  auto file = SafetensorsFile::open(p);
  const Tensor a = file->tensor("a");
  EXPECT_EQ(a.raw(), file->tensor("a").raw()) << "zero-copy: both views point into the mapping";
  file.reset();
  EXPECT_EQ(a.data<float>()[3], 4.0f);  // the mapping is still there
}

// release() drops a tensor's pages from the process's memory (a loader that copied it), keeps its neighbours', and
// reading the tensor afterwards maps the same values back from the file.
TEST(Safetensors, ReleaseDropsATensorsPagesAndReadsThemBackAfterwards) {
  const fs::path p = temp_dir("st") / "release.safetensors";
  const int64_t n = int64_t(4) << 20;  // 16 MB of f32
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[size_t(i)] = float(i % 1000);
  write_safetensors(p, {{"a", Tensor::from_floats({7, 8}, {2})}, {"big", Tensor::from_floats(values, {n})},
                        {"z", Tensor::from_floats({9}, {1})}});
  auto file = SafetensorsFile::open(p);
  const auto sum = [&] {
    double s = 0;
    const Tensor big = file->tensor("big");
    for (int64_t i = 0; i < n; i += 1024) s += big.data<float>()[i];  // a value in every page
    return s;
  };
  const double want = sum();
  const int64_t touched = test::proc_status_kb("RssFile");
  file->release("big");
  const int64_t released = test::proc_status_kb("RssFile");
  ASSERT_GE(touched, 0) << "no RssFile in /proc/self/status";
  EXPECT_GE(touched - released, 15 * 1024) << "KB resident before " << touched << ", after " << released;
  EXPECT_EQ(file->tensor("a").data<float>()[1], 8.0f);
  EXPECT_EQ(file->tensor("z").data<float>()[0], 9.0f);
  EXPECT_EQ(sum(), want);
  EXPECT_WICK_ERROR(file->release("nope"), ErrorKind::not_found, "'nope'");
}

// Writing goes through "<path>.tmp" and a rename, so a mapping of the old file stays intact.
TEST(Safetensors, OverwritesAFileItIsReadingFrom) {
  const fs::path p = temp_dir("st") / "same.safetensors";
  write_safetensors(p, {{"a", Tensor::from_floats({1, 2, 3}, {3})}});
  auto file = SafetensorsFile::open(p);
  const Tensor a = file->tensor("a");
  write_safetensors(p, {{"a", a}, {"b", a.to(DType::bf16)}});
  EXPECT_EQ(a.data<float>()[2], 3.0f);
  auto again = SafetensorsFile::open(p);
  EXPECT_EQ(again->entries().size(), 2u);
  EXPECT_EQ(again->tensor("b").to(DType::f32).data<float>()[1], 2.0f);
}

// A header length that is not a multiple of 4 leaves the f32 data unaligned; the reader copies it.
TEST(Safetensors, CopiesATensorStoredUnaligned) {
  const std::string header = "{" + entry("a", "F32", "[2]", 0, 8) + "}";
  ASSERT_NE(header.size() % 4, 0u);
  std::string data;
  append<float>(data, {1.25f, -3.0f});
  auto file = SafetensorsFile::open(write_raw(header, data));
  const Tensor a = file->tensor("a");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.raw()) % 4, 0u);
  EXPECT_EQ(a.data<float>()[0], 1.25f);
  EXPECT_EQ(a.data<float>()[1], -3.0f);
}

TEST(Safetensors, AcceptsZeroSizedTensorsAndNoTensors) {
  const std::string header = "{" + entry("z", "F32", "[0,4]", 0, 0) + "," + entry("a", "BF16", "[1]", 0, 2) + "," +
                             entry("y", "I32", "[3,0]", 2, 2) + "}";
  auto file = SafetensorsFile::open(write_raw(header, bytes(2)));
  EXPECT_EQ(file->tensor("z").numel(), 0);
  EXPECT_EQ(file->tensor("y").shape(), (Shape{3, 0}));
  EXPECT_EQ(file->tensor("a").numel(), 1);

  auto empty = SafetensorsFile::open(write_raw("{}", ""));
  EXPECT_TRUE(empty->entries().empty());
  EXPECT_TRUE(empty->metadata().empty());
}

TEST(Safetensors, WriterReportsAPathItCannotWrite) {
  const fs::path p = temp_dir("st") / "no-such-dir" / "out.safetensors";
  EXPECT_WICK_ERROR(write_safetensors(p, {{"a", Tensor::zeros({1}, DType::f32)}}), ErrorKind::bad_input,
                    "out.safetensors");
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));
}

TEST(Safetensors, WriterRejectsRepeatedReservedAndNonCpuTensors) {
  const fs::path p = temp_dir("st") / "out.safetensors";
  const Tensor t = Tensor::zeros({1}, DType::f32);
  EXPECT_WICK_ERROR(write_safetensors(p, {{"a", t}, {"a", t}}), ErrorKind::bad_input, "out.safetensors", "'a'");
  EXPECT_WICK_ERROR(write_safetensors(p, {{"__metadata__", t}}), ErrorKind::bad_input, "'__metadata__'");
  float dummy = 0;
  const Tensor gpu = Tensor::borrow(&dummy, {1}, DType::f32, nullptr, Device::cuda);
  EXPECT_WICK_ERROR(write_safetensors(p, {{"g", gpu}}), ErrorKind::bad_input, "'g'", "CPU");
  EXPECT_WICK_ERROR(write_safetensors(p, {{"u", Tensor()}}), ErrorKind::bad_input, "'u'", "undefined");
  EXPECT_FALSE(fs::exists(p));
}

TEST(Safetensors, RejectsMissingFile) {
  const fs::path p = temp_dir("st") / "absent.safetensors";
  EXPECT_WICK_ERROR(SafetensorsFile::open(p), ErrorKind::not_found, "absent.safetensors");
}

TEST(Safetensors, RejectsEmptyFile) {
  const fs::path p = temp_dir("st") / "x.safetensors";
  write_file(p, "");
  EXPECT_WICK_ERROR(SafetensorsFile::open(p), ErrorKind::corrupt, "x.safetensors", "0 bytes", "8-byte");
  write_file(p, std::string("\x10\0\0", 3));
  EXPECT_WICK_ERROR(SafetensorsFile::open(p), ErrorKind::corrupt, "x.safetensors", "3 bytes");
}

TEST(Safetensors, RejectsTruncatedFile) {
  const std::string header = "{" + entry("a", "F32", "[2,3]", 0, 24) + "," + entry("b", "F32", "[4]", 24, 40) + "}";
  const fs::path p = write_raw(header, bytes(30));
  EXPECT_WICK_ERROR(SafetensorsFile::open(p), ErrorKind::corrupt, "x.safetensors", "'b'", "[24, 40]", "30 bytes");
}

TEST(Safetensors, RejectsHeaderLengthPastTheEnd) {
  const fs::path p = temp_dir("st") / "x.safetensors";
  write_file(p, le64(1000) + "{}" + bytes(10));
  EXPECT_WICK_ERROR(SafetensorsFile::open(p), ErrorKind::corrupt, "x.safetensors", "header length 1000", "12 bytes");
}

TEST(Safetensors, RejectsHugeHeaderLength) {
  const fs::path p = temp_dir("st") / "x.safetensors";
  write_file(p, le64(uint64_t(1) << 40) + "{}");
  EXPECT_WICK_ERROR(SafetensorsFile::open(p), ErrorKind::corrupt, "x.safetensors", "1099511627776", "100000000");
  write_file(p, le64(UINT64_MAX) + "{}");
  EXPECT_WICK_ERROR(SafetensorsFile::open(p), ErrorKind::corrupt, "x.safetensors", "exceeds the limit");
}

TEST(Safetensors, RejectsHeaderThatIsNotJson) {
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw("{\"a\": {", "")), ErrorKind::corrupt, "x.safetensors",
                    "not valid JSON");
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw("{\"a\xff\": 1}", "")), ErrorKind::corrupt, "x.safetensors",
                    "not valid JSON");  // invalid UTF-8
}

TEST(Safetensors, RejectsHeaderThatIsAnArray) {
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw("[1, 2]  ", "")), ErrorKind::corrupt, "x.safetensors",
                    "JSON array", "expected an object");
}

TEST(Safetensors, RejectsDeeplyNestedHeader) {
  const std::string header = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, "")), ErrorKind::corrupt, "x.safetensors",
                    "nests deeper than 128");
}

TEST(Safetensors, RejectsEntryThatIsNotAnObject) {
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(R"({"a": [1, 2]})", "")), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "JSON array");
}

TEST(Safetensors, RejectsMissingDtype) {
  const std::string header = R"({"a":{"shape":[2],"data_offsets":[0,8]}})";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "missing \"dtype\"");
  const std::string number = R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(number, bytes(8))), ErrorKind::corrupt, "tensor 'a'",
                    "\"dtype\" is 4", "expected a string");
}

TEST(Safetensors, RejectsMissingShape) {
  const std::string header = R"({"a":{"dtype":"F32","data_offsets":[0,8]}})";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "missing \"shape\"");
  const std::string scalar = R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(scalar, bytes(8))), ErrorKind::corrupt, "tensor 'a'",
                    "\"shape\" is 2", "expected an array");
}

TEST(Safetensors, RejectsMissingOffsets) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2]}})";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "missing \"data_offsets\"");
}

TEST(Safetensors, RejectsMalformedOffsets) {
  for (const char* offsets : {"[0]", "[0,8,8]", "[-1,8]", "[0,8.5]", "\"0,8\"", "[0,18446744073709551616]"}) {
    const std::string header = std::string(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":)") + offsets + "}}";
    EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                      "tensor 'a'", "\"data_offsets\"", "[begin, end]");
  }
}

TEST(Safetensors, RejectsNegativeShape) {
  const std::string header = "{" + entry("a", "F32", "[2,-3]", 0, 24) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(24))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "shape[1] is -3", "non-negative integer");
}

TEST(Safetensors, RejectsNonIntegerShape) {
  for (const char* shape : {"[2.5]", "[\"3\"]", "[null]", "[9223372036854775808]", "[[2]]"}) {
    std::string header = "{";  // built by appends: gcc 12's -Wrestrict misfires on "{" + std::string + "}"
    header += entry("a", "F32", shape, 0, 8);
    header += "}";
    EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                      "tensor 'a'", "shape[0] is", "non-negative integer");
  }
}

TEST(Safetensors, RejectsBeginAfterEnd) {
  const std::string header = "{" + entry("a", "F32", "[2]", 8, 0) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "[8, 0]", "begin after");
}

TEST(Safetensors, RejectsOverlappingOffsets) {
  const std::string header = "{" + entry("a", "F32", "[4]", 0, 16) + "," + entry("b", "F32", "[4]", 8, 24) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(24))), ErrorKind::corrupt, "x.safetensors",
                    "'a' [0, 16]", "'b' [8, 24]", "overlap");
  // Two tensors on the same bytes, the case an attacker would use to alias weights.
  const std::string same = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "I32", "[2]", 0, 8) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(same, bytes(8))), ErrorKind::corrupt, "x.safetensors", "'a'", "'b'",
                    "overlap");
}

TEST(Safetensors, RejectsOutOfRangeOffsets) {
  const std::string header = "{" + entry("a", "F32", "[2]", 8, 16) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "[8, 16]", "past the data region of 8 bytes");
  const std::string huge = "{" + entry("a", "U8", "[7]", UINT64_MAX - 7, UINT64_MAX) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(huge, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "past the data region");
}

TEST(Safetensors, RejectsGapBetweenTensors) {
  const std::string header = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 12, 20) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(20))), ErrorKind::corrupt, "x.safetensors",
                    "[8, 12)", "between tensors 'a' and 'b'");
  const std::string first = "{" + entry("a", "F32", "[2]", 4, 12) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(first, bytes(12))), ErrorKind::corrupt, "x.safetensors",
                    "[0, 4)", "before tensor 'a'");
}

TEST(Safetensors, RejectsTrailingBytes) {
  const std::string header = "{" + entry("a", "F32", "[2]", 0, 8) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(11))), ErrorKind::corrupt, "x.safetensors",
                    "3 trailing bytes", "'a'");
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw("{}", bytes(1))), ErrorKind::corrupt, "x.safetensors",
                    "1 trailing bytes");
}

TEST(Safetensors, RejectsShapeByteMismatch) {
  const std::string header = "{" + entry("a", "F32", "[2,3]", 0, 20) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(20))), ErrorKind::corrupt,
                    "x.safetensors: tensor 'a': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] span 20");
  const std::string f4 = "{" + entry("q", "F4", "[3]", 0, 1) + "}";  // 12 bits
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(f4, bytes(1))), ErrorKind::corrupt, "x.safetensors", "'q'",
                    "whole number of bytes");
}

TEST(Safetensors, RejectsShapeOverflow) {
  const std::string header = "{" + entry("a", "F32", "[4611686018427387904,8]", 0, 8) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "overflows");
  // The element count fits; times the element size it does not.
  const std::string bytes_overflow = "{" + entry("b", "F64", "[4611686018427387904]", 0, 8) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(bytes_overflow, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'b'", "overflows a 64-bit byte count");
}

TEST(Safetensors, RejectsUnknownDtype) {
  const std::string header = "{" + entry("a", "F128", "[1]", 0, 16) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(16))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a'", "unknown dtype 'F128'", "BF16");
  const std::string lower = "{" + entry("a", "f32", "[1]", 0, 4) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(lower, bytes(4))), ErrorKind::corrupt, "'f32'");
}

TEST(Safetensors, RejectsDuplicateNames) {
  const std::string header = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("a", "F32", "[2]", 8, 16) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(header, bytes(16))), ErrorKind::corrupt, "x.safetensors",
                    "tensor 'a' appears twice");
  const std::string field = R"({"a":{"dtype":"F32","shape":[2],"dtype":"I32","data_offsets":[0,8]}})";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(field, bytes(8))), ErrorKind::corrupt, "x.safetensors",
                    "entry 'a' has key 'dtype' twice");
}

TEST(Safetensors, RejectsBadMetadata) {
  const std::string value = "{\"__metadata__\":{\"format\":\"pt\",\"step\":3}," + entry("a", "F32", "[1]", 0, 4) + "}";
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(value, bytes(4))), ErrorKind::corrupt, "x.safetensors",
                    "__metadata__['step'] is 3", "expected a string");
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(R"({"__metadata__":["pt"]})", "")), ErrorKind::corrupt,
                    "x.safetensors", "__metadata__ is a JSON array");
  EXPECT_WICK_ERROR(SafetensorsFile::open(write_raw(R"({"__metadata__":{"k":"a","k":"b"}})", "")), ErrorKind::corrupt,
                    "x.safetensors", "entry '__metadata__' has key 'k' twice");
}

// A model directory: one file, or shards listed by model.safetensors.index.json.
struct ShardedDir {
  fs::path dir = temp_dir("store");
  ShardedDir() {
    write_safetensors(dir / "model-00001-of-00002.safetensors",
                      {{"embed", Tensor::from_floats({1, 2, 3, 4}, {2, 2})}, {"norm", Tensor::from_floats({5}, {1})}});
    write_safetensors(dir / "model-00002-of-00002.safetensors", {{"head", Tensor::from_ints({6, 7}, {2})}});
  }
  void index(const std::string& weight_map) const {
    write_file(dir / "model.safetensors.index.json",
               R"({"metadata": {"total_size": 28}, "weight_map": )" + weight_map + "}");
  }
  static constexpr const char* kGood =
      R"({"embed": "model-00001-of-00002.safetensors", "norm": "model-00001-of-00002.safetensors",
          "head": "model-00002-of-00002.safetensors"})";
};

TEST(TensorStore, OpensASingleFile) {
  const fs::path dir = temp_dir("store");
  write_safetensors(dir / "model.safetensors",
                    {{"b", Tensor::from_floats({1, 2}, {2})}, {"a", Tensor::from_ints({3}, {1})}});
  const TensorStore store = TensorStore::open_dir(dir);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(store.tensor("b").data<float>()[1], 2.0f);
  EXPECT_EQ(store.file_of("a"), "model.safetensors");
  EXPECT_EQ(store.file_of("zz"), "");
  ASSERT_NE(store.find("a"), nullptr);
  EXPECT_EQ(store.find("a")->dtype, DType::i32);
  EXPECT_EQ(store.find("zz"), nullptr);
  EXPECT_WICK_ERROR(store.tensor("zz"), ErrorKind::not_found, dir.c_str(), "'zz'");
}

TEST(TensorStore, OpensAShardedDirectory) {
  const ShardedDir d;
  d.index(ShardedDir::kGood);
  const TensorStore store = TensorStore::open_dir(d.dir);
  EXPECT_EQ(store.names(), (std::vector<std::string>{"embed", "head", "norm"}));
  EXPECT_EQ(store.file_of("head"), "model-00002-of-00002.safetensors");
  EXPECT_EQ(store.file_of("norm"), "model-00001-of-00002.safetensors");
  EXPECT_EQ(store.tensor("head").data<int32_t>()[1], 7);
  EXPECT_EQ(store.tensor("embed").data<float>()[3], 4.0f);
}

TEST(TensorStore, ReportsAMissingShard) {
  const ShardedDir d;
  d.index(R"({"embed": "model-00001-of-00002.safetensors", "head": "model-00003-of-00003.safetensors"})");
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::not_found, "model.safetensors.index.json",
                    "'model-00003-of-00003.safetensors'", "'head'");
}

TEST(TensorStore, ReportsATensorMissingFromItsShard) {
  const ShardedDir d;
  d.index(R"({"embed": "model-00001-of-00002.safetensors", "norm": "model-00001-of-00002.safetensors",
              "head": "model-00002-of-00002.safetensors", "bias": "model-00002-of-00002.safetensors"})");
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::corrupt, "model.safetensors.index.json",
                    "tensor 'bias' is assigned to model-00002-of-00002.safetensors, which does not hold it");
}

TEST(TensorStore, ReportsATensorInTwoShards) {
  const ShardedDir d;
  write_safetensors(d.dir / "model-00002-of-00002.safetensors",
                    {{"head", Tensor::from_ints({6, 7}, {2})}, {"norm", Tensor::from_floats({5}, {1})}});
  d.index(ShardedDir::kGood);
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::corrupt, "model.safetensors.index.json",
                    "tensor 'norm' is in model-00002-of-00002.safetensors but the index assigns it to "
                    "model-00001-of-00002.safetensors");
}

TEST(TensorStore, ReportsATensorTheIndexDoesNotList) {
  const ShardedDir d;
  d.index(R"({"embed": "model-00001-of-00002.safetensors", "head": "model-00002-of-00002.safetensors"})");
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::corrupt, "model.safetensors.index.json",
                    "model-00001-of-00002.safetensors holds tensor 'norm', which the index does not list");
}

TEST(TensorStore, RejectsABadIndex) {
  const ShardedDir d;
  write_file(d.dir / "model.safetensors.index.json", "{\"weight_map\": ");
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::corrupt, "model.safetensors.index.json", "not valid JSON");
  write_file(d.dir / "model.safetensors.index.json", R"({"metadata": {}})");
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::corrupt, "model.safetensors.index.json", "weight_map");
  d.index(R"({"embed": 3})");
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::corrupt, "weight_map['embed']", "expected a file name");
  d.index(R"({"embed": "../model-00001-of-00002.safetensors"})");
  EXPECT_WICK_ERROR(TensorStore::open_dir(d.dir), ErrorKind::corrupt, "weight_map['embed']",
                    "inside the model directory");
}

TEST(TensorStore, ReportsADirectoryWithoutAModel) {
  const fs::path dir = temp_dir("store");
  EXPECT_WICK_ERROR(TensorStore::open_dir(dir), ErrorKind::not_found, dir.c_str(),
                    "no model.safetensors or model.safetensors.index.json");
}

TEST(TensorStore, ReportsAMissingDirectory) {
  const fs::path dir = temp_dir("store") / "absent";
  EXPECT_WICK_ERROR(TensorStore::open_dir(dir), ErrorKind::not_found, dir.c_str(), "no such directory");
}

}  // namespace
}  // namespace wick

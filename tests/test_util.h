// Helpers shared by all wick tests.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "wick/error.h"
#include "wick/tensor.h"

namespace wick::test {

/// A fresh, empty directory under the system temp dir, unique per test; removed at exit of the process.
std::filesystem::path temp_dir(std::string_view tag = "t");
/// Path of a committed fixture: tests/fixtures/<rel>.
std::filesystem::path fixture(std::string_view rel);
std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, std::string_view bytes);
/// A memory figure of this process from /proc/self/status, in KB ("VmRSS", "VmHWM": its peak, "RssFile": pages of
/// mapped files); −1 where it cannot be read.
int64_t proc_status_kb(std::string_view field);
/// Resets VmHWM to the current resident size (/proc/self/clear_refs); false where that cannot be done.
bool reset_peak_resident();
/// A CPU f32 tensor of normal(0, scale) values drawn from `rng` in element order.
Tensor random_normal(const Shape& shape, std::mt19937& rng, float scale = 1.0f);
/// Whether two CPU tensors have the same shape, dtype and bytes.
bool same_bits(const Tensor& a, const Tensor& b);

/// What a run of the wick CLI left: its exit code (−1 when a signal ended it), stdout and stderr.
struct CliRun {
  int code;
  std::string out, err;
};

/// Runs `statement`, expects a wick::Error of `want_kind` whose message contains every `needle`.
/// (The parameter is not called `kind`: the macro would rewrite `e_.kind()` with it.)
#define EXPECT_WICK_ERROR(statement, want_kind, ...)                                             \
  do {                                                                                           \
    try {                                                                                        \
      statement;                                                                                 \
      ADD_FAILURE() << "expected wick::Error from: " #statement;                                \
    } catch (const ::wick::Error& e_) {                                                          \
      EXPECT_EQ(e_.kind(), want_kind) << e_.what();                                              \
      for (std::string_view needle_ : {__VA_ARGS__})                                             \
        EXPECT_NE(std::string_view(e_.what()).find(needle_), std::string_view::npos)            \
            << "message '" << e_.what() << "' lacks '" << needle_ << "'";                        \
    }                                                                                            \
  } while (0)

}  // namespace wick::test

// A safetensors file: the header length, the JSON header, the data offsets, then every tensor it declares read
// as the model loader reads it. SafetensorsFile maps a path, so the input goes into a memfd opened through
// /proc/self/fd (no disk writes; the reader's fstat sees a regular file of exactly the input's size).
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "fuzz_util.h"
#include "wick/safetensors.h"

namespace {

int memfd() {
  static const int fd = [] {
    const int f = ::memfd_create("wick-fuzz.safetensors", MFD_CLOEXEC);
    if (f < 0) std::abort();
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd();
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, data, size, 0) != ssize_t(size)) std::abort();
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  wick::fuzz::expect_only_wick_errors([&] {
    const auto file = wick::SafetensorsFile::open(path);
    for (const wick::SafetensorsEntry& e : file->entries()) {
      if (file->find(e.name) != &e) std::abort();
      wick::fuzz::expect_only_wick_errors([&] {  // unsupported dtypes are refused one tensor at a time
        const wick::Tensor t = file->tensor(e.name);
        if (t.nbytes() != e.end - e.begin) std::abort();
        // Touch every byte, so ASan sees a read past the mapping or the copy.
        const auto* p = static_cast<const unsigned char*>(t.raw());
        unsigned sum = 0;
        for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
        volatile unsigned sink = sum;
        (void)sink;
      });
    }
  });
  return 0;
}

#include "hub/digest.h"

#include <fstream>
#include <memory>
#include <vector>

#include <openssl/evp.h>

#include "wick/error.h"

namespace wick::hub {

namespace {

// Streams `prefix` and then the file through `md`; returns the digest in hex.
std::string digest_file(const std::filesystem::path& path, const EVP_MD* md, const std::string& prefix) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::not_found, path.string() + ": cannot be read");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), prefix.data(), prefix.size()) != 1)
    fail(ErrorKind::internal, "hub: OpenSSL digest failed to start");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), std::streamsize(buf.size()));
    if (in.gcount() > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), size_t(in.gcount())) != 1)
      fail(ErrorKind::internal, "hub: OpenSSL digest failed");
  }
  if (in.bad()) fail(ErrorKind::internal, path.string() + ": read error while hashing");
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out, &n) != 1) fail(ErrorKind::internal, "hub: OpenSSL digest failed to finish");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) hex += kHex[out[i] >> 4], hex += kHex[out[i] & 15];
  return hex;
}

}  // namespace

std::string file_sha256(const std::filesystem::path& path) { return digest_file(path, EVP_sha256(), ""); }

std::string file_git_sha1(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(ErrorKind::not_found, path.string() + ": cannot be read (" + ec.message() + ")");
  std::string prefix = "blob " + std::to_string(size);
  prefix += '\0';
  return digest_file(path, EVP_sha1(), prefix);
}

}  // namespace wick::hub

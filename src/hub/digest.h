// The hashes the hub names files by: sha256 of an LFS file's bytes, and git's blob sha1 of any other file.
#pragma once

#include <filesystem>
#include <string>

namespace wick::hub {

/// Lower-case hex sha256 of the file's bytes.
std::string file_sha256(const std::filesystem::path& path);
/// Lower-case hex sha1 of "blob <size>\0" followed by the file's bytes (`git hash-object`).
std::string file_git_sha1(const std::filesystem::path& path);

}  // namespace wick::hub

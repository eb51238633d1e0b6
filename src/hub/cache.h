// The hub cache on disk (huggingface_hub's layout, see wick/hub.h) and the environment that places it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "wick/hub.h"

namespace wick::hub {

/// PullOptions with every empty field filled from the environment.
struct HubEnv {
  std::string endpoint{};  // no trailing '/'
  std::string token{};
  std::filesystem::path cache{};
  bool offline = false;
};
HubEnv hub_env(const PullOptions& options);

/// huggingface_hub's reading of a boolean variable: 1, true, yes, on (any case).
bool env_flag(const char* name);

/// True when `s` is `n` lower-case hex digits (n = 0: any non-zero length).
bool is_hex(std::string_view s, size_t n = 0);

/// The commit a revision names in the cache: the revision itself when it is a sha with a snapshot, else the
/// content of refs/<revision>. nullopt when the cache does not know it.
std::optional<std::string> cached_commit(const std::filesystem::path& repo_dir, std::string_view revision);
/// snapshots/<cached_commit> when that directory exists.
std::optional<std::filesystem::path> cached_snapshot(const std::filesystem::path& repo_dir, std::string_view revision);
/// Writes refs/<revision> = sha (atomically: a temporary file renamed over it).
void write_ref(const std::filesystem::path& repo_dir, std::string_view revision, std::string_view sha);
/// snapshots/<sha>/<path> -> relative symlink to blobs/<etag>, replacing what was there.
void link_snapshot_file(const std::filesystem::path& repo_dir, std::string_view sha, std::string_view path,
                        std::string_view etag);
/// Throws corrupt unless a repository path from the hub is relative and stays inside the snapshot.
void check_repo_path(std::string_view path, std::string_view repo_id);

/// An exclusive lock on <cache>/.locks/<repo folder>/<etag>.lock, where huggingface_hub locks the same blob
/// (flock: a second wick, or Python, downloading that blob waits for this one). Released on destruction.
class BlobLock {
 public:
  BlobLock(const std::filesystem::path& cache, std::string_view repo_folder, std::string_view etag);
  ~BlobLock();
  BlobLock(const BlobLock&) = delete;
  BlobLock& operator=(const BlobLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace wick::hub

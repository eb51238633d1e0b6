// wick hub: download model and adapter repositories from the Hugging Face Hub into its standard cache, and find
// them there again. The cache is the one huggingface_hub writes and reads, so each side uses what the other pulled:
//
//   $HF_HUB_CACHE (default $HF_HOME/hub, $HF_HOME default ~/.cache/huggingface)
//     models--ORG--NAME/
//       blobs/<etag>                 file contents, named by the hub's ETag (LFS: sha256; other files: git sha1)
//       blobs/<etag>.incomplete      a download in progress, resumed from its size by the next pull
//       refs/<revision>              the commit sha that a branch or tag named when it was pulled
//       snapshots/<sha>/<path>       relative symlink -> ../../blobs/<etag>
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wick::hub {

/// What a pull reports about one file of the repository, as it goes.
struct FileProgress {
  enum class Stage {
    cached,       ///< its blob was already in the cache (size checked): nothing downloaded
    started,      ///< a download begins (resumed_from > 0: continuing an .incomplete file)
    downloading,  ///< more bytes arrived
    downloaded,   ///< the blob is complete and verified
  };
  Stage stage = Stage::started;
  std::string path{};        ///< in the repository, e.g. "model-00001-of-00004.safetensors"
  int index = 0, count = 0;  ///< this is file `index` (1-based) of `count` in the pull
  int64_t done = 0;          ///< bytes of the file now on disk
  int64_t total = -1;        ///< its size (-1: the hub did not say)
  int64_t resumed_from = 0;  ///< bytes that were on disk before this download
};
using ProgressFn = std::function<void(const FileProgress&)>;

/// How to reach the hub and what to take. An empty field is read from the environment as huggingface_hub reads it.
struct PullOptions {
  std::string endpoint{};            ///< "" -> $HF_ENDPOINT, else https://huggingface.co
  std::string token{};               ///< "" -> $HF_TOKEN, else the file $HF_TOKEN_PATH or $HF_HOME/token; sent as Bearer
  std::filesystem::path cache_dir{}; ///< "" -> $HF_HUB_CACHE, else $HF_HOME/hub
  std::optional<bool> offline{};     ///< nullopt -> $HF_HUB_OFFLINE (1, true, yes or on): no network, cache only
  std::vector<std::string> include{};///< fnmatch globs on repository paths ("*" crosses "/"); empty: every file
  ProgressFn progress{};             ///< per-file progress; null: silent
  int max_attempts = 3;              ///< a download cut off after some bytes is resumed (HTTP Range) this often in all
};

/// The outcome of a pull.
struct PullResult {
  std::filesystem::path snapshot{};  ///< <cache>/models--ORG--NAME/snapshots/<commit>
  std::string commit{};              ///< the 40-hex commit sha the revision named
  std::vector<std::string> files{};  ///< repository paths this pull put in (or found in) the snapshot, sorted
  int64_t files_downloaded = 0;    ///< files fetched over the network (0: everything was cached)
  int64_t bytes_downloaded = 0;
};

/// Downloads `repo_id` ("ORG/NAME") at `revision` (branch, tag or commit sha) into the cache: the files matching
/// options.include, each verified (size against X-Linked-Size / Content-Length; sha256 against the ETag of an LFS
/// file, the git blob sha1 of any other) before it is linked into the snapshot, and refs/<revision> written last.
/// Files whose blob is already there are not downloaded again. With offline, returns the cached snapshot or fails.
/// Errors (wick::Error): bad_input for a malformed repo id or revision (before any network) and for 401/403 (access
/// denied); not_found for 404 or, offline, a repository missing from the cache; corrupt for a download that fails
/// its check (the blob is discarded, nothing is linked); internal for network failures (naming the URL).
PullResult pull(std::string_view repo_id, std::string_view revision = "main", const PullOptions& options = {});

/// A --model / --adapter value: `spec` itself when it names an existing file or directory; else, when it reads as
/// ORG/NAME[@REVISION], that snapshot directory from the cache, pulled first (wick's model files: *.json,
/// *.safetensors, *.jinja, *.txt, unless options.include says otherwise) when the cache lacks it and not offline.
/// Anything else comes back unchanged, for the loader to report as missing. A failed pull's error adds that `spec`
/// is no local directory either.
std::filesystem::path resolve_model_path(std::string_view spec, const PullOptions& options = {});

/// "ORG/NAME" or "ORG/NAME@REVISION" (revision default "main").
struct RepoSpec {
  std::string repo_id{}, revision{};
};
/// `spec` split into repo id and revision when both are valid (see check_repo_id, check_revision); else nullopt.
std::optional<RepoSpec> parse_repo_spec(std::string_view spec);
/// Throws bad_input unless `repo_id` is ORG/NAME: each part 1-96 of [A-Za-z0-9_.-], starting and ending with a
/// letter, digit or '_', with no "--" or ".."; the whole at most 96 characters (huggingface_hub's rule).
void check_repo_id(std::string_view repo_id);
/// Throws bad_input unless `revision` is a usable branch, tag or sha: non-empty, printable, no spaces, no empty,
/// "." or ".." path component (it becomes a path under refs/).
void check_revision(std::string_view revision);

/// The hub cache directory `options` (and the environment) name.
std::filesystem::path cache_dir(const PullOptions& options = {});
/// <cache>/models--ORG--NAME.
std::filesystem::path repo_cache_dir(std::string_view repo_id, const PullOptions& options = {});

}  // namespace wick::hub

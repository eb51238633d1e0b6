// wick::hub::pull and resolve_model_path: the revision listing, a HEAD per file for its ETag and size (as
// huggingface_hub's hf_hub_download asks), resumable verified downloads into blobs/, then the snapshot's links.
#include <fnmatch.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "hub/api.h"
#include "hub/cache.h"
#include "hub/digest.h"
#include "hub/http.h"
#include "wick/error.h"
#include "wick/hub.h"

namespace wick::hub {

namespace fs = std::filesystem;

namespace {

// The files wick reads from a model or adapter repository: what --model ORG/NAME pulls when nothing was pulled yet.
const std::vector<std::string> kModelFiles = {"*.json", "*.safetensors", "*.jinja", "*.txt"};

// huggingface_hub's filter_repo_objects: fnmatch without FNM_PATHNAME ("*" crosses "/"), "dir/" means "dir/*".
bool included(const std::string& path, const std::vector<std::string>& globs) {
  if (globs.empty()) return true;
  for (std::string g : globs) {
    if (!g.empty() && g.back() == '/') g += '*';
    if (::fnmatch(g.c_str(), path.c_str(), 0) == 0) return true;
  }
  return false;
}

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& i : items) s += (s.empty() ? "" : " ") + i;
  return s;
}

std::string spec_text(std::string_view repo_id, std::string_view revision) {
  return std::string(repo_id) + (revision == "main" ? "" : "@" + std::string(revision));
}

[[noreturn]] void fail_offline(std::string_view repo_id, std::string_view revision, const fs::path& repo_dir) {
  fail(ErrorKind::not_found, std::string(repo_id) + "@" + std::string(revision) + ": not in the Hugging Face cache (" +
                                 repo_dir.string() + ") and HF_HUB_OFFLINE is set; run `wick pull " +
                                 spec_text(repo_id, revision) + "` with network access first");
}

// "W/\"abc\"" -> "abc" (huggingface_hub's _normalize_etag).
std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

std::optional<int64_t> parse_size(const std::string& s) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(s);
}

// What the HEAD of one file says: the blob's name and size, and where its bytes are.
struct FileMeta {
  std::string etag{};
  int64_t size = -1;
  std::string url{};
};

class Puller {
 public:
  Puller(std::string_view repo_id, std::string_view revision, const PullOptions& o)
      : repo_id_(repo_id), revision_(revision), o_(o), env_(hub_env(o)), http_(env_.token) {}

  PullResult run();

 private:
  [[noreturn]] void fail_http(const HttpResponse& r, const std::string& method, const std::string& url,
                              const std::string& file = "") const;
  RevisionListing revision_info();
  FileMeta head(const std::string& sha, const std::string& path);
  int64_t download(const FileMeta& m, const fs::path& blob, FileProgress& fp);
  void verify(const fs::path& part, const FileMeta& m, const std::string& path) const;
  void report(const FileProgress& fp) const {
    if (o_.progress) o_.progress(fp);
  }

  std::string repo_id_, revision_;
  const PullOptions& o_;
  HubEnv env_;
  HttpClient http_;
};

void Puller::fail_http(const HttpResponse& r, const std::string& method, const std::string& url,
                       const std::string& file) const {
  if (!r.transport_error.empty()) fail(ErrorKind::internal, method + " " + url + ": " + r.transport_error);
  const std::string at = repo_id_ + "@" + revision_;
  // The hub answers 401 + RepositoryNotFound for a repository it will not admit exists without a token.
  if (r.header("x-error-code") == "RepositoryNotFound")
    fail(ErrorKind::not_found, at + ": not found on " + env_.endpoint + " (or private or gated: set HF_TOKEN or --token)");
  if (r.status == 401 || r.status == 403)
    fail(ErrorKind::bad_input, repo_id_ + ": access denied (gated or private; set HF_TOKEN or --token)");
  if (r.status == 404)
    fail(ErrorKind::not_found, at + (file.empty() ? "" : ": " + file) + ": not found on " + env_.endpoint);
  std::string detail = r.header("x-error-message");
  if (detail.empty()) detail = r.body.substr(0, 200);
  for (char& c : detail) c = static_cast<unsigned char>(c) < 0x20 ? ' ' : c;  // errors are one line
  fail(ErrorKind::internal,
       method + " " + url + ": HTTP " + std::to_string(r.status) + (detail.empty() ? "" : " (" + detail + ")"));
}

// GET /api/models/ORG/NAME/revision/REV -> the commit sha and every file path.
RevisionListing Puller::revision_info() {
  const std::string url = env_.endpoint + "/api/models/" + repo_id_ + "/revision/" + url_quote(revision_, false);
  const HttpResponse r = http_.send({.url = url, .follow_redirects = true});
  if (!r.transport_error.empty() || r.status != 200) fail_http(r, "GET", url);
  return parse_revision_listing(r.body, url, repo_id_);
}

// HEAD {endpoint}/{repo}/resolve/{sha}/{path}, following only relative redirects (a renamed repository), as
// huggingface_hub does: an LFS file answers 302 to its CDN URL with X-Linked-Etag and X-Linked-Size.
FileMeta Puller::head(const std::string& sha, const std::string& path) {
  std::string url = env_.endpoint + "/" + repo_id_ + "/resolve/" + sha + "/" + url_quote(path, true);
  for (int hops = 0;; ++hops) {
    const HttpResponse r = http_.send({.url = url, .head = true});
    if (!r.transport_error.empty() || r.status >= 400 || r.status < 200) fail_http(r, "HEAD", url, path);
    const bool redirect = r.status >= 300 && r.status < 400;
    if (redirect && r.redirect_url.empty())
      fail(ErrorKind::internal, "HEAD " + url + ": HTTP " + std::to_string(r.status) + " without a Location");
    if (redirect && r.header("location").rfind('/', 0) == 0 && hops < 5) {
      url = r.redirect_url;
      continue;
    }
    FileMeta m;
    m.etag = normalize_etag(!r.header("x-linked-etag").empty() ? r.header("x-linked-etag") : r.header("etag"));
    const auto size = parse_size(!r.header("x-linked-size").empty() ? r.header("x-linked-size")
                                 : redirect                          ? std::string()
                                                                     : r.header("content-length"));
    m.size = size.value_or(-1);
    m.url = redirect ? r.redirect_url : url;
    const bool usable = !m.etag.empty() && m.etag.size() <= 128 && std::all_of(m.etag.begin(), m.etag.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (!usable)
      fail(ErrorKind::corrupt, repo_id_ + ": " + path + ": the hub gave no usable ETag ('" + m.etag + "') at " + url);
    return m;
  }
}

// The size the hub gave, then the hash the ETag names: sha256 (64 hex, an LFS file) or git's blob sha1 (40 hex).
void Puller::verify(const fs::path& part, const FileMeta& m, const std::string& path) const {
  std::error_code ec;
  const auto size = int64_t(fs::file_size(part, ec));
  auto reject = [&](const std::string& why) -> void {
    fs::remove(part, ec);
    fail(ErrorKind::corrupt, repo_id_ + ": " + path + ": " + why + "; the download was discarded");
  };
  if (m.size >= 0 && size != m.size)
    reject("downloaded " + std::to_string(size) + " bytes, the hub says " + std::to_string(m.size));
  const bool lfs = is_hex(m.etag, 64), git = is_hex(m.etag, 40);
  if (!lfs && !git) return;  // an ETag of another form names no hash: the size is the check
  const std::string got = lfs ? file_sha256(part) : file_git_sha1(part);
  if (got != m.etag)
    reject(std::string(lfs ? "sha256" : "git blob sha1") + " of the download is " + got + ", its ETag says " + m.etag);
}

// Fetches m.url into blob (via blob.incomplete, resumed from its size); returns the bytes received.
int64_t Puller::download(const FileMeta& m, const fs::path& blob, FileProgress& fp) {
  const fs::path part = blob.string() + ".incomplete";
  std::error_code ec;
  fs::create_directories(blob.parent_path(), ec);
  int64_t received = 0;
  for (int attempt = 1;; ++attempt) {
    int64_t have = fs::exists(part, ec) ? int64_t(fs::file_size(part, ec)) : 0;
    if (m.size >= 0 && have > m.size) fs::remove(part, ec), have = 0;  // longer than the file: not a prefix of it
    if (attempt == 1) {
      fp.stage = FileProgress::Stage::started, fp.done = have, fp.resumed_from = have;
      report(fp);
    }
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(part.c_str(), "ab"), std::fclose);
    if (!f) fail(ErrorKind::bad_input, part.string() + ": cannot be written (is the cache writable?)");
    if (m.size >= 0 && have == m.size) break;  // complete already (or empty): verify it
    const HttpResponse r = http_.send({.url = m.url, .follow_redirects = true, .sink = f.get(), .resume_from = have,
                                       .on_bytes = [&](int64_t now) {
                                         fp.stage = FileProgress::Stage::downloading, fp.done = now;
                                         report(fp);
                                       }});
    received += r.sink_bytes;
    if (std::fclose(f.release()) != 0) fail(ErrorKind::internal, part.string() + ": cannot be written (disk full?)");
    if (!r.transport_error.empty()) {
      // A connection cut after some bytes is resumed at once; one that brought nothing is an error now.
      if (r.sink_bytes > 0 && attempt < o_.max_attempts) continue;
      fail(ErrorKind::internal, "GET " + m.url + ": " + r.transport_error + " (after " + std::to_string(attempt) +
                                    " attempt(s); the partial download stays in " + part.string() +
                                    " and the next pull resumes it)");
    }
    if (r.status == 416 && attempt < o_.max_attempts) {  // the range does not fit the file: start it again
      fs::remove(part, ec);
      continue;
    }
    if (r.status == 206 && r.header("content-range").rfind("bytes " + std::to_string(have) + "-", 0) != 0) {
      fs::remove(part, ec);
      fail(ErrorKind::corrupt, "GET " + m.url + ": asked for bytes from " + std::to_string(have) +
                                   ", the server sent '" + r.header("content-range") + "'; the download was discarded");
    }
    if (r.status != 200 && r.status != 206) fail_http(r, "GET", m.url, fp.path);
    break;
  }
  verify(part, m, fp.path);
  fs::rename(part, blob, ec);
  if (ec) fail(ErrorKind::internal, blob.string() + ": cannot be written (" + ec.message() + ")");
  fp.stage = FileProgress::Stage::downloaded, fp.done = fp.total = int64_t(fs::file_size(blob, ec));
  report(fp);
  return received;
}

PullResult Puller::run() {
  const fs::path repo_dir = repo_cache_dir(repo_id_, {.cache_dir = env_.cache});
  const std::string folder = repo_dir.filename().string();
  auto [sha, listed] = revision_info();
  std::vector<std::string> files;
  for (const std::string& p : listed)
    if (included(p, o_.include)) files.push_back(p);
  if (files.empty())
    fail(ErrorKind::not_found, repo_id_ + "@" + revision_ + ": no file matches --include " + join(o_.include) + " (of " +
                                   std::to_string(listed.size()) + " in the repository)");
  std::sort(files.begin(), files.end());

  PullResult result{.snapshot = repo_dir / "snapshots" / sha, .commit = sha, .files = files};
  std::vector<std::string> etags;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& path = files[i];
    const FileMeta m = head(sha, path);
    const BlobLock lock(env_.cache, folder, m.etag);  // one download of a blob at a time, wick or huggingface_hub
    const fs::path blob = repo_dir / "blobs" / m.etag;
    FileProgress fp{.path = path, .index = int(i + 1), .count = int(files.size()), .total = m.size};
    std::error_code ec;
    const bool present = fs::is_regular_file(blob, ec);
    if (present && (m.size < 0 || int64_t(fs::file_size(blob, ec)) == m.size)) {
      fp.stage = FileProgress::Stage::cached, fp.done = int64_t(fs::file_size(blob, ec));
      report(fp);
    } else {
      if (present) fs::remove(blob, ec);  // the wrong size: not this blob
      result.bytes_downloaded += download(m, blob, fp);
      ++result.files_downloaded;
    }
    etags.push_back(m.etag);
  }
  // Every blob is in and verified: only now does the snapshot (and the ref naming it) appear.
  for (size_t i = 0; i < files.size(); ++i) link_snapshot_file(repo_dir, sha, files[i], etags[i]);
  if (revision_ != sha) write_ref(repo_dir, revision_, sha);
  return result;
}

PullResult pull_offline(std::string_view repo_id, std::string_view revision, const PullOptions& o,
                        const fs::path& repo_dir) {
  const auto snapshot = cached_snapshot(repo_dir, revision);
  if (!snapshot) fail_offline(repo_id, revision, repo_dir);
  PullResult result{.snapshot = *snapshot, .commit = snapshot->filename().string()};
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(*snapshot, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const std::string rel = it->path().lexically_relative(*snapshot).generic_string();
    if (!it->is_directory(ec) && fs::exists(it->path(), ec) && included(rel, o.include)) result.files.push_back(rel);
  }
  std::sort(result.files.begin(), result.files.end());
  if (result.files.empty())
    fail(ErrorKind::not_found, std::string(repo_id) + "@" + std::string(revision) + ": no cached file matches --include " +
                                   join(o.include) + " and HF_HUB_OFFLINE is set");
  return result;
}

}  // namespace

PullResult pull(std::string_view repo_id, std::string_view revision, const PullOptions& options) {
  check_repo_id(repo_id);
  check_revision(revision);
  if (options.max_attempts < 1) fail(ErrorKind::bad_input, "hub: max_attempts must be at least 1");
  if (options.offline.value_or(env_flag("HF_HUB_OFFLINE")))
    return pull_offline(repo_id, revision, options, repo_cache_dir(repo_id, options));
  return Puller(repo_id, revision, options).run();
}

fs::path resolve_model_path(std::string_view spec, const PullOptions& options) {
  std::error_code ec;
  if (spec.empty() || fs::exists(fs::path(spec), ec)) return fs::path(spec);
  const std::optional<RepoSpec> repo = parse_repo_spec(spec);
  if (!repo) return fs::path(spec);
  const fs::path repo_dir = repo_cache_dir(repo->repo_id, options);
  if (auto snapshot = cached_snapshot(repo_dir, repo->revision)) return *snapshot;
  if (options.offline.value_or(env_flag("HF_HUB_OFFLINE"))) fail_offline(repo->repo_id, repo->revision, repo_dir);
  PullOptions o = options;
  if (o.include.empty()) o.include = kModelFiles;
  try {
    return pull(repo->repo_id, repo->revision, o).snapshot;
  } catch (const Error& e) {  // the user may have meant a local path: say that it is not one either
    fail(e.kind(), std::string(e.what()) + "; nor is '" + std::string(spec) + "' a local directory");
  }
}

}  // namespace wick::hub

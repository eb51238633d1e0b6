#include "hub/cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/text.h"
#include "wick/error.h"

namespace wick::hub {

namespace fs = std::filesystem;

namespace {

constexpr const char* kDefaultEndpoint = "https://huggingface.co";

std::string getenv_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

fs::path home() {
  const std::string h = getenv_str("HOME");
  if (h.empty()) fail(ErrorKind::bad_input, "hub: HOME is not set, so the cache has no default place (set HF_HOME)");
  return h;
}

// os.path.expanduser for "~" and "~/...".
fs::path expand_user(const std::string& p) {
  if (p == "~" || p.rfind("~/", 0) == 0) return home() / p.substr(std::min<size_t>(2, p.size()));
  return p;
}

fs::path hf_home() {
  if (const std::string h = getenv_str("HF_HOME"); !h.empty()) return expand_user(h);
  const std::string xdg = getenv_str("XDG_CACHE_HOME");
  return (xdg.empty() ? home() / ".cache" : expand_user(xdg)) / "huggingface";
}

std::string read_trimmed(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return "";
  std::ostringstream ss;
  ss << f.rdbuf();
  return trim_space(ss.str());
}

bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Why one part of ORG/NAME is not valid; empty when it is.
std::string part_problem(std::string_view part, const char* what) {
  if (part.empty()) return std::string("empty ") + what;
  for (char c : part)
    if (!word_char(c) && c != '-' && c != '.')
      return std::string(what) + " '" + std::string(part) + "' has '" + std::string(1, c) +
             "' (allowed: letters, digits, '-', '_', '.')";
  if (!word_char(part.front()) || !word_char(part.back()))
    return std::string(what) + " '" + std::string(part) + "' must start and end with a letter, digit or '_'";
  return "";
}

// Why `id` is not ORG/NAME; empty when it is.
std::string repo_id_problem(std::string_view id) {
  const size_t slash = id.find('/');
  if (slash == std::string_view::npos || id.find('/', slash + 1) != std::string_view::npos)
    return "expected ORG/NAME (one '/')";
  if (id.size() > 96) return "longer than 96 characters";
  if (id.find("--") != std::string_view::npos || id.find("..") != std::string_view::npos)
    return "'--' and '..' are not allowed";
  if (std::string p = part_problem(id.substr(0, slash), "organisation"); !p.empty()) return p;
  return part_problem(id.substr(slash + 1), "name");
}

std::string revision_problem(std::string_view rev) {
  if (rev.empty()) return "empty";
  if (rev.size() > 255) return "longer than 255 characters";
  for (char c : rev) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || std::string_view("\\~^:?*[").find(c) != std::string_view::npos)
      return "has a space, control character or one of \\ ~ ^ : ? * [";
  }
  for (size_t at = 0;;) {
    const size_t slash = std::min(rev.find('/', at), rev.size());
    const std::string_view comp = rev.substr(at, slash - at);
    if (comp.empty() || comp == "." || comp == "..") return "has an empty, '.' or '..' path component";
    if (slash == rev.size()) break;
    at = slash + 1;
  }
  return "";
}

}  // namespace

bool env_flag(const char* name) {
  std::string v = trim_space(getenv_str(name));
  for (char& c : v) c = char(std::toupper(static_cast<unsigned char>(c)));
  return v == "1" || v == "TRUE" || v == "YES" || v == "ON";
}

bool is_hex(std::string_view s, size_t n) {
  if (s.empty() || (n && s.size() != n)) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

HubEnv hub_env(const PullOptions& o) {
  HubEnv e;
  e.endpoint = !o.endpoint.empty() ? o.endpoint : getenv_str("HF_ENDPOINT");
  if (e.endpoint.empty()) e.endpoint = kDefaultEndpoint;
  while (e.endpoint.size() > 1 && e.endpoint.back() == '/') e.endpoint.pop_back();
  e.cache = cache_dir(o);
  e.token = o.token;
  if (e.token.empty()) e.token = trim_space(getenv_str("HF_TOKEN"));
  if (e.token.empty()) {
    const std::string path = getenv_str("HF_TOKEN_PATH");
    e.token = read_trimmed(path.empty() ? hf_home() / "token" : expand_user(path));
  }
  e.offline = o.offline.value_or(env_flag("HF_HUB_OFFLINE"));
  return e;
}

fs::path cache_dir(const PullOptions& o) {
  if (!o.cache_dir.empty()) return o.cache_dir;
  for (const char* name : {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"})
    if (const std::string v = getenv_str(name); !v.empty()) return expand_user(v);
  return hf_home() / "hub";
}

fs::path repo_cache_dir(std::string_view repo_id, const PullOptions& o) {
  check_repo_id(repo_id);
  std::string folder = "models--" + std::string(repo_id);
  folder.replace(folder.find('/'), 1, "--");
  return cache_dir(o) / folder;
}

void check_repo_id(std::string_view repo_id) {
  if (const std::string p = repo_id_problem(repo_id); !p.empty())
    fail(ErrorKind::bad_input, "'" + std::string(repo_id) + "': not a Hugging Face repo id: " + p);
}

void check_revision(std::string_view revision) {
  if (const std::string p = revision_problem(revision); !p.empty())
    fail(ErrorKind::bad_input, "revision '" + std::string(revision) + "': not a branch, tag or commit: " + p);
}

std::optional<RepoSpec> parse_repo_spec(std::string_view spec) {
  const size_t at = spec.find('@');
  RepoSpec s{std::string(spec.substr(0, at)), at == std::string_view::npos ? "main" : std::string(spec.substr(at + 1))};
  if (!repo_id_problem(s.repo_id).empty() || !revision_problem(s.revision).empty()) return std::nullopt;
  return s;
}

std::optional<std::string> cached_commit(const fs::path& repo_dir, std::string_view revision) {
  std::error_code ec;
  if (is_hex(revision, 40) && fs::is_directory(repo_dir / "snapshots" / revision, ec)) return std::string(revision);
  const std::string sha = read_trimmed(repo_dir / "refs" / revision);
  if (!is_hex(sha, 40)) return std::nullopt;
  return sha;
}

std::optional<fs::path> cached_snapshot(const fs::path& repo_dir, std::string_view revision) {
  const auto sha = cached_commit(repo_dir, revision);
  std::error_code ec;
  if (!sha || !fs::is_directory(repo_dir / "snapshots" / *sha, ec)) return std::nullopt;
  return repo_dir / "snapshots" / *sha;
}

void write_ref(const fs::path& repo_dir, std::string_view revision, std::string_view sha) {
  const fs::path ref = repo_dir / "refs" / revision;
  const fs::path tmp = ref.string() + ".tmp-" + std::to_string(getpid());
  std::error_code ec;
  fs::create_directories(ref.parent_path(), ec);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << sha;  // huggingface_hub writes the bare sha, no newline
    if (!f.flush()) fail(ErrorKind::internal, tmp.string() + ": cannot be written");
  }
  fs::rename(tmp, ref, ec);
  if (ec) fail(ErrorKind::internal, ref.string() + ": cannot be written (" + ec.message() + ")");
}

void link_snapshot_file(const fs::path& repo_dir, std::string_view sha, std::string_view path, std::string_view etag) {
  const fs::path pointer = repo_dir / "snapshots" / sha / path;
  std::error_code ec;
  fs::create_directories(pointer.parent_path(), ec);
  if (ec) fail(ErrorKind::internal, pointer.parent_path().string() + ": cannot be made (" + ec.message() + ")");
  // snapshots/<sha>/a/b/f -> ../../../blobs/<etag>: one "../" per directory between the link and the repo folder.
  std::string target;
  for (size_t i = 0, depth = 2 + size_t(std::count(path.begin(), path.end(), '/')); i < depth; ++i) target += "../";
  target += "blobs/";
  target += etag;
  fs::remove(pointer, ec);
  fs::create_symlink(target, pointer, ec);
  if (ec) fail(ErrorKind::internal, pointer.string() + ": cannot make the link to " + target + " (" + ec.message() + ")");
}

void check_repo_path(std::string_view path, std::string_view repo_id) {
  bool ok = !path.empty() && path.front() != '/' && path.find('\\') == std::string_view::npos;
  for (size_t at = 0; ok;) {
    const size_t slash = std::min(path.find('/', at), path.size());
    const std::string_view comp = path.substr(at, slash - at);
    ok = !comp.empty() && comp != "." && comp != "..";
    if (slash == path.size()) break;
    at = slash + 1;
  }
  for (char c : path) ok = ok && static_cast<unsigned char>(c) >= 0x20;
  if (!ok)
    fail(ErrorKind::corrupt, std::string(repo_id) + ": the hub lists the file '" + std::string(path) +
                                 "', which is not a relative path inside the repository");
}

BlobLock::BlobLock(const fs::path& cache, std::string_view repo_folder, std::string_view etag) {
  const fs::path dir = cache / ".locks" / repo_folder;
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path path = dir / (std::string(etag) + ".lock");
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0)
    fail(ErrorKind::bad_input, path.string() + ": cannot be made (is the cache " + cache.string() + " writable?)");
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      ::close(fd_);
      fail(ErrorKind::internal, path.string() + ": cannot be locked");
    }
  }
}

BlobLock::~BlobLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

}  // namespace wick::hub

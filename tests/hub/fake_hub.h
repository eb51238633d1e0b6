// A fake Hugging Face Hub on 127.0.0.1 (an ephemeral port), in the test process, speaking what wick's hub client
// uses: the revision listing, HEAD / GET of resolve/{rev}/{path} (LFS files answer 302 to /cdn/{sha256} with
// X-Linked-Etag / X-Linked-Size; others 200 with ETag = git blob sha1), Range requests (206 / 416), 401 / 403 /
// 404 with X-Error-Code as the hub sends them, and faults on demand: a connection cut mid-file, a flipped byte,
// a wrong size, a server ignoring Range. Plain POSIX sockets, one connection at a time, Connection: close.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace wick::test {

inline std::string hex_digest(const EVP_MD* md, std::string_view bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(bytes.data(), bytes.size(), out, &n, md, nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < n; ++i) hex += kHex[out[i] >> 4], hex += kHex[out[i] & 15];
  return hex;
}
inline std::string sha256_hex(std::string_view bytes) { return hex_digest(EVP_sha256(), bytes); }
/// `git hash-object`: sha1 of "blob <size>\0<bytes>".
inline std::string git_sha1_hex(std::string_view bytes) {
  std::string s = "blob " + std::to_string(bytes.size());
  s += '\0';
  s += bytes;
  return hex_digest(EVP_sha1(), s);
}

struct FakeFile {
  std::string path{}, content{};
  bool lfs = false;
  std::string etag() const { return lfs ? sha256_hex(content) : git_sha1_hex(content); }
};

struct FakeRepo {
  std::string id{};   // ORG/NAME
  std::string sha{};  // the commit "main" names
  std::vector<FakeFile> files{};
  std::string token{};  // non-empty: a gated repository, answered deny_status without "Bearer <token>"
  int deny_status = 401;
};

/// The files of a fixture directory, *.safetensors as LFS files, as a repository.
inline FakeRepo fixture_repo(const std::string& id, const std::string& sha, const std::filesystem::path& dir) {
  FakeRepo r{.id = id, .sha = sha};
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name == "reference.safetensors") continue;  // test data, not part of a model repository
    r.files.push_back({name, read_file(e.path()), e.path().extension() == ".safetensors"});
  }
  return r;
}

struct FakeRequest {
  std::string method{}, target{}, range{}, authorization{};
};

class FakeHub {
 public:
  FakeHub() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;  // the kernel picks a free port; read it back below
    socklen_t len = sizeof addr;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error(std::string("fake hub: cannot listen on 127.0.0.1: ") + std::strerror(errno));
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeHub() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    ::close(listen_fd_);
  }
  FakeHub(const FakeHub&) = delete;
  FakeHub& operator=(const FakeHub&) = delete;

  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  void add_repo(FakeRepo r) {
    std::lock_guard lock(mu_);
    repos_[r.id] = std::move(r);
  }
  /// The next GET of this file's bytes sends full headers, `after` bytes of the body, then closes the connection.
  void cut_next_download(const std::string& path, size_t after) {
    std::lock_guard lock(mu_);
    cuts_[path] = after;
  }
  /// Until cleared: this file is served with its first byte flipped (headers unchanged).
  void set_corrupt(const std::string& path, bool on = true) {
    std::lock_guard lock(mu_);
    corrupt_[path] = on;
  }
  /// Until cleared: HEAD says this file is `extra` bytes longer than it is.
  void set_size_lie(const std::string& path, int64_t extra) {
    std::lock_guard lock(mu_);
    size_lie_[path] = extra;
  }
  /// Until cleared: Range headers are ignored (200 with the whole file).
  void set_ignore_range(bool on) {
    std::lock_guard lock(mu_);
    ignore_range_ = on;
  }

  std::vector<FakeRequest> requests() const {
    std::lock_guard lock(mu_);
    return log_;
  }
  void clear_log() {
    std::lock_guard lock(mu_);
    log_.clear();
  }
  /// Requests of `method` whose target starts with `prefix`.
  int count(std::string_view method, std::string_view prefix = "") const {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const FakeRequest& r : log_) n += r.method == method && r.target.rfind(prefix, 0) == 0;
    return n;
  }
  /// GETs of file bytes (resolve or CDN): what "downloads" means.
  int downloads() const { return count("GET", "/cdn/") + count_resolve_gets(); }

 private:
  struct Response {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers{};
    std::string body{};
    size_t cut_after = std::string::npos;  // close after this many body bytes
  };

  int count_resolve_gets() const {
    std::lock_guard lock(mu_);
    int n = 0;
    for (const FakeRequest& r : log_) n += r.method == "GET" && r.target.find("/resolve/") != std::string::npos;
    return n;
  }

  static std::string decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '%' && i + 2 < s.size()) {
        out += char(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  static Response error(int status, const std::string& code) {
    Response r{.status = status, .body = "{\"error\":\"" + code + "\"}"};
    r.headers.push_back({"X-Error-Code", code});
    r.headers.push_back({"Content-Type", "application/json"});
    return r;
  }

  // The body of `f` as a 200 or a 206 (Range: bytes=N-), with the faults armed for it.
  Response file_body(const FakeFile& f, const std::string& range) {
    std::string content = f.content;
    if (corrupt_[f.path] && !content.empty()) content[0] = char(content[0] ^ 0x5a);
    Response r;
    size_t from = 0;
    if (range.rfind("bytes=", 0) == 0 && !ignore_range_) {
      from = std::stoull(range.substr(6));
      if (from >= content.size()) {
        Response bad{.status = 416};
        bad.headers.push_back({"Content-Range", "bytes */" + std::to_string(content.size())});
        return bad;
      }
      r.status = 206;
      r.headers.push_back({"Content-Range", "bytes " + std::to_string(from) + "-" + std::to_string(content.size() - 1) +
                                                "/" + std::to_string(content.size())});
    }
    r.body = content.substr(from);
    r.headers.push_back({"ETag", "\"" + f.etag() + "\""});
    r.headers.push_back({"Accept-Ranges", "bytes"});
    if (auto it = cuts_.find(f.path); it != cuts_.end()) {
      r.cut_after = it->second;
      cuts_.erase(it);
    }
    return r;
  }

  Response route(const FakeRequest& q) {
    std::lock_guard lock(mu_);
    const std::string target = q.target;
    if (target.rfind("/cdn/", 0) == 0) {  // the LFS CDN: presigned in reality, so no token here
      for (const auto& [id, repo] : repos_)
        for (const FakeFile& f : repo.files)
          if (f.lfs && "/cdn/" + f.etag() == target) return file_body(f, q.range);
      return error(404, "EntryNotFound");
    }
    const bool api = target.rfind("/api/models/", 0) == 0;
    const std::string rest = api ? target.substr(12) : target.substr(1);
    // ORG/NAME/revision/REV  or  ORG/NAME/resolve/REV/PATH
    const size_t s1 = rest.find('/'), s2 = s1 == std::string::npos ? s1 : rest.find('/', s1 + 1);
    if (s2 == std::string::npos) return error(404, "NotFound");
    const std::string id = rest.substr(0, s2);
    const auto it = repos_.find(id);
    if (it == repos_.end()) return error(401, "RepositoryNotFound");  // what the hub says to an unknown repository
    const FakeRepo& repo = it->second;
    if (!repo.token.empty() && q.authorization != "Bearer " + repo.token) return error(repo.deny_status, "GatedRepo");
    const std::string kind = api ? "/revision/" : "/resolve/";
    if (rest.compare(s2, kind.size(), kind) != 0) return error(404, "NotFound");
    const std::string after = rest.substr(s2 + kind.size());
    const size_t s3 = api ? std::string::npos : after.find('/');
    const std::string rev = decode(after.substr(0, s3));
    if (rev != "main" && rev != repo.sha) return error(404, "RevisionNotFound");
    if (api) {
      nlohmann::json j = {{"id", repo.id}, {"sha", repo.sha}, {"siblings", nlohmann::json::array()}};
      for (const FakeFile& f : repo.files) j["siblings"].push_back({{"rfilename", f.path}});
      Response r{.body = j.dump()};
      r.headers.push_back({"Content-Type", "application/json"});
      return r;
    }
    const std::string path = decode(after.substr(s3 + 1));
    for (const FakeFile& f : repo.files) {
      if (f.path != path) continue;
      const int64_t lie = size_lie_[f.path];
      Response r;
      if (f.lfs) {
        r.status = 302;
        r.headers.push_back({"Location", endpoint() + "/cdn/" + f.etag()});
        r.headers.push_back({"X-Linked-Etag", "\"" + f.etag() + "\""});
        r.headers.push_back({"X-Linked-Size", std::to_string(int64_t(f.content.size()) + lie)});
        r.headers.push_back({"ETag", "\"" + git_sha1_hex("version https://git-lfs.github.com/spec/v1\n") + "\""});
      } else {
        r = file_body(f, q.range);
        if (lie) r.headers.push_back({"X-Linked-Size", std::to_string(int64_t(f.content.size()) + lie)});
      }
      r.headers.push_back({"X-Repo-Commit", repo.sha});
      return r;
    }
    return error(404, "EntryNotFound");
  }

  static bool send_all(int fd, const char* p, size_t n) {
    while (n > 0) {
      const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
      if (k <= 0) return false;
      p += k, n -= size_t(k);
    }
    return true;
  }

  void handle(int fd) {
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 65536) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) return;  // a client that says nothing for 5 s is dropped
      const ssize_t k = ::recv(fd, buf, sizeof buf, 0);
      if (k <= 0) return;
      head.append(buf, size_t(k));
    }
    FakeRequest q;
    const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
    q.method = head.substr(0, sp1);
    q.target = head.substr(sp1 + 1, sp2 - sp1 - 1);
    for (size_t at = head.find("\r\n") + 2; at < head.size();) {
      const size_t end = head.find("\r\n", at);
      const std::string line = head.substr(at, end - at);
      at = end + 2;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
      const std::string value = line.substr(line.find_first_not_of(' ', colon + 1));
      if (name == "range") q.range = value;
      if (name == "authorization") q.authorization = value;
    }
    {
      std::lock_guard lock(mu_);
      log_.push_back(q);
    }
    const Response r = route(q);
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " Fake\r\nConnection: close\r\n";
    for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n\r\n";
    if (!send_all(fd, out.data(), out.size()) || q.method == "HEAD") return;
    send_all(fd, r.body.data(), std::min(r.body.size(), r.cut_after));
  }

  void serve() {
    while (!stopping_) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      handle(fd);
      ::shutdown(fd, SHUT_WR);
      ::close(fd);
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<std::string, FakeRepo> repos_;
  std::map<std::string, size_t> cuts_;
  std::map<std::string, bool> corrupt_;
  std::map<std::string, int64_t> size_lie_;
  bool ignore_range_ = false;
  std::vector<FakeRequest> log_;
};

}  // namespace wick::test

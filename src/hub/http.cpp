#include "hub/http.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>

#include <curl/curl.h>

#include "core/text.h"
#include "wick/error.h"

namespace wick::hub {

namespace {

constexpr size_t kMaxBody = 1 << 20;  // error pages and API JSON; file bodies go to the sink

// What the callbacks of one request share.
struct Transfer {
  const HttpRequest* request = nullptr;
  HttpResponse* response = nullptr;
  bool to_sink = false;  // the current response is the 2xx whose body goes to the sink
  std::string write_error{};
  std::exception_ptr thrown{};  // from on_bytes: rethrown once curl has returned
};

// One header line. A status line starts a new response (a redirect's or a 100's headers are forgotten); the blank
// line that ends a 2xx's headers decides where its body goes.
size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const std::string line(data, size * n);
  HttpResponse& r = *t.response;
  if (line.rfind("HTTP/", 0) == 0) {
    r.headers.clear();
    const size_t sp = line.find(' ');
    r.status = sp == std::string::npos ? 0 : std::strtol(line.c_str() + sp + 1, nullptr, 10);
    t.to_sink = false;
  } else if (trim_space(line).empty()) {
    const HttpRequest& q = *t.request;
    if (q.sink && r.status >= 200 && r.status < 300) {
      t.to_sink = true;
      if (r.status == 200 && q.resume_from > 0) {  // the server ignored the range: start the file again
        std::fflush(q.sink);
        if (ftruncate(fileno(q.sink), 0) != 0) {
          t.write_error = std::string("cannot truncate the partial download: ") + std::strerror(errno);
          return 0;
        }
        std::fseek(q.sink, 0, SEEK_SET);
        r.restarted = true;
      }
    }
  } else if (const size_t colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = trim_space(line.substr(colon + 1));
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto& t = *static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (!t.to_sink) {
    HttpResponse& r = *t.response;
    r.body.append(data, std::min(bytes, kMaxBody - std::min(kMaxBody, r.body.size())));
    return bytes;
  }
  if (std::fwrite(data, 1, bytes, t.request->sink) != bytes) {
    t.write_error = std::string("cannot write the download: ") + std::strerror(errno);
    return 0;  // curl stops with CURLE_WRITE_ERROR
  }
  HttpResponse& r = *t.response;
  r.sink_bytes += int64_t(bytes);
  if (t.request->on_bytes) {
    try {  // an exception must not unwind through libcurl's C frames
      t.request->on_bytes((r.restarted ? 0 : t.request->resume_from) + r.sink_bytes);
    } catch (...) {
      t.thrown = std::current_exception();
      return 0;
    }
  }
  return bytes;
}

}  // namespace

HttpClient::HttpClient(std::string token) : token_(std::move(token)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
  if (!curl_) fail(ErrorKind::internal, "hub: libcurl could not start (curl_easy_init)");
}

HttpClient::~HttpClient() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResponse HttpClient::send(const HttpRequest& q) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // keeps the open connection for the next request to the same host
  HttpResponse r;
  Transfer t{.request = &q, .response = &r};
  char error[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  // Sizes must be the stored bytes' (no transparent compression), as huggingface_hub asks for.
  headers = curl_slist_append(headers, "Accept-Encoding: identity");
  if (!token_.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + token_).c_str());
  const std::string range = std::to_string(q.resume_from) + "-";

  curl_easy_setopt(c, CURLOPT_URL, q.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "wick/0.1.0");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  // A stalled connection (under 1 byte/s for a minute) fails, and is resumed by the caller, instead of hanging.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, q.follow_redirects ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (q.head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (q.sink && q.resume_from > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());

  const CURLcode code = curl_easy_perform(c);
  curl_slist_free_all(headers);
  if (t.thrown) std::rethrow_exception(t.thrown);
  if (code != CURLE_OK) {
    r.transport_error = !t.write_error.empty() ? t.write_error : error[0] ? error : curl_easy_strerror(code);
    return r;
  }
  if (q.sink) std::fflush(q.sink);
  char* location = nullptr;
  if (!q.follow_redirects && curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location)
    r.redirect_url = location;
  return r;
}

std::string url_quote(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    if (std::isalnum(u) || ch == '-' || ch == '_' || ch == '.' || ch == '~' || (keep_slash && ch == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace wick::hub

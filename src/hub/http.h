// A small HTTP client over libcurl for the hub: one connection reused across requests, a Bearer token, headers of
// the final response, bodies to memory or appended to a file (for resumable downloads).
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>

namespace wick::hub {

struct HttpRequest {
  std::string url{};
  bool head = false;              ///< HEAD instead of GET
  bool follow_redirects = false;  ///< off: a 3xx comes back with its Location in redirect_url
  /// With a sink, the body of a 2xx response is written to it (other bodies go to HttpResponse::body). A non-zero
  /// resume_from sends "Range: bytes=<resume_from>-"; a 206 answer is appended, a 200 one (the server ignored the
  /// range) replaces the sink's contents from the start.
  std::FILE* sink = nullptr;
  int64_t resume_from = 0;
  std::function<void(int64_t sink_size)> on_bytes{};  ///< bytes in the sink now, after each write; may throw
};

struct HttpResponse {
  long status = 0;                             ///< 0 when the transfer failed before any response
  std::map<std::string, std::string> headers;  ///< of the final response; names lower-case
  std::string body;                            ///< what did not go to the sink (error pages, JSON), first 1 MiB
  std::string redirect_url;                    ///< absolute URL of a 3xx's Location (when not followed)
  std::string transport_error;                 ///< empty on success; else curl's words for what broke
  int64_t sink_bytes = 0;                      ///< body bytes written to the sink by this request
  bool restarted = false;                      ///< the sink was rewritten from 0 (a 200 answer to a range request)

  std::string header(const std::string& lower_name) const {
    const auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

class HttpClient {
 public:
  explicit HttpClient(std::string token);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// Never throws for HTTP or network failures: they come back in status / transport_error.
  HttpResponse send(const HttpRequest& request);

 private:
  void* curl_;  // CURL*
  std::string token_;
};

/// `text` percent-encoded for a URL path; '/' is kept when keep_slash (file paths) and encoded otherwise (revisions).
std::string url_quote(std::string_view text, bool keep_slash);

}  // namespace wick::hub

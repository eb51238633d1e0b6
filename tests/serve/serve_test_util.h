// A wick::Server on a loopback port for the serve tests, the demo model (with its tokenizer and chat template) and
// its scripture adapter, and small HTTP helpers over cpp-httplib's client.
#pragma once

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "wick/model.h"
#include "wick/server.h"
#include "wick/tokenizer.h"

namespace wick::test {

inline std::filesystem::path demo_model_dir() { return std::filesystem::path(WICK_FIXTURES) / "../../models/wick-demo"; }
inline std::filesystem::path scripture_adapter_dir() {
  return std::filesystem::path(WICK_FIXTURES) / "../../models/adapters/scripture";
}

/// The demo model, loaded once per test executable (servers share it; none changes its weights).
inline std::shared_ptr<Model> demo_model() {
  static const std::shared_ptr<Model> model = Model::load(demo_model_dir());
  return model;
}
inline const Tokenizer& demo_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::load(demo_model_dir());
  return tokenizer;
}

/// The demo tokenizer's chat template over `messages`, with the generation prompt, as token ids.
inline std::vector<int32_t> chat_ids(const std::vector<ChatMessage>& messages) {
  const Tokenizer& t = demo_tokenizer();
  return t.encode(t.apply_chat_template(messages, {.add_generation_prompt = true}));
}

/// Runs a shell command; its stdout (the test fails when it exits non-zero).
inline std::string command_output(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    ADD_FAILURE() << "cannot run " << cmd;
    return out;
  }
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << cmd;
  return out;
}

/// `wick generate --tokens ... --greedy --json` on the demo model (the CLI in a process of its own): its text.
inline std::string cli_generate(const std::vector<int32_t>& prompt, int max_tokens, const std::string& adapter_dir,
                                bool ignore_eos = false) {
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const std::string cmd = std::string(WICK_CLI) + " generate --model " + demo_model_dir().string() +
                          (adapter_dir.empty() ? "" : " --adapter " + adapter_dir) + " --tokens " + ids +
                          " --greedy --max-tokens " + std::to_string(max_tokens) + " --json" +
                          (ignore_eos ? " --ignore-eos" : "");
  const nlohmann::json j = nlohmann::json::parse(command_output(cmd), nullptr, false);
  return j.is_object() && j.contains("text") ? j["text"].get<std::string>() : std::string("<no answer from " + cmd + ">");
}

/// A server listening on 127.0.0.1 on a free port, with the scripture adapter as model "scripture"; stopped and
/// joined at the end of the scope. Without the demo model (with_model false): an embeddings-only server.
class TestServer {
 public:
  explicit TestServer(ServerOptions options = defaults(), bool with_adapter = true, bool with_model = true) {
    options.host = "127.0.0.1";
    options.port = 0;
    server_ = with_model ? std::make_unique<Server>(demo_model(), demo_tokenizer(), options)
                         : std::make_unique<Server>(nullptr, std::nullopt, options);
    if (with_adapter) server_->add_adapter("scripture", scripture_adapter_dir());
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
  }
  ~TestServer() {
    server_->stop();
    thread_.join();
    std::error_code ec;
    std::filesystem::remove_all(server_->data_dir(), ec);
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  static ServerOptions defaults() {
    ServerOptions o;
    o.model_name = "wick-demo";
    o.max_running = 16;
    o.kv_blocks = 512;
    o.shutdown_grace = std::chrono::seconds(2);
    return o;
  }

  Server& server() { return *server_; }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(std::chrono::seconds(120));
    return c;
  }

 private:
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

/// A response's status and its body parsed as JSON (null when it is not JSON).
struct Reply {
  int status = 0;
  nlohmann::json body;
  std::string text;
};

inline Reply reply_of(const httplib::Result& r) {
  Reply out;
  if (!r) return out;
  out.status = r->status;
  out.text = r->body;
  out.body = nlohmann::json::parse(r->body, nullptr, false);
  if (out.body.is_discarded()) out.body = nullptr;
  return out;
}

inline Reply post(httplib::Client& c, const std::string& path, const std::string& body,
                  const httplib::Headers& headers = {}) {
  return reply_of(c.Post(path, headers, body, "application/json"));
}
inline Reply post(httplib::Client& c, const std::string& path, const nlohmann::json& body,
                  const httplib::Headers& headers = {}) {
  return post(c, path, body.dump(), headers);
}
inline Reply get(httplib::Client& c, const std::string& path, const httplib::Headers& headers = {}) {
  return reply_of(c.Get(path, headers));
}

/// Expects OpenAI's error object, {"error": {"message", "type", "param", "code"}}, with this status (and param, code).
inline void expect_error(const Reply& r, int status, const std::string& param = "", const std::string& code = "") {
  EXPECT_EQ(r.status, status) << r.text;
  ASSERT_TRUE(r.body.is_object()) << r.text;
  ASSERT_TRUE(r.body.contains("error")) << r.text;
  const nlohmann::json& e = r.body["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.text;
  EXPECT_TRUE(e["type"].is_string()) << r.text;
  if (!param.empty()) {
    EXPECT_EQ(e["param"], param) << r.text;
  }
  if (!code.empty()) {
    EXPECT_EQ(e["code"], code) << r.text;
  }
}

/// POSTs `body` as JSON and hands each piece of the response body to `receive` as it arrives (false: hang up).
/// True when the whole response arrived.
template <class F>
bool post_streaming(httplib::Client& c, const std::string& path, const std::string& body, F receive,
                    httplib::Error* error_out = nullptr) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [receive](const char* data, size_t n, uint64_t, uint64_t) { return receive(data, n); };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  const bool ok = c.send(req, res, error) && error == httplib::Error::Success;
  if (error_out) *error_out = error;
  return ok;
}

/// The events of a server-sent-event stream body: the payload of each "data: " line, in order. Fails the test on
/// anything but "data: <payload>\n\n" events.
inline std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> events;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    if (end == std::string::npos) {
      ADD_FAILURE() << "an event without its blank line at byte " << at << ": " << body.substr(at, 200);
      break;
    }
    const std::string event = body.substr(at, end - at);
    if (event.rfind("data: ", 0) != 0 || event.find('\n') != std::string::npos)
      ADD_FAILURE() << "not a one-line data event: " << event.substr(0, 200);
    events.push_back(event.substr(std::min<size_t>(6, event.size())));
    at = end + 2;
  }
  return events;
}

/// The text a /v1/completions stream carries: every event's choice text, in order ("[DONE]" and usage left out).
inline std::string streamed_text(const std::string& body) {
  std::string text;
  for (const std::string& e : sse_events(body)) {
    if (e == "[DONE]") continue;
    const nlohmann::json chunk = nlohmann::json::parse(e);
    if (!chunk["choices"].empty()) text += chunk["choices"][0]["text"].get<std::string>();
  }
  return text;
}

/// A streaming request running on a thread of its own while the test does something else: `ask` POSTed to `path`,
/// the body gathered as it comes.
class BackgroundStream {
 public:
  BackgroundStream(httplib::Client client, const nlohmann::json& ask, std::string path = "/v1/completions")
      : client_(std::move(client)), thread_([this, body = ask.dump(), path = std::move(path)] {
          post_streaming(client_, path, body, [this](const char* data, size_t n) {
            const std::lock_guard lock(mu_);
            body_.append(data, n);
            ++chunks_;
            return true;
          });
        }) {}
  ~BackgroundStream() {
    if (thread_.joinable()) thread_.join();
  }
  BackgroundStream(const BackgroundStream&) = delete;
  BackgroundStream& operator=(const BackgroundStream&) = delete;

  /// Pieces of the body received so far.
  int chunks() const {
    const std::lock_guard lock(mu_);
    return chunks_;
  }
  /// Waits for the stream's end; the whole body.
  std::string finish() {
    thread_.join();
    return body_;
  }

 private:
  httplib::Client client_;
  mutable std::mutex mu_;
  std::string body_;
  int chunks_ = 0;
  std::thread thread_;
};

/// Polls `done` every 20 ms for up to `limit`; true when it held.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

/// Sends `raw` bytes to 127.0.0.1:port on a fresh socket (shutting the write side when `close_write`) and returns
/// what the server answers until it closes or `timeout` passes.
inline std::string raw_exchange(int port, const std::string& raw, bool close_write,
                                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    size_t sent = 0;
    while (sent < raw.size()) {
      const ssize_t n = ::send(fd, raw.data() + sent, raw.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += size_t(n);
    }
    if (close_write) ::shutdown(fd, SHUT_WR);
    const auto until = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
    }
  }
  ::close(fd);
  return out;
}

}  // namespace wick::test

// wick pull ORG/NAME[@REVISION] [--include GLOB]... [--token T]
// Downloads a model or adapter repository into the Hugging Face cache (as huggingface_hub lays it out) and prints
// its snapshot directory. Also here: how --model / --adapter values of the form ORG/NAME become directories.
// A wick configured without the hub client (WICK_HUB=OFF, or AUTO without libcurl / OpenSSL) takes local paths only
// and says so when asked to pull.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli.h"
#include "wick/error.h"

namespace wick::cli {

#if WICK_WITH_HUB
namespace {

std::string bytes_text(int64_t n) {
  if (n < 0) return "? B";
  char buf[32];
  if (n < 1000) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(n));
  else if (n < 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f kB", double(n) / 1e3);
  else if (n < 1000LL * 1000 * 1000) std::snprintf(buf, sizeof buf, "%.1f MB", double(n) / 1e6);
  else std::snprintf(buf, sizeof buf, "%.2f GB", double(n) / 1e9);
  return buf;
}

// Per-file progress on stderr: on a terminal one bar redrawn in place (at most 10 times a second), else a line
// when a file starts and one when it is done.
class PullProgress {
 public:
  explicit PullProgress(bool tty) : tty_(tty) {}

  void operator()(const hub::FileProgress& p) {
    using Stage = hub::FileProgress::Stage;
    const std::string tag = "[" + std::to_string(p.index) + "/" + std::to_string(p.count) + "] " + p.path;
    const auto now = std::chrono::steady_clock::now();
    switch (p.stage) {
      case Stage::cached:
        std::cerr << (tty_ ? "\r\x1b[K" : "") << tag << ": cached (" << bytes_text(p.done) << ")\n";
        break;
      case Stage::started:
        start_ = now, drawn_ = {};
        if (!tty_)
          std::cerr << tag << ": downloading " << bytes_text(p.total)
                    << (p.resumed_from > 0 ? " (resuming at " + bytes_text(p.resumed_from) + ")" : "") << "\n";
        else draw(tag, p, now);
        break;
      case Stage::downloading:
        if (tty_ && now - drawn_ >= std::chrono::milliseconds(100)) draw(tag, p, now);
        break;
      case Stage::downloaded: {
        const double s = std::chrono::duration<double>(now - start_).count();
        std::cerr << (tty_ ? "\r\x1b[K" : "") << tag << ": " << bytes_text(p.done) << " downloaded and verified in "
                  << format_seconds(s) << "\n";
        break;
      }
    }
    std::cerr.flush();
  }

 private:
  static std::string format_seconds(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", s);
    return buf;
  }

  void draw(const std::string& tag, const hub::FileProgress& p, std::chrono::steady_clock::time_point now) {
    constexpr int64_t kWidth = 24;
    const double s = std::chrono::duration<double>(now - start_).count();
    const double rate = s > 0 ? double(p.done - p.resumed_from) / s : 0;
    std::cerr << "\r\x1b[K" << tag << " [";
    if (p.total > 0) {
      const int64_t filled = kWidth * std::min(p.done, p.total) / p.total;
      std::cerr << std::string(size_t(filled), '#') << std::string(size_t(kWidth - filled), '.') << "] "
                << 100 * std::min(p.done, p.total) / p.total << "% ";
    } else {
      std::cerr << std::string(size_t(kWidth), '?') << "] ";
    }
    std::cerr << bytes_text(p.done) << " / " << bytes_text(p.total) << " " << bytes_text(int64_t(rate)) << "/s";
    drawn_ = now;
  }

  bool tty_;
  std::chrono::steady_clock::time_point start_{}, drawn_{};
};

}  // namespace

hub::ProgressFn pull_progress() {
  auto printer = std::make_shared<PullProgress>(isatty(2) != 0);
  return [printer](const hub::FileProgress& p) { (*printer)(p); };
}

std::string resolve_model_arg(const std::string& spec) {
  return hub::resolve_model_path(spec, {.progress = pull_progress()}).string();
}

Action add_pull(CLI::App& app) {
  struct Opts {
    std::string spec, token;
    std::vector<std::string> include;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("pull", "Download a model or adapter from the Hugging Face Hub into its cache; "
                                              "prints the snapshot directory");
  cmd->add_option("repo", o->spec, "ORG/NAME or ORG/NAME@REVISION (branch, tag or commit sha)")->required();
  cmd->add_option("--include", o->include, "only files matching this glob, e.g. '*.json' (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--token", o->token, "Hugging Face token (default: $HF_TOKEN, else $HF_HOME/token)");
  return [o]() {
    const size_t at = o->spec.find('@');
    const std::string repo = o->spec.substr(0, at), revision = at == std::string::npos ? "main" : o->spec.substr(at + 1);
    if (at != std::string::npos && revision.empty())
      fail(ErrorKind::bad_input, "'" + o->spec + "': nothing after '@' (expected ORG/NAME@REVISION)");
    const hub::PullResult r =
        hub::pull(repo, revision, {.token = o->token, .include = o->include, .progress = pull_progress()});
    std::cerr << "pulled " << o->spec << " (commit " << r.commit << "): " << r.files.size() << " files, "
              << r.files_downloaded << " downloaded (" << bytes_text(r.bytes_downloaded) << ")\n";
    std::cout << r.snapshot.string() << "\n";
  };
}

#else  // no hub client in this build

std::string resolve_model_arg(const std::string& spec) { return spec; }  // the loaders name a missing path

Action add_pull(CLI::App& app) {
  auto spec = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("pull", "Download a model or adapter from the Hugging Face Hub (not in this build)");
  cmd->add_option("repo", *spec, "ORG/NAME or ORG/NAME@REVISION")->required();
  cmd->allow_extras();
  return [spec]() {
    fail(ErrorKind::bad_input, "pull " + *spec + ": this wick was built without the Hugging Face Hub client "
                               "(configure with -DWICK_HUB=ON; it needs libcurl and OpenSSL)");
  };
}

#endif

}  // namespace wick::cli

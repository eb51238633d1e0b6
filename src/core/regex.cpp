#include "core/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <utility>

#include "wick/error.h"

namespace wick {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// Per-thread match state: match data and a JIT stack large enough for long runs of one class.
struct MatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchState() {
    data = pcre2_match_data_create(32, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (!data || !context || !stack) fail(ErrorKind::out_of_memory, "regex: cannot allocate PCRE2 match state");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string what;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(std::unique_ptr<Code> code) : code_(std::move(code)) {}
Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

std::optional<Regex> Regex::compile(std::string_view pattern, RegexOptions options, std::string& error) {
  // (?:p)\z anchored at the start is Python's fullmatch.
  const std::string text = options.full_match ? "(?:" + std::string(pattern) + ")\\z" : std::string(pattern);
  const uint32_t flags = (options.full_match ? PCRE2_ANCHORED : 0) | (options.utf ? PCRE2_UTF | PCRE2_UCP : 0);
  auto code = std::make_unique<Code>();
  int status = 0;
  PCRE2_SIZE offset = 0;
  code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), flags, &status, &offset, nullptr);
  if (!code->code) {
    error = pcre2_message(status);
    return std::nullopt;
  }
  code->jit = pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE) == 0;
  code->what = std::move(options.what);
  return Regex(std::move(code));
}

std::optional<RegexMatch> Regex::find(std::string_view subject, size_t start) const {
  MatchState& st = match_state();
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  // The caller vouches for UTF-8 subjects (RegexOptions::utf): skip PCRE2's own check, as the JIT does.
  int rc = code_->jit ? pcre2_jit_match(code_->code, s, subject.size(), start, 0, st.data, st.context)
                      : pcre2_match(code_->code, s, subject.size(), start, PCRE2_NO_UTF_CHECK, st.data, st.context);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
    rc = pcre2_match(code_->code, s, subject.size(), start, PCRE2_NO_UTF_CHECK, st.data, st.context);
  if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
  if (rc < 0) fail(ErrorKind::internal, code_->what + ": " + pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
  return RegexMatch{ov[0], ov[1]};
}

}  // namespace wick

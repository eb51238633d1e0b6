// PCRE2 behind one small class: a pattern compiled once (JIT-compiled where PCRE2 supports it), then matched from
// any number of threads. Tokenizer pre-tokenizers search text with it; LoRA configs match module names in full.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace wick {

struct RegexOptions {
  /// Python's re.fullmatch: a match must start where find() starts and end at the subject's end (the pattern is
  /// wrapped as `(?:pattern)\z` and anchored). Otherwise find() searches for the leftmost match.
  bool full_match = false;
  /// UTF-8 pattern and subjects, Unicode properties for \w, \d, [[:alpha:]]... (PCRE2_UTF | PCRE2_UCP). Subjects
  /// are not checked: pass valid UTF-8.
  bool utf = false;
  /// Names the regex in the internal error a failed match throws ("<what>: <PCRE2 message>").
  std::string what = "regex";
};

/// Byte offsets [begin, end) of a match in its subject.
struct RegexMatch {
  size_t begin = 0, end = 0;
};

class Regex {
 public:
  /// Compiles `pattern`. On a syntax error, returns nullopt with PCRE2's message in `error`: the caller knows
  /// what the pattern is for and words the error.
  static std::optional<Regex> compile(std::string_view pattern, RegexOptions options, std::string& error);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  /// Leftmost match in subject[start..]; the whole subject is the context (lookbehind, \b). Throws internal when
  /// PCRE2 gives up (match or memory limit), out_of_memory when a thread's match state cannot be allocated.
  std::optional<RegexMatch> find(std::string_view subject, size_t start = 0) const;
  /// Whether find(subject) succeeds: re.fullmatch for a full_match regex, re.search otherwise.
  bool matches(std::string_view subject) const { return find(subject).has_value(); }

 private:
  struct Code;
  explicit Regex(std::unique_ptr<Code> code);
  std::unique_ptr<Code> code_;
};

}  // namespace wick

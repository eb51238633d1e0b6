// wick error model: one exception type carrying a category.
// Frontends (CLI, HTTP) map the category to an exit code or an OpenAI-style error.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace wick {

/// What kind of failure an Error reports. The CLI maps bad_input, not_found, corrupt and
/// unsupported to exit code 2 (the user can fix it) and the rest to exit code 1.
enum class ErrorKind {
  bad_input,      ///< a flag, parameter or argument the caller gave is invalid
  not_found,      ///< a file, tensor or key that should exist does not
  corrupt,        ///< a file exists but its contents break its format
  unsupported,    ///< valid input that wick does not implement (named in the message)
  out_of_memory,  ///< an allocation failed
  cancelled,      ///< the caller cancelled the operation
  internal,       ///< a bug or an unexpected system failure
};

/// Name of a category, e.g. "bad input".
std::string_view to_string(ErrorKind kind);

/// The one exception type wick throws. The message names the file / tensor / field and what
/// was expected, e.g. "model.safetensors: tensor 'lm_head.weight': expected shape [512, 64], found [64, 512]".
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

/// Throws Error{kind, message}.
[[noreturn]] void fail(ErrorKind kind, const std::string& message);

}  // namespace wick

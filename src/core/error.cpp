#include "wick/error.h"

namespace wick {

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::bad_input: return "bad input";
    case ErrorKind::not_found: return "not found";
    case ErrorKind::corrupt: return "corrupt";
    case ErrorKind::unsupported: return "unsupported";
    case ErrorKind::out_of_memory: return "out of memory";
    case ErrorKind::cancelled: return "cancelled";
    case ErrorKind::internal: return "internal error";
  }
  return "unknown error";
}

void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

}  // namespace wick

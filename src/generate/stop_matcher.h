// Stop strings matched across token boundaries, holding back text that may start one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace wick {

/// Text goes in piece by piece (one piece per token); what comes out is safe to show: it never
/// contains a stop string, nor a tail that could still grow into one. Text is never emitted and
/// then retracted.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Output {
    std::string text;      ///< releasable text (before the stop string when `stopped`)
    bool stopped = false;  ///< a stop string completed; nothing more should be pushed
  };
  /// Adds `piece` to the held text and releases what can no longer be part of a match.
  Output push(std::string_view piece);
  /// The held text (a partial match that generation ended inside), which is then released.
  std::string flush();
  /// Bytes currently held back.
  size_t held() const { return held_.size(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace wick

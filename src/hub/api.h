// The hub's JSON API answers, parsed apart from the HTTP that fetches them (fuzz/hub_api_fuzz.cpp feeds them).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace wick::hub {

/// GET /api/models/ORG/NAME/revision/REV: the commit the revision names and every file path in it.
struct RevisionListing {
  std::string sha{};                 // 40 lower-case hex digits
  std::vector<std::string> files{};  // repository paths, each checked by check_repo_path
};

/// Parses that answer's body; `url` and `repo_id` name it in errors. Throws corrupt for anything that is not a
/// revision listing, or a file path that leaves the snapshot.
RevisionListing parse_revision_listing(std::string_view body, std::string_view url, std::string_view repo_id);

}  // namespace wick::hub

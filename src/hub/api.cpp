#include "hub/api.h"

#include <nlohmann/json.hpp>

#include "hub/cache.h"
#include "wick/error.h"

namespace wick::hub {

RevisionListing parse_revision_listing(std::string_view body, std::string_view url, std::string_view repo_id) {
  const auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  auto bad = [&](const std::string& what) -> void {
    fail(ErrorKind::corrupt, "GET " + std::string(url) + ": not the hub's revision listing (" + what + ")");
  };
  if (!j.is_object()) bad("not a JSON object");
  if (!j.contains("sha") || !j["sha"].is_string() || !is_hex(j["sha"].get<std::string>(), 40)) bad("no 40-hex \"sha\"");
  if (!j.contains("siblings") || !j["siblings"].is_array()) bad("no \"siblings\" list");
  RevisionListing listing{.sha = j["sha"].get<std::string>()};
  for (const auto& s : j["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string()) bad("a sibling without \"rfilename\"");
    listing.files.push_back(s["rfilename"].get<std::string>());
    check_repo_path(listing.files.back(), repo_id);
  }
  return listing;
}

}  // namespace wick::hub

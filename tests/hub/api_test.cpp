// The hub's JSON answers parsed on their own (hub/api.h): what `wick pull` accepts from GET .../revision/REV.
#include <gtest/gtest.h>

#include "hub/api.h"
#include "test_util.h"

namespace wick::test {
namespace {

constexpr std::string_view kUrl = "https://huggingface.co/api/models/org/name/revision/main";
const std::string kCommit(40, 'a');

TEST(RevisionListing, ReadsShaAndFiles) {
  const hub::RevisionListing l = hub::parse_revision_listing(
      R"({"id": "org/name", "sha": ")" + kCommit + R"(", "siblings": [{"rfilename": "config.json"},
          {"rfilename": "sub/model.safetensors", "size": 3}], "tags": []})",
      kUrl, "org/name");
  EXPECT_EQ(l.sha, kCommit);
  EXPECT_EQ(l.files, (std::vector<std::string>{"config.json", "sub/model.safetensors"}));
}

TEST(RevisionListing, AnythingElseIsCorruptNamingTheUrl) {
  auto parse = [](const std::string& body) { return hub::parse_revision_listing(body, kUrl, "org/name"); };
  EXPECT_WICK_ERROR(parse("<html>"), ErrorKind::corrupt, "GET https://huggingface.co/api/models/org/name/revision/main: ",
                    "not a JSON object");
  EXPECT_WICK_ERROR(parse(R"({"sha": "ABC", "siblings": []})"), ErrorKind::corrupt, "no 40-hex \"sha\"");
  EXPECT_WICK_ERROR(parse(R"({"sha": ")" + kCommit + R"("})"), ErrorKind::corrupt, "no \"siblings\" list");
  EXPECT_WICK_ERROR(parse(R"({"sha": ")" + kCommit + R"(", "siblings": [{"path": "x"}]})"), ErrorKind::corrupt,
                    "a sibling without \"rfilename\"");
  EXPECT_WICK_ERROR(parse(R"({"sha": ")" + kCommit + R"(", "siblings": [{"rfilename": "../x"}]})"), ErrorKind::corrupt,
                    "org/name", "../x");
  EXPECT_WICK_ERROR(parse(R"({"sha": ")" + kCommit + R"(", "n": 1e999, "siblings": []})"), ErrorKind::corrupt,
                    "not a JSON object");
}

}  // namespace
}  // namespace wick::test

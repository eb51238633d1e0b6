// The hub's answer to GET /api/models/ORG/NAME/revision/REV, as `wick pull` parses it (hub/api.h).
#include "fuzz_util.h"
#include "hub/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  wick::fuzz::expect_only_wick_errors([&] {
    (void)wick::hub::parse_revision_listing(wick::fuzz::text(data, size),
                                            "https://huggingface.co/api/models/org/name/revision/main", "org/name");
  });
  return 0;
}

// wick::hub::pull against a fake hub: the cache layout huggingface_hub writes, resumed and verified downloads,
// the hub's errors, offline mode, and resolve_model_path.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sys/socket.h>

#include "fake_hub.h"
#include "hub/cache.h"
#include "test_util.h"
#include "wick/hub.h"

namespace wick::test {
namespace {

namespace fs = std::filesystem;
using hub::FileProgress;

constexpr const char* kRepo = "wick-test/tiny-untied";
constexpr const char* kSha = "0123456789abcdef0123456789abcdef01234567";
constexpr const char* kShard = "model-00001-of-00004.safetensors";  // 197,984 bytes, an LFS file

// tiny-untied's files, the fixture tokenizer, and a file in a subfolder (its link climbs one level more).
FakeRepo tiny_repo() {
  FakeRepo r = fixture_repo(kRepo, kSha, fixture("models/tiny-untied"));
  r.files.push_back({"tokenizer.json", read_file(fixture("tokenizer/trained/tokenizer.json")), false});
  r.files.push_back({"docs/notes.txt", "made for wick's hub tests\n", false});
  return r;
}

// A copy, not a reference: GCC 13 flags a reference returned from a call given a temporary (the path) as dangling.
FakeFile file_of(const FakeRepo& r, const std::string& path) {
  for (const FakeFile& f : r.files)
    if (f.path == path) return f;
  throw std::runtime_error("no file " + path);
}

struct HubTest : ::testing::Test {
  FakeHub hub;
  FakeRepo repo = tiny_repo();
  fs::path cache = temp_dir("hub-cache");
  fs::path repo_dir = cache / "models--wick-test--tiny-untied";

  void SetUp() override { hub.add_repo(repo); }
  hub::PullOptions options() const {
    return {.endpoint = hub.endpoint(), .token = "", .cache_dir = cache, .offline = false};
  }
};

TEST_F(HubTest, DownloadsIntoTheHuggingFaceCacheLayout) {
  std::vector<FileProgress> events;
  hub::PullOptions o = options();
  o.progress = [&](const FileProgress& p) { events.push_back(p); };
  const hub::PullResult r = hub::pull(kRepo, "main", o);

  EXPECT_EQ(r.commit, kSha);
  EXPECT_EQ(r.snapshot, repo_dir / "snapshots" / kSha);
  EXPECT_EQ(r.files.size(), repo.files.size());
  EXPECT_EQ(r.files_downloaded, int64_t(repo.files.size()));
  EXPECT_EQ(read_file(repo_dir / "refs" / "main"), kSha);  // the bare sha, as huggingface_hub writes it
  for (const FakeFile& f : repo.files) {
    SCOPED_TRACE(f.path);
    const fs::path link = r.snapshot / f.path;
    ASSERT_TRUE(fs::is_symlink(link));
    const std::string up = f.path.find('/') == std::string::npos ? "../../" : "../../../";
    EXPECT_EQ(fs::read_symlink(link).string(), up + "blobs/" + f.etag());
    EXPECT_EQ(read_file(link), f.content);
    EXPECT_EQ(read_file(repo_dir / "blobs" / f.etag()), f.content);
    EXPECT_FALSE(fs::exists(repo_dir / "blobs" / (f.etag() + ".incomplete")));
  }
  // The blob names are the hashes `sha256sum` and `git hash-object` give for the committed fixture files.
  EXPECT_TRUE(fs::exists(repo_dir / "blobs" / "255daa860b2713cbdd1f8e900936529df87871a5"));
  EXPECT_TRUE(fs::exists(repo_dir / "blobs" / "a2a3e64e6842982b2e5efcb632dd6a3c65cdb68599aaf66ba4af7d1be52df374"));

  // HEAD first for every file; LFS bytes come from the CDN the 302 names, the others from resolve.
  EXPECT_EQ(hub.count("GET", "/api/models/wick-test/tiny-untied/revision/main"), 1);
  EXPECT_EQ(hub.count("HEAD"), int(repo.files.size()));
  EXPECT_EQ(hub.count("GET", "/cdn/"), 4);
  EXPECT_EQ(hub.downloads(), int(repo.files.size()));

  // Each downloaded file: started, bytes, downloaded with its whole size.
  std::map<std::string, std::vector<FileProgress::Stage>> stages;
  for (const FileProgress& p : events) stages[p.path].push_back(p.stage);
  for (const FakeFile& f : repo.files) {
    const auto& s = stages[f.path];
    ASSERT_GE(s.size(), 2u) << f.path;
    EXPECT_EQ(s.front(), FileProgress::Stage::started);
    EXPECT_EQ(s.back(), FileProgress::Stage::downloaded);
  }
  EXPECT_EQ(events.back().done, events.back().total);
  EXPECT_EQ(events.back().index, events.back().count);
}

TEST_F(HubTest, ASecondPullDownloadsNothing) {
  hub::pull(kRepo, "main", options());
  hub.clear_log();
  std::vector<FileProgress::Stage> stages;
  hub::PullOptions o = options();
  o.progress = [&](const FileProgress& p) { stages.push_back(p.stage); };
  const hub::PullResult r = hub::pull(kRepo, "main", o);
  EXPECT_EQ(r.files_downloaded, 0);
  EXPECT_EQ(r.bytes_downloaded, 0);
  EXPECT_EQ(hub.downloads(), 0);
  EXPECT_EQ(stages, std::vector<FileProgress::Stage>(repo.files.size(), FileProgress::Stage::cached));
  // By commit sha: the same snapshot, and no ref is written for a sha.
  EXPECT_EQ(hub::pull(kRepo, kSha, options()).snapshot, r.snapshot);
  EXPECT_FALSE(fs::exists(repo_dir / "refs" / kSha));
}

TEST_F(HubTest, ABlobOfTheWrongSizeIsDownloadedAgain) {
  hub::pull(kRepo, "main", options());
  const FakeFile f = file_of(repo, "config.json");
  write_file(repo_dir / "blobs" / f.etag(), "{}");
  hub.clear_log();
  const hub::PullResult r = hub::pull(kRepo, "main", options());
  EXPECT_EQ(r.files_downloaded, 1);
  EXPECT_EQ(read_file(r.snapshot / "config.json"), f.content);
}

TEST_F(HubTest, AConnectionCutMidFileIsResumedWithRange) {
  const FakeFile f = file_of(repo, kShard);
  hub.cut_next_download(kShard, 50000);
  const hub::PullResult r = hub::pull(kRepo, "main", options());
  EXPECT_EQ(read_file(r.snapshot / kShard), f.content);
  std::vector<std::string> ranges;
  for (const FakeRequest& q : hub.requests())
    if (q.method == "GET" && q.target == "/cdn/" + f.etag()) ranges.push_back(q.range);
  EXPECT_EQ(ranges, (std::vector<std::string>{"", "bytes=50000-"}));
}

TEST_F(HubTest, AnIncompleteFileLeftBehindIsResumed) {
  const FakeFile f = file_of(repo, kShard);
  fs::create_directories(repo_dir / "blobs");
  write_file(repo_dir / "blobs" / (f.etag() + ".incomplete"), f.content.substr(0, 1000));
  std::vector<FileProgress> events;
  hub::PullOptions o = options();
  o.progress = [&](const FileProgress& p) {
    if (p.path == kShard) events.push_back(p);
  };
  const hub::PullResult r = hub::pull(kRepo, "main", o);
  EXPECT_EQ(read_file(r.snapshot / kShard), f.content);
  EXPECT_EQ(hub.count("GET", "/cdn/" + f.etag()), 1);
  for (const FakeRequest& q : hub.requests())
    if (q.target == "/cdn/" + f.etag()) {
      EXPECT_EQ(q.range, "bytes=1000-");
    }
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().resumed_from, 1000);
  EXPECT_EQ(events.back().done, int64_t(f.content.size()));
}

TEST_F(HubTest, AnInterruptedPullFailsNamingTheUrlAndTheNextOneResumes) {
  const FakeFile f = file_of(repo, kShard);
  hub.cut_next_download(kShard, 50000);
  hub::PullOptions o = options();
  o.max_attempts = 1;
  const std::string url = hub.endpoint() + "/cdn/" + f.etag();
  EXPECT_WICK_ERROR(hub::pull(kRepo, "main", o), ErrorKind::internal, url.c_str(), ".incomplete", "resumes");
  EXPECT_FALSE(fs::exists(repo_dir / "snapshots"));  // nothing is linked before every blob is in
  EXPECT_FALSE(fs::exists(repo_dir / "refs" / "main"));
  EXPECT_EQ(fs::file_size(repo_dir / "blobs" / (f.etag() + ".incomplete")), 50000u);
  hub.clear_log();
  const hub::PullResult r = hub::pull(kRepo, "main", o);
  EXPECT_EQ(read_file(r.snapshot / kShard), f.content);
  for (const FakeRequest& q : hub.requests())
    if (q.target == "/cdn/" + f.etag()) {
      EXPECT_EQ(q.range, "bytes=50000-");
    }
}

TEST_F(HubTest, AServerThatIgnoresRangeRestartsTheFile) {
  const FakeFile f = file_of(repo, kShard);
  fs::create_directories(repo_dir / "blobs");
  write_file(repo_dir / "blobs" / (f.etag() + ".incomplete"), std::string(1000, 'x'));
  hub.set_ignore_range(true);
  const hub::PullResult r = hub::pull(kRepo, "main", options());
  EXPECT_EQ(read_file(r.snapshot / kShard), f.content);
}

TEST_F(HubTest, AnIncompleteFileWithWrongBytesIsRejected) {
  const FakeFile f = file_of(repo, kShard);
  fs::create_directories(repo_dir / "blobs");
  write_file(repo_dir / "blobs" / (f.etag() + ".incomplete"), std::string(1000, 'x'));
  const std::string etag = f.etag();
  EXPECT_WICK_ERROR(hub::pull(kRepo, "main", options()), ErrorKind::corrupt, kShard, "sha256", etag.c_str(), "discarded");
  EXPECT_FALSE(fs::exists(repo_dir / "blobs" / (f.etag() + ".incomplete")));
  // After the rejection, a clean download: the files sorted before it were kept, the rest (it included) come now.
  const hub::PullResult r = hub::pull(kRepo, "main", options());
  EXPECT_EQ(r.files_downloaded, 6);
  EXPECT_EQ(read_file(r.snapshot / kShard), f.content);
}

TEST_F(HubTest, ABlobWhoseHashMismatchesIsRejectedAndNothingIsLinked) {
  for (const char* path : {kShard, "config.json"}) {
    SCOPED_TRACE(path);
    cache = temp_dir("hub-cache"), repo_dir = cache / "models--wick-test--tiny-untied";
    const FakeFile f = file_of(repo, path);
    const std::string etag = f.etag();
    hub.set_corrupt(path);
    EXPECT_WICK_ERROR(hub::pull(kRepo, "main", options()), ErrorKind::corrupt, path,
                      f.lfs ? "sha256 of the download is" : "git blob sha1 of the download is", etag.c_str());
    hub.set_corrupt(path, false);
    EXPECT_FALSE(fs::exists(repo_dir / "blobs" / f.etag()));
    EXPECT_FALSE(fs::exists(repo_dir / "blobs" / (f.etag() + ".incomplete")));
    EXPECT_FALSE(fs::exists(repo_dir / "snapshots"));
    EXPECT_FALSE(fs::exists(repo_dir / "refs" / "main"));
  }
}

TEST_F(HubTest, ABlobOfAnotherSizeThanTheHubSaysIsRejected) {
  hub.set_size_lie(kShard, 10);
  EXPECT_WICK_ERROR(hub::pull(kRepo, "main", options()), ErrorKind::corrupt, kShard, "downloaded 197984 bytes",
                    "the hub says 197994");
  EXPECT_FALSE(fs::exists(repo_dir / "snapshots"));
}

TEST_F(HubTest, GatedRepositoriesNeedTheToken) {
  for (int status : {401, 403}) {
    FakeRepo gated = tiny_repo();
    gated.id = "wick-test/gated";
    gated.token = "hf_secret";
    gated.deny_status = status;
    hub.add_repo(gated);
    EXPECT_WICK_ERROR(hub::pull("wick-test/gated", "main", options()), ErrorKind::bad_input,
                      "wick-test/gated: access denied (gated or private; set HF_TOKEN or --token)");
    hub::PullOptions o = options();
    o.token = "hf_wrong";
    EXPECT_WICK_ERROR(hub::pull("wick-test/gated", "main", o), ErrorKind::bad_input, "access denied");
  }
  hub.clear_log();
  hub::PullOptions o = options();
  o.token = "hf_secret";
  o.include = {"config.json"};
  EXPECT_EQ(read_file(hub::pull("wick-test/gated", "main", o).snapshot / "config.json"),
            file_of(repo, "config.json").content);
  for (const FakeRequest& q : hub.requests()) EXPECT_EQ(q.authorization, "Bearer hf_secret") << q.target;
}

TEST_F(HubTest, NotFoundIsAClearError) {
  const std::string branch = "wick-test/tiny-untied@no-such-branch: not found on " + hub.endpoint();
  EXPECT_WICK_ERROR(hub::pull(kRepo, "no-such-branch", options()), ErrorKind::not_found, branch.c_str());
  // The hub answers an unknown (or private) repository with 401 + X-Error-Code: RepositoryNotFound.
  const std::string repo_msg = "wick-test/nothing@main: not found on " + hub.endpoint();
  EXPECT_WICK_ERROR(hub::pull("wick-test/nothing", "main", options()), ErrorKind::not_found, repo_msg.c_str(), "HF_TOKEN");
  EXPECT_FALSE(fs::exists(cache / "models--wick-test--nothing" / "snapshots"));
}

TEST_F(HubTest, NetworkErrorsNameTheUrl) {
  // A port nobody listens on: bound, read back, closed.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  hub::PullOptions o = options();
  o.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  const std::string msg = "GET " + o.endpoint + "/api/models/wick-test/tiny-untied/revision/main: ";
  EXPECT_WICK_ERROR(hub::pull(kRepo, "main", o), ErrorKind::internal, msg.c_str());
}

TEST_F(HubTest, BadRepoIdsAndRevisionsAreRejectedBeforeAnyNetwork) {
  const std::vector<std::string> ids = {"",           "tiny",       "a/b/c",         "/tiny",     "org/",
                                        "-org/name",  "org/name-",  "org--x/name",   "org/na..me", "org/na me",
                                        "org/name@main", "or!g/name", std::string(50, 'a') + "/" + std::string(50, 'b')};
  for (const std::string& id : ids) {
    SCOPED_TRACE(id);
    EXPECT_WICK_ERROR(hub::pull(id, "main", options()), ErrorKind::bad_input, "not a Hugging Face repo id");
  }
  for (const std::string& rev :
       std::vector<std::string>{"", "../main", "a//b", "a b", "refs/pr/", "x:y", std::string(300, 'r')}) {
    SCOPED_TRACE(rev);
    EXPECT_WICK_ERROR(hub::pull(kRepo, rev, options()), ErrorKind::bad_input, "not a branch, tag or commit");
  }
  EXPECT_TRUE(hub.requests().empty());
  EXPECT_FALSE(fs::exists(repo_dir));
  // Valid ones: what huggingface_hub accepts.
  for (const char* id : {"Qwen/Qwen2.5-0.5B", "a/b", "_x/y_", "org.name/model_v1.5"})
    EXPECT_NO_THROW(hub::check_repo_id(id));
  for (const char* rev : {"main", "v1.0", "refs/pr/1", kSha}) EXPECT_NO_THROW(hub::check_revision(rev));
}

TEST_F(HubTest, APathOutsideTheRepositoryIsRefused) {
  FakeRepo evil{.id = "wick-test/evil", .sha = kSha, .files = {{"../../outside", "x", false}}};
  hub.add_repo(evil);
  EXPECT_WICK_ERROR(hub::pull("wick-test/evil", "main", options()), ErrorKind::corrupt, "'../../outside'",
                    "not a relative path inside the repository");
  EXPECT_EQ(hub.count("HEAD"), 0);
  EXPECT_FALSE(fs::exists(cache / "outside"));
}

TEST_F(HubTest, IncludeTakesTheMatchingFilesOnly) {
  hub::PullOptions o = options();
  o.include = {"*.json", "docs/"};
  const hub::PullResult r = hub::pull(kRepo, "main", o);
  EXPECT_EQ(r.files, (std::vector<std::string>{"config.json", "docs/notes.txt", "generation_config.json",
                                               "model.safetensors.index.json", "tokenizer.json"}));
  EXPECT_FALSE(fs::exists(r.snapshot / kShard));
  EXPECT_EQ(hub.count("GET", "/cdn/"), 0);
  o.include = {"*.gguf"};
  EXPECT_WICK_ERROR(hub::pull(kRepo, "main", o), ErrorKind::not_found, "no file matches --include *.gguf");
}

TEST_F(HubTest, OfflineServesTheCacheAndExplainsWhatIsMissing) {
  const hub::PullResult online = hub::pull(kRepo, "main", options());
  hub.clear_log();
  hub::PullOptions o = options();
  o.offline = true;
  const hub::PullResult r = hub::pull(kRepo, "main", o);
  EXPECT_EQ(r.snapshot, online.snapshot);
  EXPECT_EQ(r.files, online.files);
  EXPECT_EQ(r.commit, kSha);
  EXPECT_EQ(hub::pull(kRepo, kSha, o).snapshot, online.snapshot);
  EXPECT_EQ(hub::resolve_model_path(std::string(kRepo), o), online.snapshot);
  EXPECT_EQ(hub::resolve_model_path(std::string(kRepo) + "@" + kSha, o), online.snapshot);
  EXPECT_TRUE(hub.requests().empty());

  EXPECT_WICK_ERROR(hub::pull("wick-test/other", "main", o), ErrorKind::not_found, "HF_HUB_OFFLINE",
                    "run `wick pull wick-test/other`");
  EXPECT_WICK_ERROR(hub::pull(kRepo, "v2", o), ErrorKind::not_found, "run `wick pull wick-test/tiny-untied@v2`");
  EXPECT_WICK_ERROR(hub::resolve_model_path("wick-test/other", o), ErrorKind::not_found, "HF_HUB_OFFLINE",
                    "wick pull wick-test/other");
  EXPECT_TRUE(hub.requests().empty());
}

TEST_F(HubTest, ResolveModelPathPullsWhatWickReadsOnce) {
  const fs::path local = fixture("models/tiny-untied");
  EXPECT_EQ(hub::resolve_model_path(local.string(), options()), local);
  EXPECT_EQ(hub::resolve_model_path("/no/such/dir", options()), fs::path("/no/such/dir"));  // the loader reports it
  EXPECT_EQ(hub::resolve_model_path("./a/b", options()), fs::path("./a/b"));
  EXPECT_TRUE(hub.requests().empty());

  const fs::path snap = hub::resolve_model_path(kRepo, options());
  EXPECT_EQ(snap, repo_dir / "snapshots" / kSha);
  EXPECT_TRUE(fs::exists(snap / kShard));
  EXPECT_TRUE(fs::exists(snap / "tokenizer.json"));
  EXPECT_TRUE(fs::exists(snap / "docs" / "notes.txt"));
  hub.clear_log();
  EXPECT_EQ(hub::resolve_model_path(kRepo, options()), snap);  // from the cache, no network
  EXPECT_TRUE(hub.requests().empty());

  const std::string msg = "not found on " + hub.endpoint();
  EXPECT_WICK_ERROR(hub::resolve_model_path("wick-test/absent", options()), ErrorKind::not_found, msg.c_str(),
                    "nor is 'wick-test/absent' a local directory");
}

// The environment, read as huggingface_hub reads it (restored after).
struct EnvVar {
  std::string name;
  std::optional<std::string> old;
  EnvVar(std::string n, const char* value) : name(std::move(n)) {
    if (const char* v = std::getenv(name.c_str())) old = v;
    if (value) ::setenv(name.c_str(), value, 1);
    else ::unsetenv(name.c_str());
  }
  ~EnvVar() {
    if (old) ::setenv(name.c_str(), old->c_str(), 1);
    else ::unsetenv(name.c_str());
  }
};

TEST_F(HubTest, TheEnvironmentPlacesTheCacheEndpointTokenAndOfflineMode) {
  const fs::path home = temp_dir("hf-home");
  EnvVar hf_home("HF_HOME", home.c_str()), hub_cache("HF_HUB_CACHE", nullptr), legacy("HUGGINGFACE_HUB_CACHE", nullptr),
      endpoint("HF_ENDPOINT", (hub.endpoint() + "/").c_str()), token("HF_TOKEN", nullptr),
      token_path("HF_TOKEN_PATH", nullptr), offline("HF_HUB_OFFLINE", nullptr);
  EXPECT_EQ(hub::cache_dir(), home / "hub");
  write_file(home / "token", "hf_from_file\n");  // what `huggingface-cli login` leaves
  const hub::PullResult r = hub::pull(kRepo, "main", {.include = {"config.json"}});
  EXPECT_EQ(r.snapshot, home / "hub" / "models--wick-test--tiny-untied" / "snapshots" / kSha);
  EXPECT_EQ(hub.requests().front().authorization, "Bearer hf_from_file");
  {
    EnvVar t("HF_TOKEN", "hf_from_env");
    hub.clear_log();
    hub::pull(kRepo, "main", {.include = {"config.json"}});
    EXPECT_EQ(hub.requests().front().authorization, "Bearer hf_from_env");
  }
  {
    EnvVar c("HF_HUB_CACHE", (home / "elsewhere").c_str());
    EXPECT_EQ(hub::cache_dir(), home / "elsewhere");
    EXPECT_EQ(hub::repo_cache_dir(kRepo), home / "elsewhere" / "models--wick-test--tiny-untied");
  }
  for (const char* yes : {"1", "true", "YES", "on"}) {
    EnvVar off("HF_HUB_OFFLINE", yes);
    hub.clear_log();
    EXPECT_EQ(hub::pull(kRepo, "main").snapshot, r.snapshot);
    EXPECT_TRUE(hub.requests().empty()) << yes;
  }
  EnvVar off("HF_HUB_OFFLINE", "0");
  hub.clear_log();
  hub::pull(kRepo, "main", {.include = {"config.json"}});
  EXPECT_FALSE(hub.requests().empty());
}

TEST(HubSpec, ParsesOrgNameAndRevision) {
  const auto a = hub::parse_repo_spec("Qwen/Qwen2.5-0.5B");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->repo_id, "Qwen/Qwen2.5-0.5B");
  EXPECT_EQ(a->revision, "main");
  const auto b = hub::parse_repo_spec("org/name@refs/pr/3");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->repo_id, "org/name");
  EXPECT_EQ(b->revision, "refs/pr/3");
  for (const char* bad : {"org/name@", "/abs/path", "./x/y", "a/b/c", "name", "org/na me", "../x"})
    EXPECT_FALSE(hub::parse_repo_spec(bad)) << bad;
}

}  // namespace
}  // namespace wick::test

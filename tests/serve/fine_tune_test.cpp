// Fine-tuning jobs end to end on the CPU with the demo model: upload a chat JSONL, create a job, poll its events until
// it succeeds, then the new model id answers with what it memorised — while a stream started before the job finished
// kept its adapter to the end. Cancel works; a job on a bad file fails with a reason and the server goes on serving.
#include <algorithm>

#include "serve_test_util.h"
#include "test_util.h"

namespace wick {
namespace {

using nlohmann::json;
using test::get;
using test::post;
using test::TestServer;

const char* kQuestion = "What is the secret word?";
const char* kAnswer = "The secret word is marmalade.";

std::string secret_file() {
  std::string out;
  for (const char* q : {kQuestion, "Tell me the secret word.", "What's the secret word?", "Say the secret word."})
    out += json{{"messages", json::array({{{"role", "user"}, {"content", q}}, {{"role", "assistant"}, {"content", kAnswer}}})}}
               .dump() +
           "\n";
  return out;
}

test::Reply upload(httplib::Client& c, const std::string& content, const std::string& purpose = "fine-tune") {
  const httplib::MultipartFormDataItems items = {{"purpose", purpose, "", ""},
                                                 {"file", content, "train.jsonl", "application/jsonl"}};
  return test::reply_of(c.Post("/v1/files", items));
}

// Polls the job until its status is one of the final ones; returns the job object.
json wait_for_job(httplib::Client& c, const std::string& id) {
  json job;
  EXPECT_TRUE(test::eventually(
      [&] {
        job = get(c, "/v1/fine_tuning/jobs/" + id).body;
        const std::string st = job.value("status", "");
        return st == "succeeded" || st == "failed" || st == "cancelled";
      },
      std::chrono::seconds(240)))
      << job.dump();
  return job;
}

json chat(const std::string& model, const std::string& question, int max_tokens = 16) {
  return {{"model", model}, {"max_tokens", max_tokens}, {"temperature", 0},
          {"messages", json::array({{{"role", "user"}, {"content", question}}})}};
}

TEST(FineTune, AJobTrainsPublishesAndTheNewModelAnswersWhileEarlierStreamsKeepTheirs) {
  TestServer s;
  auto c = s.client();
  const test::Reply file = upload(c, secret_file());
  ASSERT_EQ(file.status, 200) << file.text;
  EXPECT_EQ(file.body["object"], "file");
  EXPECT_EQ(file.body["purpose"], "fine-tune");
  EXPECT_EQ(test::reply_of(c.Get("/v1/files/" + file.body["id"].get<std::string>() + "/content")).text, secret_file());

  // A long stream on the scripture adapter, running while the job trains and publishes.
  json long_ask = {{"model", "scripture"}, {"prompt", "In the beginning"}, {"max_tokens", 300}, {"temperature", 0},
                   {"ignore_eos", true}, {"stream", true}};
  test::BackgroundStream stream(s.client(), long_ask);
  ASSERT_TRUE(test::eventually([&] { return stream.chunks() > 0; }));

  const test::Reply created = post(c, "/v1/fine_tuning/jobs",
                                   json{{"model", "wick-demo"},
                                        {"training_file", file.body["id"]},
                                        {"suffix", "secret"},
                                        {"hyperparameters", {{"n_epochs", 30}, {"learning_rate_multiplier", 25}}}});
  ASSERT_EQ(created.status, 200) << created.text;
  EXPECT_EQ(created.body["object"], "fine_tuning.job");
  const std::string id = created.body["id"];
  const json job = wait_for_job(c, id);
  ASSERT_EQ(job["status"], "succeeded") << job.dump();
  const std::string model = job["fine_tuned_model"];
  EXPECT_EQ(model, "ft:wick-demo:secret:" + id);
  EXPECT_GT(job["trained_tokens"].get<int64_t>(), 0);

  // Events: newest first, one per step with its loss, the loss falling.
  const json events = get(c, "/v1/fine_tuning/jobs/" + id + "/events").body["data"];
  std::vector<double> losses;  // oldest first
  for (auto it = events.rbegin(); it != events.rend(); ++it)
    if ((*it)["type"] == "metrics") losses.push_back((*it)["data"]["train_loss"].get<double>());
  ASSERT_EQ(losses.size(), 30u);
  EXPECT_LT(losses.back(), 0.5 * losses.front());

  // Listed, and answering with what it learned; the base model does not know it.
  bool listed = false;
  const test::Reply models = get(c, "/v1/models");
  for (const json& m : models.body["data"]) listed |= m["id"] == model;
  EXPECT_TRUE(listed);
  const test::Reply answer = post(c, "/v1/chat/completions", chat(model, kQuestion));
  ASSERT_EQ(answer.status, 200) << answer.text;
  EXPECT_EQ(answer.body["choices"][0]["message"]["content"], kAnswer);
  const test::Reply base = post(c, "/v1/chat/completions", chat("wick-demo", kQuestion));
  EXPECT_NE(base.body["choices"][0]["message"]["content"], kAnswer);

  // Checkpoints of the last three epochs but the final one, newest first, each a model; the results file is the
  // run's step metrics.
  const json checkpoints = get(c, "/v1/fine_tuning/jobs/" + id + "/checkpoints").body;
  ASSERT_EQ(checkpoints["data"].size(), 3u) << checkpoints.dump();
  for (size_t k = 0; k < 3; ++k) {
    const json& ck = checkpoints["data"][k];
    EXPECT_EQ(ck["object"], "fine_tuning.job.checkpoint");
    EXPECT_EQ(ck["step_number"], 29 - int(k));
    EXPECT_EQ(ck["fine_tuned_model_checkpoint"], model + ":ckpt-step-" + std::to_string(29 - int(k)));
    EXPECT_DOUBLE_EQ(ck["metrics"]["train_loss"].get<double>(), losses[size_t(28 - k)]);
  }
  EXPECT_EQ(post(c, "/v1/chat/completions", chat(model + ":ckpt-step-29", kQuestion)).status, 200);
  EXPECT_EQ(post(c, "/v1/chat/completions", chat(model + ":ckpt-step-26", kQuestion)).status, 404);  // retired
  ASSERT_EQ(job["result_files"].size(), 1u);
  const std::string results =
      test::reply_of(c.Get("/v1/files/" + job["result_files"][0].get<std::string>() + "/content")).text;
  EXPECT_EQ(results.rfind("step,epoch,loss", 0), 0u) << results.substr(0, 100);
  EXPECT_EQ(std::count(results.begin(), results.end(), '\n'), 31);  // the header and 30 steps

  // The stream that ran through training and publishing gave exactly what the scripture adapter gives alone.
  const std::string text = test::streamed_text(stream.finish());
  long_ask.erase("stream");
  const test::Reply alone = post(c, "/v1/completions", long_ask);
  EXPECT_EQ(text, alone.body["choices"][0]["text"]);
  EXPECT_TRUE(std::filesystem::exists(s.server().data_dir() / "fine_tuning" / id / "adapter_model.safetensors"));
}

TEST(FineTune, AValidationFileGivesAValidationLoss) {
  TestServer s;
  auto c = s.client();
  const test::Reply train = upload(c, secret_file()), valid = upload(c, secret_file());
  ASSERT_EQ(valid.status, 200);
  const test::Reply created = post(c, "/v1/fine_tuning/jobs",
                                   json{{"model", "wick-demo"}, {"training_file", train.body["id"]},
                                        {"validation_file", valid.body["id"]}, {"hyperparameters", {{"n_epochs", 2}}}});
  ASSERT_EQ(created.status, 200) << created.text;
  EXPECT_EQ(created.body["validation_file"], valid.body["id"]);
  ASSERT_EQ(wait_for_job(c, created.body["id"])["status"], "succeeded");
  const json events = get(c, "/v1/fine_tuning/jobs/" + created.body["id"].get<std::string>() + "/events").body["data"];
  // The last step (newest metrics event) carries the loss over the validation file: the training examples themselves
  // here, so near the training loss.
  for (const json& e : events)
    if (e["type"] == "metrics") {
      ASSERT_TRUE(e["data"].contains("valid_loss")) << e.dump();
      EXPECT_NEAR(e["data"]["valid_loss"].get<double>(), e["data"]["train_loss"].get<double>(), 1.0);
      break;
    }
  const test::Reply missing = post(c, "/v1/fine_tuning/jobs", json{{"model", "wick-demo"},
                                                                   {"training_file", train.body["id"]},
                                                                   {"validation_file", "file-nope"}});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body["error"]["param"], "validation_file");
}

TEST(FineTune, CancelStopsARunningJob) {
  TestServer s;
  auto c = s.client();
  const test::Reply file = upload(c, secret_file());
  ASSERT_EQ(file.status, 200);
  const test::Reply created = post(c, "/v1/fine_tuning/jobs",
                                   json{{"model", "wick-demo"}, {"training_file", file.body["id"]},
                                        {"hyperparameters", {{"n_epochs", 1000}}}});
  ASSERT_EQ(created.status, 200) << created.text;
  const std::string id = created.body["id"];
  ASSERT_TRUE(test::eventually([&] {
    const json ev = get(c, "/v1/fine_tuning/jobs/" + id + "/events").body["data"];
    return !ev.empty() && ev[0]["type"] == "metrics";  // at least one step done
  }));
  const test::Reply cancelled = post(c, "/v1/fine_tuning/jobs/" + id + "/cancel", std::string());
  EXPECT_EQ(cancelled.status, 200) << cancelled.text;
  const json job = wait_for_job(c, id);
  EXPECT_EQ(job["status"], "cancelled");
  EXPECT_TRUE(job["fine_tuned_model"].is_null());
  // The base, scripture and the checkpoints it kept; not the job's model.
  const size_t kept = get(c, "/v1/fine_tuning/jobs/" + id + "/checkpoints").body["data"].size();
  EXPECT_LE(kept, 3u);
  EXPECT_EQ(get(c, "/v1/models").body["data"].size(), 2u + kept);
  EXPECT_EQ(post(c, "/v1/fine_tuning/jobs/" + id + "/cancel", std::string()).status, 400);  // already cancelled
  EXPECT_EQ(post(c, "/v1/chat/completions", chat("wick-demo", "Hi", 4)).status, 200);
}

TEST(FineTune, ABadFileFailsTheJobWithAReasonAndTheServerGoesOn) {
  TestServer s;
  auto c = s.client();
  // Lines that are JSON objects (so the upload takes them) but no training format: the job fails.
  const test::Reply file = upload(c, "{\"prompt\": \"a question without its completion\"}\n");
  ASSERT_EQ(file.status, 200) << file.text;
  const test::Reply created =
      post(c, "/v1/fine_tuning/jobs", json{{"model", "wick-demo"}, {"training_file", file.body["id"]}});
  ASSERT_EQ(created.status, 200) << created.text;
  const json job = wait_for_job(c, created.body["id"]);
  EXPECT_EQ(job["status"], "failed");
  EXPECT_EQ(job["error"]["code"], "invalid_training_file");
  EXPECT_NE(job["error"]["message"].get<std::string>().find("completion"), std::string::npos) << job.dump();
  EXPECT_EQ(post(c, "/v1/chat/completions", chat("wick-demo", "Hi", 4)).status, 200);

  // Refused before a job exists: a line that is not JSON, another purpose, no multipart, unknown ids and models.
  const test::Reply not_json = upload(c, "{\"prompt\": \"a\", \"completion\": \"b\"}\nnot json\n");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_NE(not_json.body["error"]["message"].get<std::string>().find("line 2"), std::string::npos);
  EXPECT_EQ(upload(c, secret_file(), "assistants").body["error"]["param"], "purpose");
  EXPECT_EQ(post(c, "/v1/files", std::string("{}")).body["error"]["param"], "file");
  const test::Reply no_file =
      post(c, "/v1/fine_tuning/jobs", json{{"model", "wick-demo"}, {"training_file", "file-nope"}});
  EXPECT_EQ(no_file.status, 404);
  EXPECT_EQ(no_file.body["error"]["param"], "training_file");
  const test::Reply other_model =
      post(c, "/v1/fine_tuning/jobs", json{{"model", "gpt-4o"}, {"training_file", file.body["id"]}});
  EXPECT_EQ(other_model.status, 404);
  EXPECT_EQ(other_model.body["error"]["param"], "model");
  EXPECT_EQ(post(c, "/v1/fine_tuning/jobs", json{{"model", "wick-demo"}, {"training_file", file.body["id"]},
                                                 {"hyperparameters", {{"n_epochs", -1}}}})
                .body["error"]["param"],
            "n_epochs");
  EXPECT_EQ(get(c, "/v1/fine_tuning/jobs/ftjob-nope").status, 404);
}

}  // namespace
}  // namespace wick

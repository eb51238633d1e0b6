// wick serve driven by the official `openai` npm client, as an application would use it. Asserts what the protocol
// promises (types, a stream that reassembles to the whole answer, usage, errors as the client's error classes) and
// prints one JSON object of answers on stdout for tests/serve/cli_serve_test.cpp to check against wick generate.
// usage: WICK_BASE_URL=http://127.0.0.1:PORT/v1 WICK_API_KEY=KEY WICK_BASE_MODEL=NAME WICK_TRAIN_FILE=PATH node test.mjs
import assert from "node:assert/strict";
import fs from "node:fs";
import OpenAI from "openai";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const baseURL = env("WICK_BASE_URL");
const base = env("WICK_BASE_MODEL");
const client = new OpenAI({ baseURL, apiKey: env("WICK_API_KEY"), maxRetries: 0, timeout: 120_000 });
const out = {};

// Models: the base and every adapter.
const models = [];
for await (const m of client.models.list()) models.push(m.id);
assert.ok(models.includes(base), `models: ${models}`);
assert.ok(models.includes("scripture"), `models: ${models}`);
out.models = models;

// Chat with the adapter, whole and streamed.
const messages = [{ role: "system", content: "You answer briefly." }, { role: "user", content: "Where does the river go?" }];
const chat = await client.chat.completions.create({ model: "scripture", messages, temperature: 0, max_tokens: 20 });
assert.equal(chat.object, "chat.completion");
assert.equal(chat.choices[0].message.role, "assistant");
assert.equal(chat.usage.completion_tokens, 20);
out.chat_scripture = chat.choices[0].message.content;
const chatStream = await client.chat.completions.create({
  model: "scripture", messages, temperature: 0, max_tokens: 20, stream: true, stream_options: { include_usage: true },
});
let streamed = "";
let usage = null;
let finish = null;
for await (const chunk of chatStream) {
  assert.equal(chunk.object, "chat.completion.chunk");
  if (chunk.usage) usage = chunk.usage;
  if (chunk.choices.length) {
    streamed += chunk.choices[0].delta.content ?? "";
    finish = chunk.choices[0].finish_reason ?? finish;
  }
}
assert.equal(streamed, out.chat_scripture);
assert.equal(usage.completion_tokens, 20);
assert.equal(usage.prompt_tokens, chat.usage.prompt_tokens);
assert.ok(finish === "length" || finish === "stop", `finish ${finish}`);

// Completions on the base model, whole and streamed, with logprobs.
const prompt = "In the beginning";
const completion = await client.completions.create({
  model: base, prompt, temperature: 0, max_tokens: 12, logprobs: 2, ignore_eos: true,
});
assert.equal(completion.object, "text_completion");
assert.equal(completion.choices[0].logprobs.token_logprobs.length, 12);
out.completion_base = completion.choices[0].text;
out.completion_logprobs = completion.choices[0].logprobs.token_logprobs;
let text = "";
for await (const chunk of await client.completions.create({
  model: base, prompt, temperature: 0, max_tokens: 12, stream: true, ignore_eos: true,
})) text += chunk.choices[0]?.text ?? "";
assert.equal(text, out.completion_base);

// n choices: each sampled alone (seed + i), streamed chunks naming their choice.
const three = await client.chat.completions.create({
  model: base, messages, temperature: 1, seed: 5, n: 3, max_tokens: 6, ignore_eos: true,
});
assert.equal(three.choices.length, 3);
assert.deepEqual(three.choices.map((c) => c.index), [0, 1, 2]);
assert.equal(three.usage.completion_tokens, 18);
const perChoice = ["", "", ""];
for await (const chunk of await client.chat.completions.create({
  model: base, messages, temperature: 1, seed: 5, n: 3, max_tokens: 6, ignore_eos: true, stream: true,
})) for (const c of chunk.choices) perChoice[c.index] += c.delta.content ?? "";
assert.deepEqual(perChoice, three.choices.map((c) => c.message.content));
out.n_choices_checked = true;

// Errors as the client's classes.
await assert.rejects(client.chat.completions.create({ model: "no-such-model", messages }), (e) => e.status === 404);
await assert.rejects(
  client.completions.create({ model: base, prompt, temperature: 5 }),
  (e) => e.status === 400 && e.param === "temperature");
const stranger = new OpenAI({ baseURL, apiKey: "sk-wrong", maxRetries: 0 });
await assert.rejects(stranger.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
out.errors_checked = true;

// A fine-tuning job: upload, create, poll, events, then the new model answers.
const file = await client.files.create({ file: fs.createReadStream(env("WICK_TRAIN_FILE")), purpose: "fine-tune" });
assert.equal(file.purpose, "fine-tune");
let job = await client.fineTuning.jobs.create({
  model: base, training_file: file.id, suffix: "secret",
  hyperparameters: { n_epochs: 30, learning_rate_multiplier: 25 },
});
const deadline = Date.now() + 240_000;
while (!["succeeded", "failed", "cancelled"].includes(job.status) && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 100));
  job = await client.fineTuning.jobs.retrieve(job.id);
}
assert.equal(job.status, "succeeded", JSON.stringify(job));
const events = [];
for await (const e of client.fineTuning.jobs.listEvents(job.id)) events.push(e);
assert.ok(events.filter((e) => e.type === "metrics").length >= 30, `events: ${events.length}`);
out.fine_tuned_model = job.fine_tuned_model;
const after = [];
for await (const m of client.models.list()) after.push(m.id);
assert.ok(after.includes(job.fine_tuned_model));
const answer = await client.chat.completions.create({
  model: job.fine_tuned_model, temperature: 0, max_tokens: 16,
  messages: [{ role: "user", content: "What is the secret word?" }],
});
out.fine_tuned_answer = answer.choices[0].message.content;

console.log(JSON.stringify(out));

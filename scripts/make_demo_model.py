#!/usr/bin/env python3
"""The demo model: a small Qwen2 trained from scratch on English text from Debian packages.

Runs on the GPU machine (torch 2.11, transformers 5.17, peft 0.21, tokenizers 0.23; no network). Its input is what
scripts/fetch_demo_text.sh made on the dev machine (DIR/raw: the King James Bible, the fortune cookie files, the
Jargon File). It writes

  models/wick-demo/            config.json, model.safetensors (bf16), generation_config.json, tokenizer.json,
                               tokenizer_config.json (ChatML chat template), README.md (data, licences, the run,
                               held-out perplexity)
  models/styles/*.jsonl        two small style sets ({"text"} lines): scripture (Psalms, Proverbs, Ecclesiastes)
                               and hacker (Jargon File entries) - scripts/demo.sh trains an adapter on one
  models/adapters/scripture/   a PEFT LoRA adapter trained on the scripture set (the demo's second adapter)
  tests/fixtures/demo/reference.safetensors   transformers' f32 logits and greedy ids of the saved model, for the
                               CPU test that holds wick to them (tests/model/demo_model_test.cpp)

and, with --wick BUILD/wick, checks wick against transformers on the saved files: the token ids of a few texts,
logits within 1e-4 and equal greedy ids (CPU, f32).

  python3 scripts/make_demo_model.py --text .demo-text/raw [--wick build/wick] [--steps 1500]
"""
import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer split (its tokenizer.json): contractions, letters, single digits, punctuation runs, spaces.
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s+(?!\S)|\s+")
# Qwen2-Instruct's ChatML template (wick renders it natively).
CHAT_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
                 "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Cookie files left out: pictures, code, chat logs, non-English, and the ones Debian itself flags as sensitive.
FORTUNES_SKIP = {"ascii-art", "art", "debian", "linuxcookie", "perl", "translate-me", "disclaimer", "drugs",
                 "ethnic", "men-women", "zippy", "knghtbrd"}
SCRIPTURE_BOOKS = {"Psalms", "Proverbs", "Ecclesiastes"}
CHECK_TEXTS = ["In the beginning was the word.", "A hacker's kludge, 42 times over!\n\nThe end.",
               "<|im_start|>user\nHello<|im_end|>\n", "  spaces   and\ttabs\n\n"]


def squash(text):
    return re.sub(r"\s+", " ", text).strip()


def read_kjv(path):
    """Chapters as documents: [(book, text)], verse numbers dropped, wrapped lines joined."""
    docs, book, verses = [], None, []
    heading = re.compile(r"^(\d? ?[A-Z][A-Za-z ]+?) (\d+)$")
    verse = re.compile(r"^\s+\d+ (.*)$")

    def flush():
        if verses:
            docs.append((book, " ".join(verses)))
            verses.clear()

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            m = heading.match(line)
            if m:
                flush()
                book = m.group(1)
                continue
            m = verse.match(line)
            if m:
                verses.append(squash(m.group(1)))
            elif verses:
                verses[-1] += " " + squash(line)
    flush()
    return docs


def read_fortunes(folder):
    docs = []
    for name in sorted(os.listdir(folder)):
        if name in FORTUNES_SKIP:
            continue
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
            for cookie in f.read().split("\n%\n"):
                cookie = cookie.strip("\n%")
                lines = [l.rstrip() for l in cookie.split("\n")]
                # Keep line breaks of verse and attributions; drop cookies that are mostly symbols (pictures).
                text = "\n".join(l.strip() if i == 0 else l.lstrip("\t") for i, l in enumerate(lines)).strip()
                letters = sum(c.isalpha() for c in text)
                if len(text) >= 20 and letters >= 0.6 * len(text.replace(" ", "").replace("\n", "")):
                    docs.append(text)
    return docs


def read_jargon(path):
    """Entries as documents: 'headword: definition' with {cross references} unbracketed."""
    docs, head, paras, para = [], None, [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")

    def end_para():
        if para:
            paras.append(squash(" ".join(para)))
            para.clear()

    def end_entry():
        end_para()
        # Drop etymologies ([...]), pronunciations (/.../) and part-of-speech lines ("n.", "vt.", "adj.").
        body = [p for p in paras if p and not p.startswith(("[", "/")) and not re.fullmatch(r"[a-z.,/ ]{1,12}", p)]
        if head and body and re.fullmatch(r"[\w][\w \-'.+&!]{0,39}", head) and not head.startswith("00-database"):
            text = re.sub(r"\{\s*([^{}]*?)\s*\}", r"\1", head + ": " + "\n".join(body))
            docs.append(text.replace("“", '"').replace("”", '"').replace("’", "'").replace("‘", "'"))
        paras.clear()

    for line in lines:
        if line and not line[0].isspace():
            end_entry()
            head = line.strip()
        elif not line.strip():
            end_para()
        else:
            para.append(line.strip())
    end_entry()
    return docs


def held_out(text):
    """About 2 % of documents, chosen by a hash of their text (the same split on every run)."""
    return hashlib.sha256(text.encode()).digest()[0] < 5


def make_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE(byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIALS), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens(SPECIALS)  # after the BPE vocabulary, as Qwen's are
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    return tok


def make_config(vocab, a):
    kw = dict(vocab_size=vocab, hidden_size=a.hidden, intermediate_size=a.intermediate, num_hidden_layers=a.layers,
              num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=a.seq_len * 2,
              rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False, hidden_act="silu",
              bos_token_id=None, eos_token_id=vocab - 1, pad_token_id=vocab - 3)
    try:
        return Qwen2Config(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **kw)
    except TypeError:
        return Qwen2Config(rope_theta=10000.0, **kw)


def windows(ids, seq_len, batch, gen):
    starts = torch.randint(0, len(ids) - seq_len - 1, (batch,), generator=gen)
    return torch.stack([ids[s:s + seq_len + 1] for s in starts.tolist()])


@torch.no_grad()
def held_out_loss(model, ids, seq_len, device, max_windows=256):
    model.eval()
    n = min(max_windows, (len(ids) - 1) // seq_len)
    total, count = 0.0, 0
    for i in range(0, n, 32):
        rows = torch.stack([ids[j * seq_len:(j + 1) * seq_len + 1] for j in range(i, min(n, i + 32))]).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(rows[:, :-1]).logits.float()
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1), reduction="sum").item()
        count += rows[:, 1:].numel()
    model.train()
    return total / count


def train_base(model, train_ids, eval_ids, a, device, log):
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=device == "cuda")
    gen = torch.Generator().manual_seed(a.seed)
    warm = max(1, a.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / a.steps)))))
    best, best_state, history = float("inf"), None, []
    t0 = time.time()
    model.train()
    for step in range(1, a.steps + 1):
        rows = windows(train_ids, a.seq_len, a.batch, gen).to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = model(rows[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), rows[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % a.eval_every == 0 or step == a.steps:
            ev = held_out_loss(model, eval_ids, a.seq_len, device)
            history.append((step, loss.item(), ev))
            log(f"step {step}/{a.steps}: train loss {loss.item():.3f}, held-out loss {ev:.3f} "
                f"(perplexity {math.exp(ev):.1f}), {time.time() - t0:.0f} s")
            if ev < best:  # keep the best held-out checkpoint (the run may overfit a small corpus)
                best, best_state = ev, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return best, history, time.time() - t0


def save_tokenizer(tok, out, vocab):
    tok.save(os.path.join(out, "tokenizer.json"))
    added = {str(tok.token_to_id(t)): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True} for t in SPECIALS}
    cfg = {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": added,
           "additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "bos_token": None,
           "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>",
           "errors": "replace", "model_max_length": 1024, "pad_token": "<|endoftext|>", "split_special_tokens": False,
           "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": None}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)


def peft_adapter(base_dir, texts, out, tok, a, device, log):
    """The demo's second adapter: PEFT LoRA r8 on all linear layers, trained on the scripture style set."""
    from peft import LoraConfig, get_peft_model
    model = Qwen2ForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                           "gate_proj", "up_proj", "down_proj"],
                     task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    torch.manual_seed(a.seed)
    eot = tok.token_to_id("<|endoftext|>")
    seqs = [tok.encode(t).ids[:127] + [eot] for t in texts]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    gen = random.Random(a.seed)
    model.train()
    for step in range(1, 201):
        batch = gen.sample(seqs, 16)
        width = max(map(len, batch))
        ids = torch.tensor([s + [eot] * (width - len(s)) for s in batch], device=device)
        labels = torch.tensor([s + [-100] * (width - len(s)) for s in batch], device=device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            log(f"scripture adapter step {step}/200: loss {loss.item():.3f}")
    model.save_pretrained(out)
    for junk in ("README.md",):
        if os.path.exists(os.path.join(out, junk)):
            os.remove(os.path.join(out, junk))


def greedy(model, prompt, n):
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, repetition_penalty=1.0, pad_token_id=0)  # plain argmax: no penalty
    return out[0, len(prompt):].tolist()


def reference(out_dir, fixture, tok, log):
    """transformers' f32 CPU logits and greedy ids of the saved model (as wick reads it: bf16 weights to f32)."""
    model = Qwen2ForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager").eval()
    texts = ["And God said, Let there be light", "A hacker is a person who enjoys"]
    rows = [tok.encode(t).ids for t in texts]
    width = min(map(len, rows))
    input_ids = torch.tensor([r[:width] for r in rows], dtype=torch.int32)
    with torch.no_grad():
        logits = model(input_ids.long()).logits.float()
    prompts = torch.tensor([r[:width] for r in rows], dtype=torch.int32)
    greedy_ids = torch.tensor([greedy(model, r[:width], 24) for r in rows], dtype=torch.int32)
    os.makedirs(fixture, exist_ok=True)
    save_file({"input_ids": input_ids, "logits": logits.contiguous(), "greedy_prompts": prompts,
               "greedy_ids": greedy_ids}, os.path.join(fixture, "reference.safetensors"))
    log(f"reference: {list(input_ids.shape)} ids, logits {list(logits.shape)}, greedy ids {list(greedy_ids.shape)}")
    return input_ids, logits, prompts, greedy_ids


def check_wick(wick, out_dir, tok, ref, work, log):
    """wick (CPU, f32) against transformers on the saved files. Returns True when everything agrees."""
    input_ids, logits, prompts, greedy_ids = ref
    ok = True
    for text in CHECK_TEXTS:
        got = json.loads(subprocess.check_output([wick, "tokenize", "--model", out_dir, "--text", text]))
        want = tok.encode(text).ids
        log(f"tokenize {text!r}: wick {'==' if got == want else '!='} tokenizers ({len(want)} ids)")
        ok &= got == want
    rows = ";".join(",".join(map(str, r)) for r in input_ids.tolist())
    path = os.path.join(work, "wick_logits.safetensors")
    subprocess.check_call([wick, "logits", "--model", out_dir, "--tokens", rows, "--out", path])
    diff = (load_file(path)["logits"] - logits).abs().max().item()
    log(f"logits: max |wick - transformers| = {diff:.3g} (limit 1e-4)")
    ok &= diff <= 1e-4
    for p, want in zip(prompts.tolist(), greedy_ids.tolist()):
        res = json.loads(subprocess.check_output([wick, "generate", "--model", out_dir, "--tokens",
                                                  ",".join(map(str, p)), "--greedy", "--ignore-eos",
                                                  "--max-tokens", str(len(want)), "--json"]))
        same = res["output_ids"] == want
        log(f"greedy ids: wick {'==' if same else '!='} transformers ({len(want)} tokens)")
        ok &= same
    return ok


def write_readme(out_dir, a, n_params, corpus, versions, ppl, history, seconds, device_name, tok_counts):
    licences = {
        "bible-kjv-text": "the King James Version (1611), public domain; Debian packaging GPL-2+",
        "bible-kjv": "the `bible` reader used to print it, GPL-2+",
        "fortunes": "the fortune cookie files of fortune-mod, BSD (Debian main; its offensive set not used)",
        "fortunes-min": "a few more cookie files, BSD",
        "dict-jargon": "the Jargon File 4.4.7, public domain",
    }
    lines = ["# wick-demo", "",
             "A small Qwen2-architecture language model trained from scratch by `scripts/make_demo_model.py` so that",
             "wick's demo (`scripts/demo.sh`) shows real text. It writes English in the manner of its three sources;",
             "it knows little and follows no instructions (it was never tuned to chat, though its tokenizer has",
             "Qwen's ChatML template). Reproduce it with `scripts/fetch_demo_text.sh` (dev machine, downloads) then",
             "`scripts/gpu-demo-model.sh` (GPU machine).", "",
             "## Data (Debian 12 packages)", ""]
    for line in versions:
        name = line.split()[0]
        lines.append(f"- `{line}`: {licences.get(name, '')}")
    lines += ["", "| source | documents | tokens |", "|---|---:|---:|"]
    for name, (docs, toks) in corpus.items():
        lines.append(f"| {name} | {docs:,} | {toks:,} |")
    lines += ["", f"About 2 % of the documents (chosen by a hash of their text) are held out for evaluation.", "",
              "## Model and run", "",
              f"- {n_params / 1e6:.2f} M parameters: {a.layers} layers, hidden {a.hidden}, MLP {a.intermediate}, "
              f"{a.heads} query / {a.kv_heads} key-value heads (head dim {a.hidden // a.heads}), tied embeddings, "
              f"RoPE θ 10,000, context {a.seq_len * 2}; weights in bf16.",
              f"- Tokenizer: byte-level BPE, {tok_counts} tokens (the last three are `<|endoftext|>`, `<|im_start|>`, "
              "`<|im_end|>`), Qwen2's pre-tokenizer split and NFC, trained on the training documents.",
              f"- Training: {a.steps} steps of {a.batch} × {a.seq_len} tokens (random windows of the concatenated "
              f"documents, each ended by `<|endoftext|>`), AdamW (lr {a.lr}, betas 0.9/0.95, weight decay 0.1), "
              f"warm-up then cosine to 10 %, clipping at 1.0, bf16 autocast, seed {a.seed}; {seconds:.0f} s on "
              f"{device_name}. The checkpoint with the lowest held-out loss is kept.",
              "", f"**Held-out perplexity: {ppl:.2f}** (loss {math.log(ppl):.3f} nats per token).", "",
              "| step | train loss | held-out loss | held-out perplexity |", "|---:|---:|---:|---:|"]
    for step, tl, ev in history:
        lines.append(f"| {step} | {tl:.3f} | {ev:.3f} | {math.exp(ev):.1f} |")
    lines += ["", "wick's logits on this model match transformers' within 1e-4 and its greedy ids are equal (checked",
              "by the script; `tests/model/demo_model_test.cpp` holds wick to the reference it saved).", ""]
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", required=True, help="DIR/raw of scripts/fetch_demo_text.sh")
    ap.add_argument("--root", default=".", help="the repository root (outputs go under it)")
    ap.add_argument("--wick", default="", help="a built wick CLI: check it against transformers")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    device_name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    torch.backends.cuda.matmul.allow_tf32 = True
    log = lambda m: print(m, flush=True)

    kjv = read_kjv(os.path.join(a.text, "kjv.txt"))
    sources = {"King James Bible (chapters)": [t for _, t in kjv],
               "fortune cookies": read_fortunes(os.path.join(a.text, "fortunes")),
               "Jargon File (entries)": read_jargon(os.path.join(a.text, "jargon.txt"))}
    train_docs, eval_docs = [], []
    for docs in sources.values():
        for d in docs:
            (eval_docs if held_out(d) else train_docs).append(d)
    log(f"documents: {len(train_docs):,} training, {len(eval_docs):,} held out")
    tok = make_tokenizer(train_docs, a.vocab)
    eot = tok.token_to_id("<|endoftext|>")

    def stream(docs):
        ids = []
        for enc in tok.encode_batch(docs):
            ids += enc.ids + [eot]
        return torch.tensor(ids, dtype=torch.long)

    rng = random.Random(a.seed)
    rng.shuffle(train_docs)
    train_ids, eval_ids = stream(train_docs), stream(eval_docs)
    corpus = {name: (len(docs), sum(len(e.ids) + 1 for e in tok.encode_batch(docs))) for name, docs in sources.items()}
    log(f"tokens: {len(train_ids):,} training, {len(eval_ids):,} held out")

    model = Qwen2ForCausalLM(make_config(a.vocab, a)).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters on {device_name}")
    loss, history, seconds = train_base(model, train_ids, eval_ids, a, device, log)
    ppl = math.exp(loss)
    log(f"trained in {seconds:.0f} s; held-out perplexity {ppl:.2f}")

    out_dir = os.path.join(a.root, "models", "wick-demo")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    model = model.to("cpu", dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=[a.vocab - 1, a.vocab - 3], pad_token_id=a.vocab - 3,
                                               do_sample=True, temperature=0.8, top_p=0.9, top_k=40,
                                               repetition_penalty=1.1)
    model.save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tok, out_dir, a.vocab)
    with open(os.path.join(a.text, "versions.txt")) as f:
        versions = [l.strip() for l in f if l.strip()]
    write_readme(out_dir, a, n_params, corpus, versions, ppl, history, seconds, device_name, a.vocab)
    log(f"wrote {out_dir}: " + ", ".join(f"{n} {os.path.getsize(os.path.join(out_dir, n)) / 1e6:.2f} MB"
                                          for n in sorted(os.listdir(out_dir))))

    # The style sets and the second adapter.
    styles = os.path.join(a.root, "models", "styles")
    os.makedirs(styles, exist_ok=True)
    scripture = [t for b, t in kjv if b in SCRIPTURE_BOOKS]
    verses = [v.strip() for t in scripture for v in re.split(r"(?<=[.;:?!])\s+(?=[A-Z])", t) if len(v) > 40]
    rng = random.Random(a.seed + 1)
    sets = {"scripture": rng.sample(verses, 300),
            "hacker": rng.sample([d for d in sources["Jargon File (entries)"] if 80 < len(d) < 600], 300)}
    for name, texts in sets.items():
        with open(os.path.join(styles, f"{name}.jsonl"), "w") as f:
            for t in texts:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    adapter_dir = os.path.join(a.root, "models", "adapters", "scripture")
    shutil.rmtree(adapter_dir, ignore_errors=True)
    peft_adapter(out_dir, sets["scripture"], adapter_dir, tok, a, device, log)

    ref = reference(out_dir, os.path.join(a.root, "tests", "fixtures", "demo"), tok, log)
    if a.wick:
        work = os.path.join(a.root, "build", "demo-check")
        os.makedirs(work, exist_ok=True)
        ok = check_wick(a.wick, out_dir, tok, ref, work, log)
        log("wick against transformers: " + ("AGREE" if ok else "DISAGREE"))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

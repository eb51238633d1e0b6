#!/usr/bin/env python3
"""Reference data for wick's tests, made with transformers (run on the GPU machine; CPU math in f32).

Builds tiny random Qwen2 models (norms and biases perturbed away from 1 and 0), saves them as
Hugging Face directories, and records what transformers computes for them:

  tests/fixtures/models/<name>/{config.json, generation_config.json, *.safetensors, reference.safetensors}

reference.safetensors holds
  causal LM:   input_ids i32 [rows, len], logits f32 [rows, len, vocab],
               greedy_prompts i32 [n, p], greedy_ids i32 [n, 24] (new tokens, EOS masked as min_new_tokens does),
               greedy_margin f32 [n] (smallest top-1 minus top-2 logit along the greedy path)
  seq-cls:     input_ids i32 [rows, max_len] (right-padded with pad_token_id), lengths i32 [rows],
               logits f32 [rows, num_labels]

Usage: python3 scripts/make_fixtures.py [--out tests/fixtures/models]
"""
import argparse
import json
import math
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

GREEDY_TOKENS = 24


def make_config(**kw):
    theta = kw.pop("rope_theta")
    try:
        cfg = Qwen2Config(rope_parameters={"rope_type": "default", "rope_theta": theta}, **kw)
    except TypeError:
        cfg = Qwen2Config(rope_theta=theta, **kw)
    return cfg


def randomize(model, gen):
    """Weights with healthy activations: N(0, 1/fan_in) matrices, N(0,1) embeddings,
    norms in [0.5, 1.5], biases N(0, 0.1) -- so that no test passes by accident of a 1 or a 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def to_v4_config(path):
    """Rewrites a v5 config.json into the transformers-v4 spelling (top-level rope_theta, torch_dtype)."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters", None)
    if rp is not None:
        cfg["rope_theta"] = rp["rope_theta"]
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["transformers_version"] = "4.45.0"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def greedy(model, prompt, eos_ids):
    """Greedy decoding with EOS masked, written out so the margin along the path is known; checked
    against model.generate below."""
    ids = prompt.clone()
    out, margins = [], []
    for _ in range(GREEDY_TOKENS):
        logits = model(ids).logits[0, -1].clone()
        logits[eos_ids] = -float("inf")
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out, min(margins)


def causal_model(out_dir, name, seed, cfg_kw, save_dtype, shard=None, v4=False):
    gen = torch.Generator().manual_seed(seed)
    cfg = make_config(**cfg_kw)
    model = Qwen2ForCausalLM(cfg).eval()
    randomize(model, gen)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=[2, 3], pad_token_id=0,
                                               do_sample=True, temperature=0.7, top_p=0.8, top_k=20,
                                               repetition_penalty=1.05)
    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    model.to(save_dtype).save_pretrained(d, max_shard_size=shard or "10GB")
    if v4:
        to_v4_config(os.path.join(d, "config.json"))
    # The reference is what transformers computes from the saved files, upcast to f32.
    ref = Qwen2ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    vocab = cfg.vocab_size
    with torch.no_grad():
        input_ids = torch.randint(4, vocab, (2, 16), generator=gen)
        logits = ref(input_ids).logits.float()
        prompts = torch.randint(4, vocab, (2, 8), generator=gen)
        greedy_ids, margins = [], []
        for r in range(prompts.shape[0]):
            ids, margin = greedy(ref, prompts[r:r + 1], [2, 3])
            hf = ref.generate(prompts[r:r + 1], max_new_tokens=GREEDY_TOKENS, min_new_tokens=GREEDY_TOKENS,
                              do_sample=False, eos_token_id=[2, 3], pad_token_id=0)[0, prompts.shape[1]:].tolist()
            assert hf == ids, f"{name}: hand-written greedy {ids} != generate {hf}"
            greedy_ids.append(ids)
            margins.append(margin)
    save_file({
        "input_ids": input_ids.to(torch.int32).contiguous(),
        "logits": logits.contiguous(),
        "greedy_prompts": prompts.to(torch.int32).contiguous(),
        "greedy_ids": torch.tensor(greedy_ids, dtype=torch.int32),
        "greedy_margin": torch.tensor(margins, dtype=torch.float32),
    }, os.path.join(d, "reference.safetensors"))
    print(f"{name}: vocab {vocab}, files {sorted(os.listdir(d))}, min greedy margin {min(margins):.3g}")


def seqcls_model(out_dir, name, seed, cfg_kw, save_dtype):
    gen = torch.Generator().manual_seed(seed)
    cfg = make_config(**cfg_kw)
    cfg.num_labels = 3
    cfg.pad_token_id = 0
    model = Qwen2ForSequenceClassification(cfg).eval()
    randomize(model, gen)
    d = os.path.join(out_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    model.to(save_dtype).save_pretrained(d)
    ref = Qwen2ForSequenceClassification.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    lengths = [5, 9, 12]
    input_ids = torch.zeros((len(lengths), max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for r, n in enumerate(lengths):
        input_ids[r, :n] = torch.randint(1, cfg.vocab_size, (n,), generator=gen)
        mask[r, :n] = 1
    with torch.no_grad():
        logits = ref(input_ids=input_ids, attention_mask=mask).logits.float()
    save_file({
        "input_ids": input_ids.to(torch.int32).contiguous(),
        "lengths": torch.tensor(lengths, dtype=torch.int32),
        "logits": logits.contiguous(),
    }, os.path.join(d, "reference.safetensors"))
    print(f"{name}: logits {list(logits.shape)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(4)
    common = dict(vocab_size=384, max_position_embeddings=256, rms_norm_eps=1e-6, use_sliding_window=False)
    # Tied embeddings, f32 files, transformers-v5 config.
    causal_model(args.out, "tiny-tied", 1, dict(common, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                                num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                                rope_theta=10000.0), torch.float32)
    # Untied, bf16 files in shards, transformers-v4 config, explicit head_dim.
    causal_model(args.out, "tiny-untied", 2, dict(common, hidden_size=96, intermediate_size=192, num_hidden_layers=3,
                                                  num_attention_heads=6, num_key_value_heads=2, head_dim=16,
                                                  tie_word_embeddings=False, rope_theta=1000000.0),
                 torch.bfloat16, shard="200KB", v4=True)
    # Sequence classification, f16 files.
    seqcls_model(args.out, "tiny-seqcls", 3, dict(common, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                  num_attention_heads=4, num_key_value_heads=2,
                                                  tie_word_embeddings=False, rope_theta=10000.0), torch.float16)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference distributions for wick's sampler, made with transformers' own logits processors.

Runs on the GPU machine (torch 2.11, transformers 5.17, safetensors); CPU is enough:

    python3 scripts/make_sampler_fixtures.py --out tests/fixtures/sampler

Writes into --out:
  sampler.safetensors
    small.logits      f32 [1000]    random logits (a few spiked tokens, like a real model)
    small.input_ids   i32 [n]       prompt + generated ids seen so far (repeats included)
    big.logits        bf16 [151936] the same at Qwen2's vocabulary size (processed as f32)
    big.input_ids     i32 [n]
    <case>.logprobs        f32 [1000]  log_softmax of the processed scores (-inf where removed), small cases
    <case>.kept_ids        i32 [m]     big cases: the tokens that survive, ascending ...
    <case>.kept_logprobs   f32 [m]     ... and their log-probabilities
  cases.json  [{name, vocab: "small"|"big", params: {...}, processors: [...], kept, margin}]
    params use wick's names (temperature, top_k, top_p, min_p, repetition_penalty, logit_bias,
    eos_ids for --ignore-eos masking, greedy). `margin` is how far the closest token is from a
    top-p / min-p cut (in probability), so a test failure at a cut can be told from float noise.

Processors are chained in the order GenerationMixin._get_logits_processor builds them:
SequenceBias (logit_bias) -> RepetitionPenalty -> MinNewTokensLength (EOS masking) ->
Temperature -> TopK -> TopP -> MinP; with greedy=True only the processors before the warpers apply.
"""
import argparse
import json
import math
import os

import torch
from safetensors.torch import save_file
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

SMALL_VOCAB = 1000
BIG_VOCAB = 151936

SMALL_CASES = [
    ("none", {}),
    ("greedy_rep", {"greedy": True, "repetition_penalty": 1.3}),
    ("rep_1.3", {"repetition_penalty": 1.3}),
    ("rep_0.8", {"repetition_penalty": 0.8}),
    ("bias", {"logit_bias": {"5": 4.0, "17": -100.0, "998": 2.5}}),
    ("eos_mask", {"eos_ids": [2, 3]}),
    ("temp_0.7", {"temperature": 0.7}),
    ("temp_1.5", {"temperature": 1.5}),
    ("topk_1", {"top_k": 1}),
    ("topk_50", {"top_k": 50}),
    ("topp_0.9", {"top_p": 0.9}),
    ("topp_0.5", {"top_p": 0.5}),
    ("minp_0.05", {"min_p": 0.05}),
    ("minp_0.3", {"min_p": 0.3}),
    ("qwen_defaults", {"repetition_penalty": 1.05, "temperature": 0.7, "top_k": 20, "top_p": 0.8}),
    ("all", {"logit_bias": {"5": 4.0, "11": -3.0}, "repetition_penalty": 1.2, "eos_ids": [2, 3],
             "temperature": 0.8, "top_k": 100, "top_p": 0.95, "min_p": 0.02}),
    ("temp_topk_minp", {"temperature": 1.3, "top_k": 200, "min_p": 0.1}),
    ("topp_minp", {"temperature": 0.9, "top_p": 0.7, "min_p": 0.05}),
]

BIG_CASES = [
    ("big_topk_40", {"top_k": 40}),
    ("big_topp_0.9", {"temperature": 0.7, "top_p": 0.9}),
    ("big_minp_0.1", {"min_p": 0.1}),
    ("big_qwen_defaults", {"repetition_penalty": 1.05, "temperature": 0.7, "top_k": 20, "top_p": 0.8}),
    ("big_rep_topp_minp", {"repetition_penalty": 1.1, "eos_ids": [151643, 151645], "top_p": 0.95,
                           "min_p": 0.05}),
]


def make_logits(gen, vocab, spikes, spike_lo, spike_hi):
    """Gaussian logits plus a few hundred 'plausible' tokens far above the rest, as a trained LM gives."""
    logits = torch.randn(vocab, generator=gen) * 1.5
    idx = torch.randperm(vocab, generator=gen)[:spikes]
    logits[idx] += spike_lo + (spike_hi - spike_lo) * torch.rand(spikes, generator=gen)
    # Some of the seen ids get negative logits, so the penalty's multiply branch is exercised.
    return logits, idx


def make_input_ids(gen, vocab, spiked, n):
    """Seen ids: half drawn from the spiked tokens (so the penalty moves the top), with repeats."""
    a = spiked[torch.randint(len(spiked), (n // 2,), generator=gen)]
    b = torch.randint(vocab, (n - n // 2,), generator=gen)
    return torch.cat([a, b, a[:5]]).to(torch.int64)


def processors(params, prompt_len):
    ps = LogitsProcessorList()
    if params.get("logit_bias"):
        ps.append(SequenceBiasLogitsProcessor(sequence_bias=[[[int(k)], float(v)] for k, v in params["logit_bias"].items()]))
    if params.get("repetition_penalty", 1.0) != 1.0:
        ps.append(RepetitionPenaltyLogitsProcessor(penalty=params["repetition_penalty"]))
    if params.get("eos_ids"):
        ps.append(MinNewTokensLengthLogitsProcessor(prompt_length_to_skip=prompt_len, min_new_tokens=1,
                                                    eos_token_id=params["eos_ids"]))
    if not params.get("greedy"):
        if params.get("temperature", 1.0) != 1.0:
            ps.append(TemperatureLogitsWarper(params["temperature"]))
        if params.get("top_k", 0) != 0:
            ps.append(TopKLogitsWarper(top_k=params["top_k"], min_tokens_to_keep=1))
        if params.get("top_p", 1.0) < 1.0:
            ps.append(TopPLogitsWarper(top_p=params["top_p"], min_tokens_to_keep=1))
        if params.get("min_p") is not None:
            ps.append(MinPLogitsWarper(min_p=params["min_p"], min_tokens_to_keep=1))
    return ps


def cut_margin(ps, input_ids, logits):
    """Smallest distance (in probability mass or ratio) of any token from a top-p / min-p cut."""
    margin = math.inf
    scores = logits.clone()
    for p in ps:
        if isinstance(p, TopPLogitsWarper):
            probs = scores.softmax(-1).double()
            s, _ = torch.sort(probs, descending=False)
            cum = s.cumsum(-1)
            margin = min(margin, (cum - (1 - p.top_p)).abs().min().item())
        if isinstance(p, MinPLogitsWarper):
            probs = scores.softmax(-1).double()
            ratio = probs / probs.max()
            margin = min(margin, (ratio - p.min_p).abs().min().item())
        scores = p(input_ids, scores)
    return margin


def run_case(name, params, logits, input_ids, dense):
    ids2d = input_ids.unsqueeze(0)
    ps = processors(params, ids2d.shape[1])
    scores = ps(ids2d, logits.unsqueeze(0).clone())[0]
    logprobs = torch.log_softmax(scores, dim=-1).float()
    kept = torch.isfinite(logprobs).nonzero().flatten()
    info = {"name": name, "vocab": "small" if dense else "big", "params": params,
            "processors": [type(p).__name__ for p in ps], "kept": int(kept.numel()),
            "margin": cut_margin(ps, ids2d, logits.unsqueeze(0).clone())}
    if math.isinf(info["margin"]):
        info["margin"] = None  # no top-p / min-p cut in this case
    if dense:
        return info, {f"{name}.logprobs": logprobs.contiguous()}
    assert kept.numel() < 20000, f"{name}: {kept.numel()} tokens kept; the fixture would be too big"
    return info, {f"{name}.kept_ids": kept.to(torch.int32).contiguous(),
                  f"{name}.kept_logprobs": logprobs[kept].contiguous()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/sampler")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(20240607)

    small_logits, small_spiked = make_logits(gen, SMALL_VOCAB, 40, 3.0, 8.0)
    small_ids = make_input_ids(gen, SMALL_VOCAB, small_spiked, 40)
    small_ids[0] = 2  # an EOS id among the seen tokens: masking and penalties both touch it
    big_bf16, big_spiked = make_logits(gen, BIG_VOCAB, 300, 9.0, 17.0)
    big_bf16 = big_bf16.to(torch.bfloat16)
    big_logits = big_bf16.float()  # the exact values wick reads back from the bf16 tensor
    big_ids = make_input_ids(gen, BIG_VOCAB, big_spiked, 64)

    tensors = {
        "small.logits": small_logits.float().contiguous(),
        "small.input_ids": small_ids.to(torch.int32).contiguous(),
        "big.logits": big_bf16.contiguous(),
        "big.input_ids": big_ids.to(torch.int32).contiguous(),
    }
    cases = []
    for name, params in SMALL_CASES:
        info, t = run_case(name, params, small_logits.float(), small_ids, dense=True)
        cases.append(info)
        tensors.update(t)
    for name, params in BIG_CASES:
        info, t = run_case(name, params, big_logits, big_ids, dense=False)
        cases.append(info)
        tensors.update(t)

    save_file(tensors, os.path.join(args.out, "sampler.safetensors"),
              metadata={"made_by": "scripts/make_sampler_fixtures.py",
                        "transformers": __import__("transformers").__version__,
                        "torch": torch.__version__})
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    for c in cases:
        print(f"{c['name']:>20}: kept {c['kept']:>6}, cut margin {c['margin']}, {c['processors']}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The transformers side of wick-bench's BM_Embed (issue 24's anchors), on the GPU machine: the same random encoder
folder (`wick random-model --like minilm-l6|bert-base`), the same token ids (bench/embed_bench.cpp's sentences()), fp16
weights, SDPA attention, mean pooling over the attention mask and L2 normalisation, f32 embeddings back on the host.
Prints one JSON object per (model, tokens, batch) with sentences_per_s: the median of --rounds timed rounds, each of
--seconds seconds or more after --warmup untimed calls.

Usage: python3 scripts/bench_embed_transformers.py --model minilm-l6=DIR --model bert-base=DIR [--case 128x128 ...]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModel


def sentences(batch, tokens):
    ids = [[1000 + (s * 7919 + i * 104729) % 29000 for i in range(tokens)] for s in range(batch)]
    for row in ids:
        row[0], row[-1] = 101, 102
    return torch.tensor(ids, dtype=torch.long)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="NAME=DIR")
    ap.add_argument("--case", action="append", default=None, help="TOKENSxBATCH (default 128x128 and 512x32)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    cases = [tuple(int(x) for x in c.split("x")) for c in (args.case or ["128x128", "512x32"])]
    for spec in args.model:
        name, path = spec.split("=", 1)
        model = AutoModel.from_pretrained(path, dtype=torch.float16, attn_implementation="sdpa").cuda().eval()
        for tokens, batch in cases:
            ids = sentences(batch, tokens).cuda()
            mask = torch.ones_like(ids)

            @torch.inference_mode()
            def embed():
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(pooled.float(), p=2, dim=1).cpu()

            for _ in range(args.warmup):
                embed()
            rates = []
            for _ in range(args.rounds):
                torch.cuda.synchronize()
                t0, calls = time.perf_counter(), 0
                while True:
                    embed()
                    calls += 1
                    elapsed = time.perf_counter() - t0
                    if elapsed >= args.seconds:
                        break
                rates.append(calls * batch / elapsed)
            print(json.dumps({"model": name, "tokens": tokens, "batch": batch, "engine": "transformers",
                              "dtype": "fp16", "attention": "sdpa", "sentences_per_s": round(statistics.median(rates), 1),
                              "rounds": [round(r, 1) for r in rates], "torch": torch.__version__,
                              "device": torch.cuda.get_device_name()}), flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

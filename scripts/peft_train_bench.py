#!/usr/bin/env python3
"""The anchor of wick's training benchmark (BM_Train): transformers + PEFT training LoRA on the same shapes.

Runs on the GPU machine beside `wick-bench --benchmark_filter=BM_Train` (same machine, same call): a randomly
initialised Qwen2 of the named shape in bf16, PEFT LoRA r16 / alpha 32 on all seven projections (f32 adapter
weights, PEFT's default), AdamW, random token batches of LEN tokens, one optimizer step per batch; with and without
gradient checkpointing. Prints one line per case: tokens per second over the timed steps and the peak CUDA memory
(torch.cuda.max_memory_allocated), as BM_Train reports them.

  python3 scripts/peft_train_bench.py [--shapes 0.5b,7b] [--steps 5] [--warmup 2]
"""
import argparse
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

SHAPES = {  # Qwen2.5-0.5B and Qwen2.5-7B (their config.json), and the batch the anchor uses
    "0.5b": (dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True), 8),
    "7b": (dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False), 4),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def run(shape, checkpointing, steps, warmup, seq_len):
    kw, batch = SHAPES[shape]
    cfg = Qwen2Config(max_position_embeddings=32768, rms_norm_eps=1e-6, use_sliding_window=False, **kw)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM._from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                             task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator(device="cuda").manual_seed(1)

    def step():
        ids = torch.randint(0, cfg.vocab_size, (batch, seq_len), device="cuda", generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() / 1e9
    print(f"PEFT {shape} batch {batch}x{seq_len} ckpt {int(checkpointing)}: {seconds * 1e3:.0f} ms/step, "
          f"{batch * seq_len / seconds / 1e3:.2f}k tok/s, peak {peak:.2f} GB", flush=True)
    del model, opt
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="0.5b,7b")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=512)
    a = ap.parse_args()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    for shape in a.shapes.split(","):
        for ckpt in (False, True):
            run(shape, ckpt, a.steps, a.warmup, a.seq_len)


if __name__ == "__main__":
    main()

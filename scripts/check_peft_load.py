#!/usr/bin/env python3
"""Runs a LoRA adapter with PEFT itself, to check that an adapter wick wrote loads and computes in PEFT.

    python3 scripts/check_peft_load.py MODEL_DIR ADAPTER_DIR INPUT_IDS_JSON OUT.safetensors

Loads the causal LM in MODEL_DIR with transformers (f32, CPU, eager attention), applies ADAPTER_DIR with
PeftModel.from_pretrained (unmerged), runs INPUT_IDS_JSON (a JSON list of ints, given inline or as the path of a
file holding it) as one sequence, and writes OUT with one tensor, logits f32 [len, vocab]. Prints how far the
adapter moves the logits from the base model's, so an adapter that loaded as a no-op shows.
Runs on the GPU machine (torch 2.11, transformers 5.17, peft 0.21).
"""
import json
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def read_ids(arg):
    text = open(arg).read() if os.path.isfile(arg) else arg
    ids = json.loads(text)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
        sys.exit(f"INPUT_IDS_JSON: expected a non-empty JSON list of integers, found {text[:80]!r}")
    return ids


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_dir, adapter_dir, ids_arg, out_path = sys.argv[1:]
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    ids = torch.tensor([read_ids(ids_arg)])
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits[0].float()
        with model.disable_adapter():
            base_logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits[0].float()
    save_file({"logits": logits.contiguous()}, out_path)
    print(f"{out_path}: logits {list(logits.shape)}, adapter moves them by max |d| "
          f"{float((logits - base_logits).abs().max()):.4g} (max |base| {float(base_logits.abs().max()):.4g})")


if __name__ == "__main__":
    main()

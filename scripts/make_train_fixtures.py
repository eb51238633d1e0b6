#!/usr/bin/env python3
"""Reference numbers for wick's optimizer math, made with torch and transformers themselves.

Runs on the GPU machine (torch 2.11, transformers 5.17, safetensors), on the CPU, deterministic:

    python3 scripts/make_train_fixtures.py --out tests/fixtures/train

Writes into --out one file, optim_reference.safetensors (tensors only, a few KB). Learning rates are
Python floats (f64); safetensors as wick reads it holds no F64, so each lr list is stored as two f32
tensors `<name>.hi` and `<name>.lo` with hi + lo == the f64 value to ~2^-48.

  sched.<kind>.<warmup>.lr.{hi,lo}   f32 [20]  lr of optimizer steps 0..19: transformers.get_scheduler(kind)
                                               on an optimizer with lr 1e-3, 20 training steps; <kind> is
                                               constant | constant_with_warmup | linear | cosine and
                                               <warmup> is w0 (0 steps) | w3 (3 steps) | r0.1 (ratio 0.1)
  sched.r0.1.warmup_steps            i32 [1]   TrainingArguments(warmup_steps=0.1).get_warmup_steps(20)
  adamw.init.p<i>                    f32       initial values of 3 parameters, shapes [4, 6], [6], [3, 5]
  adamw.grad.s<k>.p<i>               f32       the gradient of parameter i at step k (k = 0..4)
  adamw.<cfg>.lr.{hi,lo}             f32 [5]   the lr torch.optim.AdamW used at each step
  adamw.<cfg>.s<k>.p<i>              f32       parameter i after step k
      cfg a: betas (0.9, 0.999), eps 1e-8, weight_decay 0.01, lr 1e-3 on the linear schedule,
             2 warmup steps of 5 (step 0 runs with lr 0)
      cfg b: betas (0.8, 0.95), eps 1e-6, weight_decay 0.1, constant lr 5e-3
  clip.grad.p<i>                     f32       gradients of the 3 shapes before clipping
  clip.max<m>.p<i>, clip.max<m>.total f32      after torch.nn.utils.clip_grad_norm_(max_norm=m), m = 0.5 | 1e9,
                                               and the total norm it returned ([1])

AdamW runs the single-tensor path (foreach=False, fused=False), as wick mirrors it.
"""
import argparse
import os
import tempfile
import types

import torch
import transformers
from safetensors.torch import save_file
from transformers import TrainingArguments, get_scheduler

SHAPES = [(4, 6), (6,), (3, 5)]
SCHEDULE_KINDS = ["constant", "constant_with_warmup", "linear", "cosine"]
SCHEDULE_STEPS = 20
SCHEDULE_LR = 1e-3
ADAMW_STEPS = 5
ADAMW_CONFIGS = {
    "a": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, lr=1e-3, schedule="linear", warmup=2),
    "b": dict(betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1, lr=5e-3, schedule="constant", warmup=0),
}
CLIP_NORMS = {"0.5": 0.5, "1e9": 1e9}


def split_f64(values):
    """f64 values as two f32 tensors whose sum (in f64) gives them back to ~2^-48."""
    x = torch.tensor(values, dtype=torch.float64)
    hi = x.to(torch.float32)
    lo = (x - hi.to(torch.float64)).to(torch.float32)
    return hi, lo


def put_lrs(out, name, lrs):
    out[name + ".hi"], out[name + ".lo"] = split_f64(lrs)


def warmup_steps_from_ratio(ratio, total):
    """transformers' own rounding of a warmup ratio (TrainingArguments.get_warmup_steps)."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(output_dir=tmp, warmup_steps=ratio, report_to=[], use_cpu=True)
            return int(args.get_warmup_steps(total))
    except Exception as e:  # noqa: BLE001 (constructing TrainingArguments needs accelerate)
        print(f"note: TrainingArguments(...) failed ({e}); calling get_warmup_steps unbound")
        return int(TrainingArguments.get_warmup_steps(types.SimpleNamespace(warmup_steps=ratio), total))


def scheduled_lrs(optimizer, kind, warmup, total, set_grads=lambda k: None, record=lambda k: None):
    """Runs `total` optimizer steps under transformers' scheduler (stepped after each optimizer step, as
    Trainer does) and returns the lr each optimizer.step() used."""
    scheduler = get_scheduler(kind, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    lrs = []
    for k in range(total):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        set_grads(k)
        optimizer.step()
        scheduler.step()
        record(k)
    return lrs


def schedules(out):
    ratio_steps = warmup_steps_from_ratio(0.1, SCHEDULE_STEPS)
    out["sched.r0.1.warmup_steps"] = torch.tensor([ratio_steps], dtype=torch.int32)
    for kind in SCHEDULE_KINDS:
        for tag, warmup in (("w0", 0), ("w3", 3), ("r0.1", ratio_steps)):
            p = torch.nn.Parameter(torch.zeros(1))
            optimizer = torch.optim.SGD([p], lr=SCHEDULE_LR)  # p has no grad: step() changes nothing
            lrs = scheduled_lrs(optimizer, kind, warmup, SCHEDULE_STEPS)
            put_lrs(out, f"sched.{kind}.{tag}.lr", lrs)


def adamw(out, gen):
    init = [torch.randn(s, generator=gen) * 0.5 for s in SHAPES]
    grads = [[torch.randn(s, generator=gen) * 0.1 for s in SHAPES] for _ in range(ADAMW_STEPS)]
    grads[0][1][0] = 0.0  # a zero gradient at the first step: v stays 0 and the update is 0
    for i, t in enumerate(init):
        out[f"adamw.init.p{i}"] = t.clone()
    for k, step_grads in enumerate(grads):
        for i, g in enumerate(step_grads):
            out[f"adamw.grad.s{k}.p{i}"] = g.clone()
    for name, c in ADAMW_CONFIGS.items():
        params = [torch.nn.Parameter(t.clone()) for t in init]
        optimizer = torch.optim.AdamW(params, lr=c["lr"], betas=c["betas"], eps=c["eps"],
                                      weight_decay=c["weight_decay"], amsgrad=False, maximize=False,
                                      foreach=False, fused=False, capturable=False, differentiable=False)

        def set_grads(k, params=params):
            for p, g in zip(params, grads[k]):
                p.grad = g.clone()

        def record(k, params=params, name=name):
            for i, p in enumerate(params):
                out[f"adamw.{name}.s{k}.p{i}"] = p.detach().clone()

        lrs = scheduled_lrs(optimizer, c["schedule"], c["warmup"], ADAMW_STEPS, set_grads, record)
        put_lrs(out, f"adamw.{name}.lr", lrs)


def clipping(out, gen):
    grads = [torch.randn(s, generator=gen) for s in SHAPES]
    for i, g in enumerate(grads):
        out[f"clip.grad.p{i}"] = g.clone()
    for tag, max_norm in CLIP_NORMS.items():
        params = [torch.nn.Parameter(torch.zeros(s)) for s in SHAPES]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=2.0, error_if_nonfinite=False,
                                               foreach=False)
        out[f"clip.max{tag}.total"] = total.detach().reshape(1).to(torch.float32).clone()
        for i, p in enumerate(params):
            out[f"clip.max{tag}.p{i}"] = p.grad.clone()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/fixtures/train", help="output directory")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator(device="cpu").manual_seed(1234)
    out = {}
    schedules(out)
    adamw(out, gen)
    clipping(out, gen)
    for name, t in out.items():
        assert t.device.type == "cpu" and t.is_contiguous(), name
        assert t.dtype in (torch.float32, torch.int32), (name, t.dtype)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "optim_reference.safetensors")
    save_file(out, path, metadata={"torch": torch.__version__, "transformers": transformers.__version__,
                                   "script": "scripts/make_train_fixtures.py"})
    print(f"wrote {path}: {len(out)} tensors, {os.path.getsize(path)} bytes "
          f"(torch {torch.__version__}, transformers {transformers.__version__})")


if __name__ == "__main__":
    main()

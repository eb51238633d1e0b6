#!/usr/bin/env python3
"""Reference runs of LoRA training for wick's trainer, made with transformers + PEFT + torch themselves.

Runs on the GPU machine (torch 2.11, transformers 5.17, peft 0.21, tokenizers 0.23), on the CPU, in f32,
deterministic (one thread, torch.use_deterministic_algorithms):

    python3 scripts/make_train_reference.py --out tests/fixtures/train/peft

Writes into --out (each directory is replaced, nothing else is touched):

  models/<name>/{config.json, model.safetensors}  tiny Qwen2 models, f32, made from torch seeds (N(0, 1/in)
      matrices, N(0, 1) embeddings, norms in [0.5, 1.5], biases N(0, 0.1): make_fixtures.randomize); hidden 64,
      ffn 128, 2 layers, 4 heads, 2 kv heads, head_dim 16, rope_theta 1e4, rms_norm_eps 1e-6, 128 positions,
      vocab 1024:
        causal-untied  Qwen2ForCausalLM, untied; also tokenizer.json (tests/fixtures/tokenizer/trained, whose
                       "<|endoftext|>" is id 1000) and tokenizer_config.json (eos_token "<|endoftext|>")
        causal-tied    Qwen2ForCausalLM, tie_word_embeddings
        seqcls         Qwen2ForSequenceClassification, 3 labels, pad_token_id 0, untied
  <case>/init/{adapter_config.json, adapter_model.safetensors}  the starting adapter (PEFT save_pretrained):
      every lora_A ~ U(-0.2, 0.2) * sqrt(64 / in_features), every lora_B ~ U(-0.2, 0.2) (both non-zero, so every
      gradient is); a modules_to_save copy (score) starts as the base model's weight
  <case>/data.jsonl       the training data, one example a line, as `wick train --data` reads it
  <case>/tokenized.jsonl  {"input_ids", "labels"} (causal) or {"input_ids", "label"} (seq-cls) of each example as
                          the reference trained on it (after tokenization and label defaults), for diagnosis
  <case>/args.json        the `wick train` flags: rank, alpha, rslora, targets, lr, weight_decay, betas, eps,
                          schedule, warmup (steps), steps, batch_size, grad_accum, max_grad_norm (0: off),
                          seq_len, modules_to_save, model (the models/<name> directory)
  <case>/expected.safetensors  f32:
      loss       [steps]  each optimizer step's loss (defined below), before that step's update
      lr         [steps]  the learning rate each optimizer step used (the scheduler's, before it steps)
      grad_norm  [steps]  the total 2-norm of the step's gradients before clipping
      grad.<key>          every trainable tensor's gradient of step 0's loss, before clipping
      step<s>.<key>       every trainable tensor after optimizer step s = 0 .. steps-1
  <key> is the tensor's key in PEFT's adapter_model.safetensors (base_model.model.model.layers.0.self_attn.
  q_proj.lora_A.weight, base_model.model.score.weight).

Cases:
  all7_untied        causal-untied, all seven projections, r 8, alpha 16; input_ids + labels (some -100, one
                     example's labels differ from its ids); 1 step of 4; lr 1e-3 constant, weight decay 0.01
  qv_rslora          causal-tied, q_proj v_proj, r 4, alpha 8, rsLoRA; input_ids only; 1 step of 3, lr 2e-3
  seqcls_score       seqcls, q_proj v_proj r 8 alpha 16, modules_to_save score; input_ids + label; 1 step of 4
  prompt_completion  causal-untied, all seven r 8 alpha 16; prompt/completion text; 1 step of 4
  accum_clip_cosine  causal-untied, all seven r 8 alpha 16; 8 examples, 3 steps of 2 batches of 2 (the data
                     wraps: step 2 sees examples 0..3 again), max_grad_norm 0.5, cosine, 1 warmup step (so
                     step 0 runs with lr 0), lr 1e-2, weight decay 0.1, betas 0.9, 0.99

The training semantics, which wick (run with --no-shuffle) must reproduce:
  - Examples in file order; a batch is batch_size consecutive examples, an optimizer step takes grad_accum
    batches, and the data cycles through epochs in order: step s uses examples (s*B*K + j) mod n, j < B*K.
  - Each example is run on its own: batch of 1, no padding, positions 0..len-1, attention mask all ones.
  - Causal LM: the step's loss is the sum over its examples and positions t with labels[t+1] != -100 of
    CE(logits[t], labels[t+1]), divided by the number of such positions in the whole step (transformers'
    num_items_in_batch); backward runs on it. Sequence classification: the mean over the step's examples of
    CE(logits at the last token, label) (Qwen2ForSequenceClassification's pooled logits).
  - prompt/completion: ids = encode(prompt) + encode(completion) + [EOS] (add_special_tokens=False; EOS unless
    the completion already ends with "<|endoftext|>"); labels -100 on the prompt's tokens.
  - LoRA dropout 0. After the backward: torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm) when
    max_grad_norm > 0, then torch.optim.AdamW(trainable, lr, betas, eps, weight_decay, foreach=False,
    fused=False).step(), then the transformers.get_scheduler(schedule, num_warmup_steps=warmup,
    num_training_steps=steps) scheduler steps. The trainable tensors are the LoRA factors and the
    modules_to_save copies, nothing else.
"""
import argparse
import dataclasses
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F
import peft
import transformers
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import Qwen2ForCausalLM, Qwen2ForSequenceClassification, get_scheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import make_config, randomize  # noqa: E402 (the fixture models' own recipe)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOKENIZER = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "trained", "tokenizer.json")
EOS_TOKEN = "<|endoftext|>"
REPO_DIR = "tests/fixtures/train/peft"  # recorded as the adapters' base_model_name_or_path prefix
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
IGNORE = -100
SEQ_LEN = 128
SHAPE = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, rope_theta=10000.0, rms_norm_eps=1e-6,
             max_position_embeddings=128, use_sliding_window=False)
MODELS = {  # name: (seed, class, config beyond SHAPE)
    "causal-untied": (31, Qwen2ForCausalLM, dict(tie_word_embeddings=False)),
    "causal-tied": (32, Qwen2ForCausalLM, dict(tie_word_embeddings=True)),
    "seqcls": (33, Qwen2ForSequenceClassification, dict(tie_word_embeddings=False, num_labels=3, pad_token_id=0)),
}


@dataclasses.dataclass
class Case:
    name: str
    model: str
    seed: int
    make_data: object  # (torch.Generator) -> list of JSON-able example objects
    rank: int = 8
    alpha: float = 16
    rslora: bool = False
    targets: list = dataclasses.field(default_factory=lambda: list(ALL7))
    modules_to_save: list = dataclasses.field(default_factory=list)
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "constant"
    warmup: int = 0
    steps: int = 1
    batch_size: int = 4
    grad_accum: int = 1
    max_grad_norm: float = 0.0

    def args(self):
        return {"rank": self.rank, "alpha": self.alpha, "rslora": self.rslora, "targets": self.targets,
                "lr": self.lr, "weight_decay": self.weight_decay, "betas": list(self.betas), "eps": self.eps,
                "schedule": self.schedule, "warmup": self.warmup, "steps": self.steps,
                "batch_size": self.batch_size, "grad_accum": self.grad_accum, "max_grad_norm": self.max_grad_norm,
                "seq_len": SEQ_LEN, "modules_to_save": self.modules_to_save, "model": self.model}


# ---------------------------------------------------------------------------------------------- data

def rand_ids(gen, n):
    return torch.randint(1, 1000, (n,), generator=gen).tolist()


def rand_len(gen, lo, hi):
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


def data_all7(gen):
    """Labels masked at the start of examples 0 and 2 and inside example 3; example 1's labels are other ids
    than its inputs (the targets are labels[t+1], not input_ids[t+1])."""
    out = []
    for i in range(4):
        ids = rand_ids(gen, rand_len(gen, 6, 14))
        labels = list(ids)
        if i == 0:
            labels[:3] = [IGNORE] * 3
        elif i == 1:
            labels = rand_ids(gen, len(ids))
        elif i == 2:
            labels[:2] = [IGNORE] * 2
        else:
            labels[4] = IGNORE
        out.append({"input_ids": ids, "labels": labels})
    return out


def data_ids_only(gen):
    return [{"input_ids": rand_ids(gen, rand_len(gen, 6, 14))} for _ in range(3)]


def data_seqcls(gen):
    return [{"input_ids": rand_ids(gen, rand_len(gen, 6, 14)), "label": k} for k in (1, 0, 2, 1)]


def data_prompt_completion(gen):
    del gen
    return [
        {"prompt": "Translate to French: good morning", "completion": " bonjour"},
        {"prompt": "The capital of Italy is", "completion": " Rome, a city on the Tiber."},
        {"prompt": "Q: What is two plus two?\nA:", "completion": " Four." + EOS_TOKEN},  # EOS already there
        {"prompt": "Write a short greeting:", "completion": " Hello there, friend!"},
    ]


def data_accum(gen):
    """8 examples of 5..12 tokens; masked: the start of 0 and 3, the middle of 5, all but the last three of 6."""
    out = []
    for i in range(8):
        ids = rand_ids(gen, rand_len(gen, 5, 12))
        labels = list(ids)
        if i == 0:
            labels[:2] = [IGNORE] * 2
        elif i == 3:
            labels[:4] = [IGNORE] * 4
        elif i == 5:
            labels[1:3] = [IGNORE] * 2
        elif i == 6:
            labels[:-3] = [IGNORE] * (len(labels) - 3)
        out.append({"input_ids": ids, "labels": labels})
    return out


CASES = [
    Case("all7_untied", "causal-untied", 41, data_all7, weight_decay=0.01),
    Case("qv_rslora", "causal-tied", 42, data_ids_only, rank=4, alpha=8, rslora=True, targets=["q_proj", "v_proj"],
         lr=2e-3, batch_size=3),
    Case("seqcls_score", "seqcls", 43, data_seqcls, targets=["q_proj", "v_proj"], modules_to_save=["score"],
         weight_decay=0.01),
    Case("prompt_completion", "causal-untied", 44, data_prompt_completion),
    Case("accum_clip_cosine", "causal-untied", 45, data_accum, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.99),
         schedule="cosine", warmup=1, steps=3, batch_size=2, grad_accum=2, max_grad_norm=0.5),
]


def tokenize(record, tok, eos_id):
    """One data.jsonl object as the (ids, labels) or (ids, label) the reference trains on."""
    if "prompt" in record:
        p = tok.encode(record["prompt"], add_special_tokens=False).ids
        c = tok.encode(record["completion"], add_special_tokens=False).ids
        if record["completion"].endswith(EOS_TOKEN):
            assert c[-1] == eos_id, c
        else:
            c = c + [eos_id]
        return {"input_ids": p + c, "labels": [IGNORE] * len(p) + c}
    if "label" in record:
        return {"input_ids": record["input_ids"], "label": record["label"]}
    return {"input_ids": record["input_ids"], "labels": record.get("labels") or list(record["input_ids"])}


# ---------------------------------------------------------------------------------------------- models

def make_model(out_dir, name):
    seed, cls, extra = MODELS[name]
    gen = torch.Generator().manual_seed(seed)
    model = cls(make_config(**SHAPE, **extra)).eval()
    randomize(model, gen)
    d = os.path.join(out_dir, "models", name)
    shutil.rmtree(d, ignore_errors=True)
    model.to(torch.float32).save_pretrained(d)
    if name == "causal-untied":
        shutil.copyfile(TOKENIZER, os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"eos_token": EOS_TOKEN, "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
            f.write("\n")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "float32", cfg
    print(f"model {name}: {sorted(os.listdir(d))}, "
          f"{sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))} bytes")


def load_base(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        arch = json.load(f)["architectures"][0]
    cls = Qwen2ForSequenceClassification if arch == "Qwen2ForSequenceClassification" else Qwen2ForCausalLM
    return cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")


def make_init(case, model_dir, init_dir, gain):
    """The starting adapter: PEFT's own layout, with both LoRA factors random and non-zero."""
    base = load_base(model_dir)
    seqcls = case.model == "seqcls"
    config = LoraConfig(task_type=TaskType.SEQ_CLS if seqcls else TaskType.CAUSAL_LM, r=case.rank,
                        lora_alpha=case.alpha, lora_dropout=0.0, target_modules=list(case.targets),
                        use_rslora=case.rslora, modules_to_save=list(case.modules_to_save) or None)
    torch.manual_seed(case.seed)
    model = get_peft_model(base, config)
    model.peft_config["default"].base_model_name_or_path = f"{REPO_DIR}/models/{case.model}"
    gen = torch.Generator().manual_seed(case.seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                u = torch.rand(p.shape, generator=gen) * 0.4 - 0.2
                scale = math.sqrt(64 / p.shape[1]) if ".lora_A." in name else 1.0
                p.copy_(u * scale * gain)
    shutil.rmtree(init_dir, ignore_errors=True)
    model.save_pretrained(init_dir)
    readme = os.path.join(init_dir, "README.md")  # PEFT's model-card template
    if os.path.exists(readme):
        os.remove(readme)


def adapter_key(name):
    """named_parameters name -> adapter file key, as PEFT's save drops the adapter name and wrapper."""
    return name.replace(".modules_to_save", "").replace(".default", "")


# ---------------------------------------------------------------------------------------------- training

def causal_step(model, examples):
    """Backward of the step's loss (sum of token CEs / the step's target count); returns the loss."""
    total = sum(sum(1 for x in e["labels"][1:] if x != IGNORE) for e in examples)
    assert total > 0
    loss_sum = 0.0
    for e in examples:
        ids = torch.tensor([e["input_ids"]])
        mask = torch.ones_like(ids)
        out = model(input_ids=ids, attention_mask=mask, use_cache=False)
        targets = torch.tensor(e["labels"][1:])
        loss = F.cross_entropy(out.logits[0, :-1].float(), targets, ignore_index=IGNORE, reduction="sum") / total
        loss.backward()
        loss_sum += float(loss)
        # transformers' own loss with num_items_in_batch is the same number.
        with torch.no_grad():
            hf = model(input_ids=ids, attention_mask=mask, use_cache=False, labels=torch.tensor([e["labels"]]),
                       num_items_in_batch=total).loss
        assert abs(float(hf) - float(loss)) <= 1e-5 * abs(float(loss)) + 1e-7, (float(hf), float(loss))
    return loss_sum


def seqcls_step(model, examples):
    """Backward of the mean over the step's examples of CE(pooled logits, label); returns the loss."""
    n = len(examples)
    loss_sum = 0.0
    for e in examples:
        ids = torch.tensor([e["input_ids"]])
        mask = torch.ones_like(ids)
        label = torch.tensor([e["label"]])
        logits = model(input_ids=ids, attention_mask=mask).logits
        assert logits.shape == (1, 3), logits.shape
        loss = F.cross_entropy(logits.float(), label) / n
        loss.backward()
        loss_sum += float(loss)
        with torch.no_grad():
            hf = model(input_ids=ids, attention_mask=mask, labels=label).loss
        assert abs(float(hf) / n - float(loss)) <= 1e-5 * abs(float(loss)) + 1e-7, (float(hf), float(loss))
    return loss_sum


def total_norm(tensors):
    """The 2-norm of all tensors together, as clip_grad_norm_ computes it (norm of the per-tensor norms)."""
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])))


def train(case, examples, model_dir, init_dir):
    base = load_base(model_dir)
    model = PeftModel.from_pretrained(base, init_dir, is_trainable=True)
    model.train()
    params = [(adapter_key(n), p) for n, p in model.named_parameters() if p.requires_grad]
    keys = [k for k, _ in params]
    assert len(set(keys)) == len(keys), keys
    assert set(keys) == set(get_peft_model_state_dict(model).keys()), \
        (sorted(set(keys) ^ set(get_peft_model_state_dict(model).keys())))
    saved = load_file(os.path.join(init_dir, "adapter_model.safetensors"))
    assert set(saved) == set(keys), sorted(set(saved) ^ set(keys))
    for k, p in params:
        assert torch.equal(p.detach(), saved[k]), f"{k}: loaded adapter differs from the saved file"

    trainable = [p for _, p in params]
    optimizer = torch.optim.AdamW(trainable, lr=case.lr, betas=case.betas, eps=case.eps,
                                  weight_decay=case.weight_decay, amsgrad=False, foreach=False, fused=False)
    scheduler = get_scheduler(case.schedule, optimizer, num_warmup_steps=case.warmup, num_training_steps=case.steps)
    step_fn = seqcls_step if case.model == "seqcls" else causal_step
    per_step = case.batch_size * case.grad_accum
    out, losses, lrs, norms = {}, [], [], []
    for s in range(case.steps):
        batch = [examples[(s * per_step + j) % len(examples)] for j in range(per_step)]
        optimizer.zero_grad(set_to_none=True)
        loss = step_fn(model, batch)
        assert math.isfinite(loss), (case.name, s, loss)
        grads = [p.grad for p in trainable]
        assert all(g is not None for g in grads)
        norm = total_norm(grads)
        if s == 0:
            for k, p in params:
                g = p.grad
                assert torch.isfinite(g).all(), f"{case.name}: gradient of {k} not finite"
                assert float(g.abs().max()) > 0, f"{case.name}: gradient of {k} is zero"
                out[f"grad.{k}"] = g.detach().clone().contiguous()
            zeros = sum(int((p.grad == 0).sum()) for p in trainable)
            print(f"  {case.name}: {len(params)} trainable tensors, "
                  f"{sum(p.numel() for p in trainable)} values, {zeros} exactly-zero gradient entries")
        if case.max_grad_norm > 0:
            clipped = float(torch.nn.utils.clip_grad_norm_(trainable, case.max_grad_norm, foreach=False))
            assert abs(clipped - norm) <= 1e-5 * norm, (clipped, norm)
        losses.append(loss)
        norms.append(norm)
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()
        scheduler.step()
        for k, p in params:
            out[f"step{s}.{k}"] = p.detach().clone().contiguous()
        print(f"  step {s}: examples {[(s * per_step + j) % len(examples) for j in range(per_step)]}, "
              f"loss {loss:.6f}, grad norm {norm:.6f}, lr {lrs[-1]:.6g}")
    out["loss"] = torch.tensor(losses, dtype=torch.float32)
    out["lr"] = torch.tensor(lrs, dtype=torch.float32)
    out["grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    return out, losses, norms


def make_case(out_dir, case, tok, eos_id, gain=1.0):
    d = os.path.join(out_dir, case.name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    records = case.make_data(torch.Generator().manual_seed(case.seed))
    examples = [tokenize(r, tok, eos_id) for r in records]
    assert len(examples) % (case.batch_size * case.grad_accum) == 0  # no partial batch at an epoch's end
    for e in examples:
        assert 2 <= len(e["input_ids"]) <= SEQ_LEN and all(0 <= i < SHAPE["vocab_size"] for i in e["input_ids"])
    for fname, rows in (("data.jsonl", records), ("tokenized.jsonl", examples)):
        with open(os.path.join(d, fname), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    with open(os.path.join(d, "args.json"), "w") as f:
        json.dump(case.args(), f, indent=2)
        f.write("\n")
    model_dir = os.path.join(out_dir, "models", case.model)
    init_dir = os.path.join(d, "init")
    make_init(case, model_dir, init_dir, gain)
    tensors, losses, norms = train(case, examples, model_dir, init_dir)
    for k, t in tensors.items():
        assert t.dtype == torch.float32 and t.is_contiguous(), k
    save_file(tensors, os.path.join(d, "expected.safetensors"),
              metadata={"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__, "script": "scripts/make_train_reference.py"})
    return losses, norms


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, REPO_DIR), help="output directory")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    os.makedirs(args.out, exist_ok=True)
    for name in MODELS:
        make_model(args.out, name)
    tok = Tokenizer.from_file(TOKENIZER)
    eos_id = tok.token_to_id(EOS_TOKEN)
    print(f"tokenizer: {EOS_TOKEN} is id {eos_id}")
    assert eos_id is not None and eos_id < SHAPE["vocab_size"]
    summary = []
    for case in CASES:
        print(f"case {case.name}:")
        gains = (1.0, 2.0, 4.0) if case.max_grad_norm > 0 else (1.0,)
        for gain in gains:
            losses, norms = make_case(args.out, case, tok, eos_id, gain)
            if case.max_grad_norm <= 0 or max(norms) > case.max_grad_norm:
                break
            print(f"  no step's gradient norm exceeds {case.max_grad_norm}; scaling the initial adapter up")
        else:
            raise AssertionError(f"{case.name}: clipping never engages (norms {norms})")
        summary.append((case.name, gain, losses, norms))
    for name, gain, losses, norms in summary:
        print(f"{name}: init gain {gain}, losses {[round(x, 6) for x in losses]}, "
              f"grad norms {[round(n, 6) for n in norms]}")
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.out) for f in fs)
    print(f"wrote {args.out}: {size} bytes")


if __name__ == "__main__":
    main()

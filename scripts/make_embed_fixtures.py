#!/usr/bin/env python3
"""Reference data for wick's embedders (issue 24), made with tokenizers, sentencepiece, transformers and
sentence-transformers on the GPU machine (CPU math in f32).

Tokenizers, trained here on the repository's tokenizer corpus (tests/fixtures/tokenizer/mixed_1mb.txt):
  wordpiece-uncased  WordPiece, BertNormalizer (lowercase, accents stripped, CJK split), BertPreTokenizer,
                     TemplateProcessing [CLS] $A [SEP]
  wordpiece-cased    the same without lowercasing or stripping, BertProcessing
  wordpiece-mpnet    uncased WordPiece with <s> </s> specials, RobertaProcessing
  unigram            sentencepiece Unigram (4,000 pieces, character coverage 0.9995: the rarest characters are <unk>;
                     nmt_nfkc rules → Precompiled charsmap), Replace " {2,}", Metaspace,
                     TemplateProcessing <s> $A </s> (as transformers converts XLM-R's tokenizer)
Each goes to <out>/tokenizers/<name>/tokenizer.json, with <out>/tokenizers/<name>.ids.jsonl holding, for every
text of the corpus, {"text", "ids" (with the specials), "plain" (without)}.

Sentence-transformers folders of tiny random encoders (weights N(0, 1/fan_in), embeddings N(0, 1), LayerNorms
perturbed into [0.5, 1.5], biases N(0, 0.1)), at <out>/models/<name>/:
  bert-mean-norm     BertModel, mean pooling, Normalize, max_seq_length 24 (long texts truncated)
  bert-cls-prompts   BertModel (cased tokenizer), CLS pooling, prompts query/passage
  bert-max           BertModel, max pooling
  mpnet-mean-norm    MPNetModel (relative position buckets), mean pooling, Normalize
  xlmr-mean-prompts  XLMRobertaModel (unigram tokenizer), mean pooling, Normalize, prompts as multilingual E5
  qwen2-last-norm    Qwen2Model (the repository's trained BPE tokenizer), last-token pooling, Normalize
  qwen2-mean-exclude-prompt  Qwen2Model, mean pooling with include_prompt false (the prompt's tokens left out of the
                     mean), prompts as multilingual E5 (whose trailing space the byte-level tokenizer keeps)
  bert-mean-exclude-prompt   BertModel (cased tokenizer), the same with [CLS] before the prompt and [SEP] after it
with reference.safetensors:
  embeddings f32 [n, dim]: SentenceTransformer.encode(texts) (texts in texts.json)
  query f32 [n, dim]: encode(texts, prompt_name="query") where the model has prompts
and ids.jsonl: the ids the model's tokenizer gives each text as encode sees them (truncated, with specials).

Usage: python3 scripts/make_embed_fixtures.py [--out tests/fixtures/embed]
"""
import argparse
import json
import math
import os
import shutil
import tempfile

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (BertConfig, BertModel, MPNetConfig, MPNetModel, PreTrainedTokenizerFast, Qwen2Config,
                          Qwen2Model, XLMRobertaConfig, XLMRobertaModel)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOK_DIR = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

# Texts the corpus file lacks: accents (composed and decomposed), CJK, emoji (with joiners and modifiers), long
# words, control and zero-width characters, whitespace of every kind.
EXTRA = [
    "Café crème brûlée, naïve façade, Ångström, São Paulo, Dvořák, Łódź, İstanbul, ß, ẞ",
    "Cafe\u0301 cre\u0300me (decomposed accents)",
    "東京は日本の首都です。北京欢迎你！서울특별시 한국어 テスト カタカナ ｶﾀｶﾅ",
    "混合English与中文mixed文本",
    "Emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨ and text",
    "Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious "
    "Donaudampfschifffahrtsgesellschaftskapitänswitwe",
    "x" * 150,
    "zero\u200bwidth\u200djoiner\ufeffbom and soft\u00adhyphen and nbsp\u00a0here and ideographic\u3000space",
    "control\x00chars\x07and\x1b[31mescapes",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ and ligatures ﬁ ﬂ and ① ² ½",
    "Ελληνικά κείμενα, русский текст, עברית, العربية, हिन्दी, ไทย",
    "query: what is the capital of France?",
    "passage: Paris is the capital and largest city of France.",
]


def corpus_texts():
    with open(os.path.join(TOK_DIR, "corpus.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(line) for line in f if line.strip()]
    return texts + EXTRA


def training_lines():
    with open(os.path.join(TOK_DIR, "mixed_1mb.txt"), encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    return lines + [t for text in corpus_texts() for t in text.split("\n") if t.strip()]


def wrap(tok, **specials):
    return PreTrainedTokenizerFast(tokenizer_object=tok, **specials)


def wordpiece(lines, lowercase, specials, processor):
    tok = Tokenizer(models.WordPiece(unk_token=specials["unk_token"], max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None if lowercase else False, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    order = [specials[k] for k in ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")]
    trainer = trainers.WordPieceTrainer(vocab_size=700, special_tokens=order)
    tok.train_from_iterator(lines, trainer)
    cls, sep = specials["cls_token"], specials["sep_token"]
    tok.post_processor = processor(tok, cls, sep)
    tok.decoder = decoders.WordPiece()
    return wrap(tok, **specials)


def template(tok, cls, sep):
    c, s = tok.token_to_id(cls), tok.token_to_id(sep)
    return processors.TemplateProcessing(single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
                                         special_tokens=[(cls, c), (sep, s)])


def bert_processing(tok, cls, sep):
    return processors.BertProcessing((sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)))


def roberta_processing(tok, cls, sep):
    return processors.RobertaProcessing((sep, tok.token_to_id(sep)), (cls, tok.token_to_id(cls)))


BERT_SPECIALS = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                     mask_token="[MASK]")
ROBERTA_SPECIALS = dict(pad_token="<pad>", unk_token="<unk>", cls_token="<s>", sep_token="</s>",
                        mask_token="<mask>", bos_token="<s>", eos_token="</s>")


def unigram(lines, workdir):
    """sentencepiece's Unigram, laid out as transformers converts XLM-R's: <s> <pad> </s> <unk>, the pieces after
    sentencepiece's own three specials, <mask>."""
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:  # no sentencepiece: tokenizers' own Unigram trainer, NFKC in place of the charsmap
        print("sentencepiece missing: unigram tokenizer trained by tokenizers, NFKC normaliser (no Precompiled)")
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.train_from_iterator(lines, trainers.UnigramTrainer(vocab_size=900, special_tokens=specials,
                                                                unk_token="<unk>"))
        tok.add_special_tokens(["<mask>"])
        return finish_unigram(tok)

    prefix = os.path.join(workdir, "spm")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=prefix, vocab_size=4000,
                                   model_type="unigram", character_coverage=0.9995, hard_vocab_limit=False,
                                   normalization_rule_name="nmt_nfkc", minloglevel=2)
    proto = pb.ModelProto()
    with open(prefix + ".model", "rb") as f:
        proto.ParseFromString(f.read())
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p.piece, p.score) for p in proto.pieces[3:]]
    vocab.append(("<mask>", 0.0))
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    return finish_unigram(tok)


def finish_unigram(tok):
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    for special in ("<s>", "<pad>", "</s>", "<unk>", "<mask>"):
        tok.add_special_tokens([special])
    return wrap(tok, **ROBERTA_SPECIALS)


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm.weight" in name or name.endswith("norm.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed" in name or p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))


def st_modules():
    try:
        from sentence_transformers.models import Normalize, Pooling, Transformer
    except ImportError:  # later layouts
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    return Transformer, Pooling, Normalize


def write_ids(path, tok, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t, "ids": tok(t)["input_ids"],
                                "plain": tok(t, add_special_tokens=False)["input_ids"]}, ensure_ascii=False) + "\n")


def build_model(kind, tok, gen):
    common = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2)
    vocab = len(tok)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=vocab, max_position_embeddings=64, type_vocab_size=2,
                                     pad_token_id=tok.pad_token_id, **common))
    elif kind == "mpnet":
        model = MPNetModel(MPNetConfig(vocab_size=vocab, max_position_embeddings=66, pad_token_id=tok.pad_token_id,
                                       relative_attention_num_buckets=32, **common))
    elif kind == "xlmr":
        model = XLMRobertaModel(XLMRobertaConfig(vocab_size=vocab, max_position_embeddings=66, type_vocab_size=1,
                                                 pad_token_id=tok.pad_token_id, **common))
    else:
        model = Qwen2Model(Qwen2Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                       tie_word_embeddings=False))
    randomize(model, gen)
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "embed"))
    args = ap.parse_args()
    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "tokenizers"))
    os.makedirs(os.path.join(out, "models"))
    texts = corpus_texts()
    lines = training_lines()
    work = tempfile.mkdtemp()

    toks = {
        "wordpiece-uncased": wordpiece(lines, True, BERT_SPECIALS, template),
        "wordpiece-cased": wordpiece(lines, False, BERT_SPECIALS, bert_processing),
        "wordpiece-mpnet": wordpiece(lines, True, ROBERTA_SPECIALS, roberta_processing),
        "unigram": unigram(lines, work),
    }
    qwen_tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(TOK_DIR, "trained", "tokenizer.json"),
                                       pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    for name, tok in toks.items():
        tok.save_pretrained(os.path.join(out, "tokenizers", name))
        write_ids(os.path.join(out, "tokenizers", name + ".ids.jsonl"), tok, texts)
        print(f"tokenizer {name}: vocab {len(tok)}")

    Transformer, Pooling, Normalize = st_modules()
    from sentence_transformers import SentenceTransformer

    E5 = {"query": "query: ", "passage": "passage: "}
    variants = [
        ("bert-mean-norm", "bert", toks["wordpiece-uncased"], "mean", True, None, 24),
        ("bert-cls-prompts", "bert", toks["wordpiece-cased"], "cls", False, E5, 60),
        ("bert-max", "bert", toks["wordpiece-uncased"], "max", False, None, 60),
        ("mpnet-mean-norm", "mpnet", toks["wordpiece-mpnet"], "mean", True, None, 60),
        ("xlmr-mean-prompts", "xlmr", toks["unigram"], "mean", True, E5, 60),
        ("qwen2-last-norm", "qwen2", qwen_tok, "lasttoken", True, None, 200),
        ("qwen2-mean-exclude-prompt", "qwen2", qwen_tok, "mean", True, E5, 200),
        ("bert-mean-exclude-prompt", "bert", toks["wordpiece-cased"], "mean", True, E5, 60),
    ]
    gen = torch.Generator().manual_seed(24)
    for name, kind, tok, pooling, normalize, prompts, max_len in variants:
        include_prompt = not name.endswith("exclude-prompt")
        hf = os.path.join(work, name)
        build_model(kind, tok, gen).save_pretrained(hf)
        tok.save_pretrained(hf)
        word = Transformer(hf, max_seq_length=max_len)
        modules = [word, Pooling(word.get_word_embedding_dimension(), pooling_mode=pooling,
                                 include_prompt=include_prompt)]
        if normalize:
            modules.append(Normalize())
        st = SentenceTransformer(modules=modules, device="cpu", prompts=prompts)
        dest = os.path.join(out, "models", name)
        st.save(dest)
        st = SentenceTransformer(dest, device="cpu")  # as a user loads it
        ref = {"embeddings": torch.from_numpy(st.encode(texts, batch_size=8, convert_to_numpy=True)).float()}
        if prompts:
            ref["query"] = torch.from_numpy(
                st.encode(texts, batch_size=8, prompt_name="query", convert_to_numpy=True)).float()
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(dest, "reference.safetensors"))
        with open(os.path.join(dest, "texts.json"), "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False, indent=0)
        with open(os.path.join(dest, "ids.jsonl"), "w", encoding="utf-8") as f:
            for t in texts:
                features = st.tokenize([t])
                ids = features["input_ids"][0][features["attention_mask"][0].bool()].tolist()
                f.write(json.dumps({"ids": ids}) + "\n")
        print(f"model {name}: dim {ref['embeddings'].shape[1]}, "
              f"norms {ref['embeddings'].norm(dim=1).min():.3f}..{ref['embeddings'].norm(dim=1).max():.3f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

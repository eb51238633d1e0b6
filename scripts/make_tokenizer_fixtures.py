#!/usr/bin/env python3
"""Reference data for wick's tokenizer tests (tests/fixtures/tokenizer/).

Two steps:

  corpus     (stdlib only; run once on a developer machine, output committed)
             writes corpus.jsonl (one JSON string per line: the hand-made cases) and
             mixed_1mb.txt (1 MiB of prose, code, markdown, CJK, Arabic, Devanagari, emoji ...
             assembled with a fixed seed from files found on a Debian + pyenv machine).

  reference  (needs `tokenizers` 0.23 and, for the chat template, `transformers`; no network)
             reads the real Qwen tokenizer (scripts/fetch_tokenizer.sh puts it in
             tests/fixtures/tokenizer/qwen/) and writes, with HF tokenizers as the reference:
               qwen.ids.jsonl              ids of every corpus line (encode(add_special_tokens=False))
               qwen.mixed_1mb.ids.bin      ids of mixed_1mb.txt, int32 little-endian
               qwen.decode.jsonl           decode() of random id sequences (U+FFFD cases), both
                                           skip_special_tokens values
               qwen.chat.jsonl             transformers' apply_chat_template for a few conversations
               templates/*.expected.jsonl  the Qwen2 / Qwen2.5 templates of templates/ rendered by jinja2
               trained/tokenizer.json      a small byte-level BPE trained with `tokenizers` (only when
                                           absent, or with --retrain): NFC, ByteLevel(add_prefix_space),
                                           added tokens with lstrip / rstrip / single_word / normalized
               trained_str/tokenizer.json  the same with merges written as "a b" strings and
                                           "ignore_merges": true
               trained.ids.jsonl, trained.mixed_64k.ids.bin, trained_str.ids.jsonl, trained.decode.jsonl
             and prints HF's single-thread encode speed on mixed_1mb.txt (MB/s).
             Every output is checked after writing (re-read, re-encoded, decoded where lossless);
             an existing output that differs is reported before it is replaced.

usage:
  python3 scripts/make_tokenizer_fixtures.py corpus    [--out tests/fixtures/tokenizer]
  python3 scripts/make_tokenizer_fixtures.py reference [--qwen tests/fixtures/tokenizer/qwen]
                                                       [--out tests/fixtures/tokenizer] [--retrain]
  python3 scripts/make_tokenizer_fixtures.py chat      (qwen.chat.jsonl only)
"""

import argparse
import glob
import json
import os
import random
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer")

MIXED_BYTES = 1 << 20
SMALL_BYTES = 1 << 16  # trained tokenizer: mixed_1mb.txt up to the last '\n' before this many bytes

# --------------------------------------------------------------------------------------------------
# corpus

# Short texts in scripts a Debian machine has no files of. Written for this corpus.
MULTILINGUAL = [
    "人工智能正在改变我们的生活方式。今天的天气很好，我们去公园散步吧！这个模型有十亿个参数。",
    "北京是中华人民共和国的首都，也是全国的政治、文化中心。请把这段文字翻译成英文。",
    "機械学習は人工知能の一分野です。東京タワーは1958年に完成しました。ありがとうございます！",
    "今日はいい天気ですね。カタカナとひらがなと漢字を混ぜて書きます。ｶﾀｶﾅ（半角）も少し。",
    "안녕하세요! 저는 한국어를 공부하고 있습니다. 서울은 대한민국의 수도입니다.",
    "مرحبا بالعالم! اللغة العربية تكتب من اليمين إلى اليسار. هذا نص تجريبي للاختبار ١٢٣٤٥.",
    "الذكاء الاصطناعي يغيّر طريقة عملنا، وَالتَّشْكِيلُ يَظْهَرُ أَحْيَانًا فِي النُّصُوصِ.",
    "नमस्ते दुनिया! हिन्दी देवनागरी लिपि में लिखी जाती है। कृत्रिम बुद्धिमत्ता का भविष्य उज्ज्वल है। ०१२३४५६७८९",
    "Привет, мир! Это проверка токенизатора на русском языке. Ёжик в тумане — 2024 год.",
    "Γειά σου κόσμε! Η ελληνική γλώσσα έχει τόνους: ά, έ, ή, ί, ό, ύ, ώ.",
    "שלום עולם! עברית נכתבת מימין לשמאל.",
    "สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ",
    "Xin chào thế giới! Tiếng Việt có rất nhiều dấu thanh: à á ả ã ạ ằ ắ ẳ ẵ ặ.",
    "Grüße aus Köln! Die Straße ist naß. Ça va? Où est la bibliothèque? ¿Qué tal? ¡Hola!",
    "Emoji: 👋🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵 🇺🇸 👍🏿 🧑🏻‍🚀 1️⃣ #️⃣ 🫠",
    "Math: ∀x ∈ ℝ, x² ≥ 0; ∑ᵢ aᵢ = ½·π·r²; √2 ≈ 1.41421356; ∞ ≠ ∅; ⅓ + ⅔ = 1; Ⅻ o'clock.",
]

CASES = [
    # English prose and contractions in mixed case
    "Hello world",
    "Hello, world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you'll like it; they've said it's what we'd want. Don't! DON'T! I'M HERE. You'Ll See. WE'D, THEY'RE, I've, SHE'S.",
    "It's 'quoted' and ''doubly'' and ' spaced ' and 'S 'T 'RE 'VE 'M 'LL 'D and 'ſ (long s) and 'K (Kelvin sign K).",
    "rock 'n' roll, ma'am, o'clock, y'all, '90s, 'tis",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "int main(int argc, char** argv) {\n\tstd::vector<int> v{1, 2, 3};\n\treturn v.size() > 2 ? 0 : 1;\n}\n",
    "const x = {\"key\": [1, 2.5e-3, null, true], 'other': `tmpl ${y}`};  // comment\n/* block */",
    "<html><body><div class=\"a\">x &amp; y &lt; z</div></body></html>",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%' ORDER BY id DESC;",
    "https://example.com/path/to/page?query=1&lang=en#section-2 user@example.org",
    "C:\\Users\\name\\Documents\\file.txt and /usr/local/bin/python3.11",
    # numbers
    "1234567890 3.14159265358979 1,000,000 1e10 -42 +7 0x1F 0b1010 ２０２４年 ①②③ ¹²³ ٣٤٥ ०१२",
    "Phone: +1 (555) 123-4567. Date: 2024-03-15T12:34:56Z. Version v1.2.3-rc.4",
    # whitespace runs
    "  leading spaces",
    "trailing spaces   ",
    "a  b   c    d     e",
    "tabs\tand\t\ttabs\t",
    "line1\nline2\n\nline4\n\n\n",
    "windows\r\nline endings\r\n\r\nend",
    "old mac\rline\r",
    " \n \n  \n\t\n",
    "   ",
    " ",
    "\n",
    "\t",
    "",
    "x\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\ny",
    " " * 100 + "hundred spaces before",
    "indented:\n" + "    " * 8 + "deep\n" + "\t" * 6 + "tabs",
    # NBSP, zero-width and other invisible characters
    "non\u00a0breaking\u00a0space and narrow\u202fnbsp and em\u2003space and ideographic\u3000space",
    "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom",
    "line\u2028separator\u2029paragraph\u0085nel",
    "mongolian\u180evowel separator",
    "soft\u00adhyphen and bidi \u202aLRE\u202c \u200fRLM",
    "NUL\x00byte and \x01\x02\x1f\x7f controls",
    "\x00",
    # combining marks that NFC changes
    "cafe\u0301 vs café",
    "A\u030a (A + ring) → Å, \u212b (angstrom sign), \u2126 (ohm sign), K\u0301",
    "n\u0303 o\u0308 u\u0308 e\u0300 i\u0302 c\u0327",
    "\u0301 leading combining mark",
    "e\u0301\u0301\u0301 stacked",
    "한국어 자모: \u1112\u1161\u11ab\u1100\u1173\u11af",
    "q\u0307\u0323 (dot above + dot below reorder)",
    # special tokens inside text
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><|endoftext|>text<|endoftext|>",
    "before<|im_end|>after <|im_start|> spaced <|im_end|>",
    "<think>\nLet me think.\n</think>\n\nThe answer is 42.",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    "<|fim_prefix|>def f(x):<|fim_suffix|>    return y<|fim_middle|>",
    "<|im_start <|im_end| <|im_start|<|im_end|> <|endoftext|>> <<|im_start|>>",
    "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>",
    "<|im_start|>\u0301combining after a special token",
    "<s></s><pad><unk>[CLS][SEP][MASK]",
    # tokens of the trained fixture: lstrip / rstrip / single_word / normalized
    " <mask> x",
    "a   <mask>   b",
    "[SEP]   tail",
    "x[SEP]\n\ny",
    "x<w>y x <w> y <w> (<w>) é<w>",
    "café and cafe\u0301 and CAFÉ",
    "New York, New  York, new york, NewYork",
    "<mask><mask>   <mask>[SEP][SEP]   <w><w>",
    # very long words
    "a" * 5000,
    "supercalifragilisticexpialidocious" * 40,
    "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "9" * 3000,
    "!" * 2000,
    "ab" * 2000 + " " + "的" * 1000,
    "https://example.com/" + "very-long-path-segment/" * 60,
    "😀" * 500,
]


def corpus(args):
    out = args.out
    os.makedirs(out, exist_ok=True)
    cases = CASES + MULTILINGUAL
    with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"corpus.jsonl: {len(cases)} cases")

    rng = random.Random(20240315)
    py = sys.base_prefix + f"/lib/python{sys.version_info.major}.{sys.version_info.minor}"
    code_files = sorted(glob.glob(py + "/*.py"))
    prose_files = sorted(glob.glob("/usr/share/common-licenses/*"))
    prose_files = [p for p in prose_files if os.path.isfile(p)]
    md_files = sorted(glob.glob(os.path.expanduser("~/.rustup/toolchains/*/share/doc/rust/html/releases.md")))[:1]
    cjk_files = sorted(glob.glob(py + "/test/cjkencodings/*-utf8.txt"))

    def read(p):
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read()

    def chunk(text, lo=300, hi=3000):
        if len(text) <= lo:
            return text
        n = rng.randint(lo, min(hi, len(text)))
        s = rng.randint(0, len(text) - n)
        return text[s:s + n]

    def synthetic_words(n):  # words of random letters from scripts without local files
        ranges = [(0x0905, 0x0939), (0x0627, 0x064A), (0x0410, 0x044F), (0x3041, 0x3096), (0x4E00, 0x9FA5),
                  (0xAC00, 0xD7A3), (0x05D0, 0x05EA), (0x0E01, 0x0E2E)]
        words = []
        for _ in range(n):
            a, b = rng.choice(ranges)
            words.append("".join(chr(rng.randint(a, b)) for _ in range(rng.randint(1, 8))))
        return " ".join(words)

    sources = [
        (0.30, lambda: chunk(read(rng.choice(prose_files)))),
        (0.28, lambda: chunk(read(rng.choice(code_files)))),
        (0.12, lambda: chunk(read(md_files[0])) if md_files else chunk(read(rng.choice(prose_files)))),
        (0.10, lambda: read(rng.choice(cjk_files))),
        (0.14, lambda: " ".join(rng.sample(MULTILINGUAL, 3))),
        (0.06, lambda: synthetic_words(rng.randint(10, 60))),
    ]
    parts, size = [], 0
    while size < MIXED_BYTES:
        r, acc = rng.random(), 0.0
        for p, make in sources:
            acc += p
            if r <= acc:
                break
        piece = make() + rng.choice(["\n", "\n\n", " ", "\r\n", "\n\n\n", "\t"])
        parts.append(piece)
        size += len(piece.encode("utf-8"))
    data = "".join(parts).encode("utf-8")[:MIXED_BYTES].decode("utf-8", errors="ignore")
    with open(os.path.join(out, "mixed_1mb.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(data)
    print(f"mixed_1mb.txt: {len(data.encode('utf-8'))} bytes")


# --------------------------------------------------------------------------------------------------
# reference


def read_corpus(out):
    with open(os.path.join(out, "corpus.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_mixed(out, limit=None):
    with open(os.path.join(out, "mixed_1mb.txt"), "rb") as f:
        data = f.read()
    if limit is not None:
        data = data[: data.rfind(b"\n", 0, limit) + 1]
    return data.decode("utf-8")


class Writer:
    """Writes outputs; reports when an existing file had other contents."""

    def __init__(self, out):
        self.out = out
        self.changed = []

    def write(self, name, data):
        path = os.path.join(self.out, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(data, str):
            data = data.encode("utf-8")
        if os.path.exists(path):
            with open(path, "rb") as f:
                if f.read() != data:
                    self.changed.append(name)
                    print(f"  CHANGED: {name} differs from the file that was there", file=sys.stderr)
        with open(path, "wb") as f:
            f.write(data)
        print(f"  wrote {name} ({len(data)} bytes)")


def ids_jsonl(tok, texts):
    lines = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=False).ids
        lines.append(json.dumps(ids, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def ids_bin(ids):
    return struct.pack(f"<{len(ids)}i", *ids)


def check_roundtrip(tok, texts, name):
    bad = 0
    for t in texts:
        if tok.decode(tok.encode(t, add_special_tokens=False).ids, skip_special_tokens=False) != t:
            bad += 1
    # NFC changes some texts, so a few lines do not round-trip; print how many.
    print(f"  {name}: decode(encode(s)) == s for {len(texts) - bad}/{len(texts)} lines")


def decode_cases(tok, seed, special_ids):
    rng = random.Random(seed)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    cases = []
    for i in range(300):
        n = rng.randint(1, 12)
        if i % 3 == 0:  # mostly high-id (multi-byte fragment) tokens: many invalid UTF-8 sequences
            ids = [rng.randint(vocab // 2, vocab - 1) for _ in range(n)]
        elif i % 3 == 1:
            ids = [rng.randint(0, vocab - 1) for _ in range(n)]
        else:
            ids = [rng.choice(special_ids) if rng.random() < 0.3 else rng.randint(0, 400) for _ in range(n)]
        if i % 50 == 7:
            ids.append(vocab + 100)  # an id no token has: HF drops it
        for skip in (False, True):
            cases.append({"ids": ids, "skip_special": skip, "text": tok.decode(ids, skip_special_tokens=skip)})
    return "\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n"


CONVERSATIONS = [
    ([{"role": "user", "content": "Hello!"}], True, None),
    ([{"role": "user", "content": "Hello!"}], True, False),
    ([{"role": "user", "content": "Hello!"}], False, None),
    ([{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Where is the treasure?"}], True, None),
    ([{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
      {"role": "user", "content": "And 3+3?"}], True, None),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "<think>\nThe user greets.\n</think>\n\nHello! How can I help?"}],
     False, None),
    ([{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nr1\n</think>\n\nA1"},
      {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}], False, None),
    ([{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1", "reasoning_content": "because"}], True, None),
    ([{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "Let me check."},
      {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "{\"sky\": \"clear\"}"}], True, None),
    ([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "system", "content": "S2"}], True, True),
]


def render_with_jinja(template, messages, add_generation_prompt, **kwargs):
    """transformers' rendering (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols)."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, **kwargs)


def chat_cases(qwen_dir):
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(qwen_dir)
        render = lambda m, gen, **kw: tok.apply_chat_template(m, tokenize=False, add_generation_prompt=gen, **kw)
        print("  chat: transformers apply_chat_template")
    except Exception as e:  # no transformers, or it cannot read the folder: render as transformers does
        with open(os.path.join(qwen_dir, "tokenizer_config.json"), encoding="utf-8") as f:
            template = json.load(f)["chat_template"]
        render = lambda m, gen, **kw: render_with_jinja(template, m, gen, **kw)
        print(f"  chat: jinja2 with transformers' settings (transformers unavailable: {type(e).__name__})")
    lines = []
    for messages, gen, thinking in CONVERSATIONS:
        kwargs = {} if thinking is None else {"enable_thinking": thinking}
        text = render(messages, gen, **kwargs)
        lines.append(json.dumps({"messages": messages, "add_generation_prompt": gen, "enable_thinking": thinking,
                                 "text": text}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def template_cases(out):
    """templates/<name>.expected.jsonl: the Qwen2 / Qwen2.5 templates kept in templates/, rendered."""
    w = Writer(out)
    for name in ("qwen2", "qwen2_5"):
        with open(os.path.join(out, "templates", name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        lines = []
        for messages, gen, _ in CONVERSATIONS:
            text = render_with_jinja(template, messages, gen)
            lines.append(json.dumps({"messages": messages, "add_generation_prompt": gen, "text": text}, ensure_ascii=False))
        w.write(f"templates/{name}.expected.jsonl", "\n".join(lines) + "\n")


def chat(args):
    Writer(args.out).write("qwen.chat.jsonl", chat_cases(args.qwen))
    template_cases(args.out)


def train_small(texts):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers, AddedToken
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False),
                            AddedToken("[SEP]", rstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("<w>", single_word=True, normalized=False),
                    AddedToken("café", normalized=True),
                    AddedToken("New York", normalized=False)])
    return tok


def string_merges(tokenizer_json):
    j = json.loads(tokenizer_json)
    merges = j["model"]["merges"]
    j["model"]["merges"] = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in merges]
    j["model"]["ignore_merges"] = True
    return json.dumps(j, ensure_ascii=False, indent=2)


def reference(args):
    from tokenizers import Tokenizer
    import tokenizers
    out, w = args.out, Writer(args.out)
    print(f"tokenizers {tokenizers.__version__}")
    texts = read_corpus(out)
    mixed = read_mixed(out)
    small = read_mixed(out, SMALL_BYTES)
    qwen_json = os.path.join(args.qwen, "tokenizer.json")
    qwen = Tokenizer.from_file(qwen_json)

    print("qwen:")
    w.write("qwen.ids.jsonl", ids_jsonl(qwen, texts))
    mixed_ids = qwen.encode(mixed, add_special_tokens=False).ids
    w.write("qwen.mixed_1mb.ids.bin", ids_bin(mixed_ids))
    check_roundtrip(qwen, texts, "corpus")
    specials = [qwen.token_to_id(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "<tool_call>")]
    w.write("qwen.decode.jsonl", decode_cases(qwen, 7, specials))
    w.write("qwen.chat.jsonl", chat_cases(args.qwen))
    template_cases(out)

    # Speed: best of 5 single-thread encodes of the 1 MiB text (encode of one string does not use
    # rayon; RAYON_NUM_THREADS=1 makes sure).
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        qwen.encode(mixed, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
    mb = len(mixed.encode("utf-8")) / 1e6
    print(f"HF tokenizers {tokenizers.__version__} single-thread encode of mixed_1mb.txt: "
          f"{mb / best:.2f} MB/s ({best * 1000:.1f} ms for {mb:.3f} MB, best of 5)")

    print("trained:")
    trained_path = os.path.join(out, "trained", "tokenizer.json")
    if args.retrain or not os.path.exists(trained_path):
        tok = train_small(texts + [mixed])
        w.write("trained/tokenizer.json", tok.to_str(pretty=True))
    trained = Tokenizer.from_file(trained_path)
    with open(trained_path, encoding="utf-8") as f:
        w.write("trained_str/tokenizer.json", string_merges(f.read()))
    trained_str = Tokenizer.from_file(os.path.join(out, "trained_str", "tokenizer.json"))
    w.write("trained.ids.jsonl", ids_jsonl(trained, texts))
    w.write("trained.mixed_64k.ids.bin", ids_bin(trained.encode(small, add_special_tokens=False).ids))
    w.write("trained_str.ids.jsonl", ids_jsonl(trained_str, texts))
    check_roundtrip(trained, texts, "corpus (trained)")
    specials = [trained.token_to_id(t) for t in ("<|endoftext|>", "<mask>", "[SEP]", "<w>", "New York")]
    w.write("trained.decode.jsonl", decode_cases(trained, 11, specials))

    # Self-check: what was written reads back to what HF computes now.
    with open(os.path.join(out, "qwen.mixed_1mb.ids.bin"), "rb") as f:
        raw = f.read()
    assert list(struct.unpack(f"<{len(raw) // 4}i", raw)) == mixed_ids
    with open(os.path.join(out, "qwen.ids.jsonl"), encoding="utf-8") as f:
        for t, line in zip(texts, f):
            assert json.loads(line) == qwen.encode(t, add_special_tokens=False).ids
    print("self-check passed" + (f"; changed: {', '.join(w.changed)}" if w.changed else "; nothing changed"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("--out", default=DEFAULT_OUT)
    r = sub.add_parser("reference")
    r.add_argument("--qwen", default=os.path.join(DEFAULT_OUT, "qwen"), help="folder with the real tokenizer.json")
    r.add_argument("--out", default=DEFAULT_OUT)
    r.add_argument("--retrain", action="store_true", help="train trained/tokenizer.json again")
    h = sub.add_parser("chat", help="only qwen.chat.jsonl (transformers, else jinja2)")
    h.add_argument("--qwen", default=os.path.join(DEFAULT_OUT, "qwen"))
    h.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    {"corpus": corpus, "reference": reference, "chat": chat}[args.cmd](args)


if __name__ == "__main__":
    main()

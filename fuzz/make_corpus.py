#!/usr/bin/env python3
# Builds the seed corpora fuzz/corpus/<target>/ from tests/fixtures (run from the repo root; docs/FUZZING.md).
# Qwen3's chat template is taken from the fetched Qwen tokenizer (scripts/fetch_tokenizer.sh) when it is there.
import glob, json, os, struct
F = 'tests/fixtures'
C = 'fuzz/corpus'
def put(target, name, data):
    d = os.path.join(C, target); os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    open(os.path.join(d, name), 'wb').write(data)
def st(entries, meta=None, pad=True):
    """A safetensors file of (name, dtype, shape, bytes) entries, the header padded to 8 unless pad=False."""
    h = {}
    if meta is not None: h['__metadata__'] = meta
    off = 0; data = b''
    for name, dt, shape, b in entries:
        h[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [off, off + len(b)]}
        off += len(b); data += b
    t = json.dumps(h, separators=(',', ':')).encode()
    if pad: t += b' ' * ((8 - len(t) % 8) % 8)
    return struct.pack('<Q', len(t)) + t + data
# safetensors: small fixtures whole, plus hand-made files covering every dtype, metadata, empty and unaligned tensors
for f in [f'{F}/adapters/seqcls-score/reference.safetensors', f'{F}/models/tiny-seqcls/reference.safetensors',
          f'{F}/adapters/seqcls-score/adapter_model.safetensors', f'{F}/train/optim_reference.safetensors']:
    if os.path.getsize(f) <= 16384:
        put('safetensors', f.replace('/', '_').replace('tests_fixtures_', ''), open(f, 'rb').read())
put('safetensors', 'empty.safetensors', st([]))
put('safetensors', 'metadata_only.safetensors', st([], {'format': 'pt'}))
put('safetensors', 'small_model.safetensors', st([
    ('model.embed_tokens.weight', 'BF16', [4, 2], bytes(range(16))),
    ('model.norm.weight', 'F32', [2], struct.pack('<2f', 1.0, 1.0)),
    ('lm_head.weight', 'F16', [4, 2], bytes(16)),
    ('ids', 'I32', [3], struct.pack('<3i', 1, 2, 3)),
    ('scalar', 'F32', [], struct.pack('<f', 2.5)),
    ('empty', 'F32', [0, 4], b''),
], {'format': 'pt'}))
put('safetensors', 'every_dtype.safetensors', st([
    ('f64', 'F64', [1], bytes(8)), ('i64', 'I64', [1], bytes(8)), ('u64', 'U64', [1], bytes(8)),
    ('c64', 'C64', [1], bytes(8)), ('u32', 'U32', [1], bytes(4)), ('i16', 'I16', [1], bytes(2)),
    ('u16', 'U16', [1], bytes(2)), ('i8', 'I8', [1], bytes(1)), ('u8', 'U8', [1], bytes(1)),
    ('bool', 'BOOL', [1], bytes(1)), ('e4m3', 'F8_E4M3', [1], bytes(1)), ('e5m2', 'F8_E5M2', [1], bytes(1)),
    ('e8m0', 'F8_E8M0', [1], bytes(1)), ('f6a', 'F6_E2M3', [4], bytes(3)), ('f6b', 'F6_E3M2', [4], bytes(3)),
    ('f4', 'F4', [2], bytes(1)),
]))
put('safetensors', 'unaligned.safetensors', st([('x', 'U8', [1], b'\x01'), ('y', 'F32', [2], bytes(8)),
                                                ('z', 'BF16', [3], bytes(6))], pad=False))
# config.json
for f in sorted(glob.glob(f'{F}/models/*/config.json')):
    put('config', f.split('/')[-2] + '.json', open(f).read())
# generation_config.json
for f in sorted(glob.glob(f'{F}/models/*/generation_config.json')):
    put('generation_config', f.split('/')[-2] + '.json', open(f).read())
put('generation_config', 'every_field.json', json.dumps({
    'bos_token_id': 151643, 'eos_token_id': 151645, 'pad_token_id': 151643, 'do_sample': False, 'temperature': 0.6,
    'top_p': 0.95, 'top_k': 40, 'min_p': 0.05, 'repetition_penalty': 1.1, 'max_new_tokens': 512,
    'transformers_version': '4.45.0'}, indent=2))
# adapter_config.json
for f in sorted(glob.glob(f'{F}/adapters/*/adapter_config.json')):
    put('adapter_config', f.split('/')[-2] + '.json', open(f).read())
# hub API: revision listings as huggingface.co answers them
put('hub_api', 'model_revision.json', json.dumps({
    '_id': '66e81cefd0a2e1a1b4f6d1e5', 'id': 'Qwen/Qwen2.5-0.5B-Instruct', 'private': False, 'pipeline_tag': 'text-generation',
    'library_name': 'transformers', 'tags': ['transformers', 'safetensors', 'qwen2'], 'downloads': 1, 'likes': 2,
    'modelId': 'Qwen/Qwen2.5-0.5B-Instruct', 'author': 'Qwen', 'sha': '7ae557604adf67be50417f59c2c2f167def9a775',
    'lastModified': '2024-09-25T12:33:08.000Z', 'gated': False, 'disabled': False,
    'config': {'architectures': ['Qwen2ForCausalLM'], 'model_type': 'qwen2'},
    'siblings': [{'rfilename': p} for p in ['.gitattributes', 'LICENSE', 'README.md', 'config.json',
                 'generation_config.json', 'merges.txt', 'model.safetensors', 'tokenizer.json',
                 'tokenizer_config.json', 'vocab.json', 'onnx/model.onnx']],
    'createdAt': '2024-09-16T11:55:40.000Z', 'usedStorage': 988097824}))
put('hub_api', 'minimal.json', '{"sha":"0123456789abcdef0123456789abcdef01234567","siblings":[]}')
put('hub_api', 'fake_hub.json', json.dumps({'id': 'org/name', 'sha': 'a' * 40,
    'siblings': [{'rfilename': 'config.json'}, {'rfilename': 'sub/dir/model.safetensors'}]}))
# chat templates: the template fixtures and Qwen3's (from the fetched Qwen tokenizer_config.json, when present)
for f in sorted(glob.glob(f'{F}/tokenizer/templates/*.jinja')):
    put('chat_template', os.path.basename(f), open(f).read())
qcfg = f'{F}/tokenizer/qwen/tokenizer_config.json'
if os.path.exists(qcfg):
    put('chat_template', 'qwen3.jinja', json.load(open(qcfg))['chat_template'])
    put('chat_template', 'qwen2_5_with_messages',
        open(f'{F}/tokenizer/templates/qwen2_5.jinja').read() + '\0\x01Hi\0\x02<think>x</think>\n\nyo\0\x03<tool_response>1</tool_response>')
# tokenizer.json [\0 tokenizer_config.json [\0 text]]
small = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 5, "content": "<|im_start|>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True},
                     {"id": 6, "content": "<|im_end|>", "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\s+|\\w+|[^\\s\\w]+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4}, "merges": [["a", "b"], ["Ġ", "ab"]]}}
small_cfg = {"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|im_start|>",
             "added_tokens_decoder": {"5": {"content": "<|im_start|>", "special": True},
                                      "6": {"content": "<|im_end|>", "special": True}},
             "chat_template": open(f'{F}/tokenizer/templates/qwen2.jinja').read()}
put('tokenizer', 'small.json', json.dumps(small) + '\0' + json.dumps(small_cfg) + '\0' + 'ab ab a<|im_end|>b héllo\n')
put('tokenizer', 'small_no_config.json', json.dumps(small, indent=1))
for d in ['trained', 'trained_str']:
    put('tokenizer', d + '.json', open(f'{F}/tokenizer/{d}/tokenizer.json').read() + '\0\0Hello, world! 你好 <|im_start|>')
# The embedders' tokenizers (tests/fixtures/embed, made by scripts/make_embed_fixtures.py), cut to the fuzzer's
# -max_len: WordPiece with the BERT normaliser and pre-tokeniser and the [CLS]/[SEP] or <s>/</s> post-processors, and
# Unigram with Metaspace (its precompiled character map, hundreds of KB, left out; the unit tests cover it).
mixed = 'Héllo, WORLD! naïve 你好 🙂 un-believable\t  spaces\n'
for d in ['wordpiece-uncased', 'wordpiece-cased', 'wordpiece-mpnet']:
    path = f'{F}/embed/tokenizers/{d}/tokenizer.json'
    if not os.path.exists(path): continue
    t = json.load(open(path))
    keep = {k: v for k, v in t['model']['vocab'].items() if v < 400}
    t['model']['vocab'] = keep
    t['added_tokens'] = [a for a in t['added_tokens'] if a['id'] < 400]
    put('tokenizer', 'embed_' + d + '.json', json.dumps(t, ensure_ascii=False) + '\0\0' + mixed)
path = f'{F}/embed/tokenizers/unigram/tokenizer.json'
if os.path.exists(path):
    t = json.load(open(path))
    t['normalizer'] = {'type': 'Sequence', 'normalizers': [n for n in t['normalizer']['normalizers']
                                                           if n['type'] != 'Precompiled']}
    t['model']['vocab'] = t['model']['vocab'][:400]
    t['added_tokens'] = [a for a in t['added_tokens'] if a['id'] < 400]
    put('tokenizer', 'embed_unigram.json', json.dumps(t, ensure_ascii=False) + '\0\0' + mixed)

# openai_request: the first byte picks the parser (0 completions, 1 chat, 2 adapter load, 3 embeddings, 4 fine-tuning
# job)
for i, body in enumerate([
    {"model": "m", "prompt": "Hello", "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "stop": ["\n", "END"],
     "seed": 1, "logprobs": 2, "presence_penalty": 0.5, "frequency_penalty": -0.5, "ignore_eos": True},
    {"model": "m", "prompt": [1, 2, 3], "stream": True, "stream_options": {"include_usage": True}, "top_k": 5,
     "min_p": 0.1, "repetition_penalty": 1.1, "max_completion_tokens": 4, "user": "u", "logit_bias": {}},
    {"prompt": "x", "n": 1, "best_of": 1, "echo": False, "suffix": ""}]):
    put('openai_request', f'completions_{i}', b'\x00' + json.dumps(body).encode())
for i, body in enumerate([
    {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
     "max_tokens": 8, "logprobs": True, "top_logprobs": 3, "stop": "x"},
    {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                                {"role": "assistant", "content": None}, {"role": "tool", "content": "t"}],
     "stream": True, "temperature": 2}]):
    put('openai_request', f'chat_{i}', b'\x01' + json.dumps(body).encode())
put('openai_request', 'adapter', b'\x02' + json.dumps({"name": "support", "path": "/adapters/support"}).encode())
for i, body in enumerate([
    {"model": "e", "input": ["first text", "second"], "encoding_format": "base64", "dimensions": 8},
    {"input": [[101, 7, 102], [101, 102]], "encoding_format": "float", "user": "u"},
    {"model": "e", "input": "one text"}]):
    put('openai_request', f'embeddings_{i}', b'\x03' + json.dumps(body).encode())
put('openai_request', 'fine_tune', b'\x04' + json.dumps(
    {"model": "m", "training_file": "file-1", "validation_file": "file-2", "suffix": "s-1",
     "hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 2.0}, "seed": 7}).encode())
put('openai_request', 'fine_tune_method', b'\x04' + json.dumps(
    {"model": "m", "training_file": "file-1",
     "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": "auto", "batch_size": 8}}}}).encode())

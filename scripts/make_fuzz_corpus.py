#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/.

    python3 scripts/make_fuzz_corpus.py build/bin/peft

Seeds are small valid inputs (and a few near-misses) made with the real writers where there is one:
`peft init-model` for safetensors and config.json, `peft prep` for dataset records and
manifest.json, `peft train` for checkpoint records (read out of LMDB with mdb_dump), the tokenizer
fixtures cut down to a few hundred tokens for tokenizer.json. Run it by hand when a format changes;
the corpora are committed. Needs python3 and lmdb-utils (mdb_dump).
"""
import json, os, shutil, struct, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
PEFT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "bin", "peft"))
work = tempfile.mkdtemp()


def run(*args):
    subprocess.run([PEFT, *args], check=True, stdout=subprocess.DEVNULL)


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, raw bytes), written in order."""
    h, off, data = {}, 0, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    hb = json.dumps(h, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


def mdb_records(path):
    """(key, value) pairs of an LMDB file (MDB_NOSUBDIR), via mdb_dump's hex format."""
    out = subprocess.run(["mdb_dump", "-n", path], check=True, capture_output=True, text=True).stdout
    lines = out.split("HEADER=END\n", 1)[1].split("\n")
    hexes = [l.strip() for l in lines if l.startswith(" ")]
    return [(bytes.fromhex(hexes[i]), bytes.fromhex(hexes[i + 1])) for i in range(0, len(hexes) - 1, 2)]


# ---- models: safetensors and config.json
for arch in ("gpt2", "llama"):
    d = os.path.join(work, arch)
    run("init-model", "--arch", arch, "--hidden-size", "8", "--num-hidden-layers", "1", "--num-attention-heads", "2",
        "--vocab-size", "16", "--max-position-embeddings", "8", "--intermediate-size", "16", "--out", d)
    put("safetensors", f"{arch}-tiny.safetensors", open(os.path.join(d, "model.safetensors"), "rb").read())
    put("config", f"{arch}.json", open(os.path.join(d, "config.json")).read())
f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
put("safetensors", "dtypes.safetensors", safetensors([
    ("a", "F32", [2, 2], f32), ("b", "F16", [2], struct.pack("<2e", 1.5, -0.25)),
    ("c", "BF16", [2], b"\x80\x3f\x00\xc0"), ("d", "F64", [1], struct.pack("<d", 2.5)),
    ("e", "I8", [3], b"\x01\x02\x03"), ("s", "F32", [], struct.pack("<f", 7.0)), ("z", "F32", [0, 4], b"")],
    {"format": "pt", "note": "seed"}))
put("safetensors", "empty.safetensors", safetensors([]))
put("safetensors", "meta-empty.safetensors", safetensors([("x", "U8", [1], b"\x05")], {}))
put("safetensors", "truncated.safetensors", safetensors([("a", "F32", [4], f32)])[:-3])
for name in ("gpt2-tiny", "llama-tiny"):
    put("config", f"golden-{name}.json", open(os.path.join(ROOT, "tests", "fixtures", "golden", name, "config.json")).read())
llama = json.load(open(os.path.join(work, "llama", "config.json")))
llama.update(model_type="llama", num_key_value_heads=1, head_dim=4, attention_bias=True, eos_token_id=[2, 3],
             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192})
put("config", "llama3-rope.json", json.dumps(llama))
llama.update(model_type="qwen2", rope_scaling={"type": "linear", "factor": 2.0})
put("config", "qwen2-linear.json", json.dumps(llama))

# ---- tokenizer.json: each fixture style with its vocabulary cut to a few hundred tokens
tokdir = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
for style in sorted(os.listdir(tokdir)):
    path = os.path.join(tokdir, style, "tokenizer.json")
    if not os.path.exists(path):
        continue
    t = json.load(open(path))
    m = t["model"]
    keep = dict(sorted(m["vocab"].items(), key=lambda kv: kv[1])[:300])
    for a in t.get("added_tokens", []):
        if a["content"] in m["vocab"]:
            keep[a["content"]] = m["vocab"][a["content"]]
    merges = []
    for mg in m.get("merges", []):
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in keep and b in keep and a + b in keep:
            merges.append(mg)
    m["vocab"], m["merges"] = keep, merges[:200]
    ids = set(keep.values())
    t["added_tokens"] = [a for a in t.get("added_tokens", []) if a["id"] in ids or a["id"] < 400][:8]
    put("tokenizer", f"{style}.json", json.dumps(t, ensure_ascii=False))
put("tokenizer", "minimal.json", json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2},
                                                        "merges": ["a b"]}}))

# ---- method configuration (peft_config_to_json's keys)
base = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "use_rslora": False, "lora_bias": None, "lora_b_bias": False,
        "target_modules": "q_proj,v_proj", "layers_to_transform": None, "feedforward_modules": None,
        "num_virtual_tokens": 0, "prompt_init_text": None, "prefix_projection": False, "encoder_hidden_size": 0,
        "reduction_factor": 16, "non_linearity": "relu", "peft_seed": 42}
for method in ("lora", "dora", "ia3", "prompt", "prefix", "houlsby", "bapna", "pfeiffer", "parallel", "io", "full"):
    c = dict(base, method=method)
    if method in ("prompt", "prefix"):
        c.update(num_virtual_tokens=4, prompt_init_text="Classify:", prefix_projection=method == "prefix")
    if method == "lora":
        c.update(use_rslora=True, layers_to_transform="0,1", lora_bias="lora_only")
    put("peft_config", f"{method}.json", json.dumps(c))

# ---- dataset: records and manifest from a real prep
with open(os.path.join(work, "in.jsonl"), "w") as f:
    for i in range(6):
        f.write(json.dumps({"input_ids": [1 + (i + j) % 15 for j in range(5 + i)]}) + "\n")
data = os.path.join(work, "data")
run("prep", "--input", os.path.join(work, "in.jsonl"), "--out", data, "--seq-len", "8", "--val-fraction", "0.2",
    "--eos-token-id", "0", "--shards", "2")
put("dataset", "manifest.json", b"\x01" + open(os.path.join(data, "manifest.json"), "rb").read())
for i, (k, v) in enumerate(mdb_records(os.path.join(data, "shard-00000.lmdb"))[:3]):
    put("dataset", f"record-{i}", bytes([0, 8 - 1]) + v)

# ---- checkpoint: the records of a real two-step run
def encode(records):
    return b"".join(bytes([len(k)]) + k + struct.pack("<I", len(v)) + v for k, v in records)


run_dir = os.path.join(work, "run")
run("train", "--model", os.path.join(work, "gpt2"), "--data", data, "--out", run_dir, "--method", "lora", "--r", "2",
    "--max-steps", "2", "--save-steps", "1", "--per-device-train-batch-size", "2", "--threads", "1")
recs = mdb_records(os.path.join(run_dir, "checkpoints.lmdb"))
put("checkpoint", "two-steps", encode(recs))
latest = [kv for kv in recs if kv[0] == b"latest"]
put("checkpoint", "one-step", encode(latest + [kv for kv in recs if kv[0].startswith(b"ckpt/00000000000000000002/")]))
put("checkpoint", "no-adam", encode(latest + [kv for kv in recs if kv[0].startswith(b"ckpt/00000000000000000002/")
                                             and not kv[0].endswith((b"adam_m", b"adam_v"))]))
shutil.rmtree(work)


# ---- wire frames (proto/peft.proto), encoded by hand: tag = field << 3 | wire type
def varint(v):
    v &= (1 << 64) - 1
    out = b""
    while True:
        b, v = v & 0x7F, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out


def field(num, value):
    if isinstance(value, bytes):
        return varint(num << 3 | 2) + varint(len(value)) + value
    if isinstance(value, float):
        return varint(num << 3 | 1) + struct.pack("<d", value)
    return varint(num << 3 | 0) + varint(value)


def frame(body_num, body, floats=0):
    env = field(body_num, b"".join(body)) + (field(15, floats) if floats else b"")
    return b"PFTW" + struct.pack("<I", len(env)) + env + struct.pack("<%df" % floats, *([0.5] * floats))


def expect(offset=0, count=0, version=0, max_lag=0, workers=1, chunks=0, total=0, step=0):
    return struct.pack("<IIiBBBBIi", offset, count, version, max_lag, workers - 1, chunks, 0, total, step)


ws = struct.pack("<6Q", 42, 16, 1, 2, 3, 4)
put("wire", "hello", expect(total=4096, workers=2) + frame(1, [field(1, 1), b"\x11" + struct.pack("<Q", 7), field(3, 4096),
    field(4, 1), field(5, 2), field(6, b"host-a"), field(9, 10)]))
put("wire", "welcome", expect() + frame(2, [field(1, 0), field(2, 16), field(3, 3), field(4, ws)]))
put("wire", "pull", expect() + frame(3, [field(1, 2)]))
put("wire", "push", expect(offset=16, count=8, version=5, max_lag=2) + frame(4, [field(1, 4), field(2, 16), field(3, 8),
    field(4, 100), field(5, 123.5), field(6, ws), field(7, 0), field(8, 0.25), field(9, 1),
    field(10, b"".join([field(1, 0.1), field(2, 0.2), field(3, 0.3)]))], floats=8))
put("wire", "params", expect(offset=0, count=4) + frame(5, [field(1, 3), field(2, 0), field(3, 4), field(4, 3),
    field(7, 1.5), field(9, 2.0), field(10, 10)], floats=4))
put("wire", "peer-norm", expect(chunks=2, step=3) + frame(6, [field(1, 3), field(2, struct.pack("<2d", 1.0, 2.0)),
    field(3, 1), field(5, 10)]))
put("wire", "checkpoint-request", expect() + frame(7, [field(1, 5)]))
put("wire", "checkpoint-shard", expect(offset=8, count=2) + frame(8, [field(1, 5), field(2, 8), field(3, 2)], floats=6))
put("wire", "restore-shard", expect(offset=8, count=2) + frame(9, [field(1, 5), field(2, 8), field(3, 2)], floats=6))
put("wire", "stop", expect() + frame(10, [field(1, b"done")]))
put("wire", "error", expect() + frame(11, [field(1, 3), field(2, b"bad push")]))


# ---- dictionaries for the JSON targets: JSON punctuation plus every key and short string value of
# the seeds (libFuzzer -dict; cJSON is not instrumented, so these guide the mutations into our checks)
def strings(o, out):
    if isinstance(o, dict):
        for k, v in o.items():
            out.add(k)
            strings(v, out)
    elif isinstance(o, list):
        for v in o:
            strings(v, out)
    elif isinstance(o, str) and len(o) <= 24:
        out.add(o)


for target, skip in (("config", 0), ("tokenizer", 0), ("peft_config", 0), ("dataset", 1)):
    words = set()
    d = os.path.join(CORPUS, target)
    for name in sorted(os.listdir(d)):
        raw = open(os.path.join(d, name), "rb").read()[skip:]
        try:
            strings(json.loads(raw), words)
        except ValueError:
            pass
    if target == "tokenizer":  # the vocabulary itself is noise
        words = {w for w in words if w.isascii() and (w[:1].isupper() or "_" in w or len(w) > 6)}
    lines = ['"{"', '"}"', '"["', '"]"', '":"', '","', '"null"', '"true"', '"false"', '"-1"', '"1e999"',
             '"2147483648"', '"9007199254740993"', '"\\\\u0000"']
    lines += ['"\\"%s\\""' % w.replace("\\", "\\\\").replace('"', '\\"') for w in sorted(words)
              if all(32 <= ord(ch) < 127 for ch in w)]
    os.makedirs(os.path.join(ROOT, "tests", "fuzz", "dict"), exist_ok=True)
    with open(os.path.join(ROOT, "tests", "fuzz", "dict", target + ".dict"), "w") as f:
        f.write("\n".join(lines) + "\n")

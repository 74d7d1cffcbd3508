#!/usr/bin/env bash
# docs/formats.md is exact: its Python code blocks (read_dataset, dataset_sample, read_checkpoint),
# run as written, read what peft writes.
#   - a dataset from token ids (3 shards, a validation split, labels that mask tokens): the documents
#     come back, train ones in input order, every manifest count agrees, masks match the labels;
#   - dataset_sample in Python gives the C implementation's records (common/data/sample.c compiled
#     here) and a permutation of every epoch;
#   - a LoRA run with checkpoints at steps 2 and 4: both load, the latest is 4, the config names the
#     method, the tensors equal bit for bit those `peft export --format peft` writes, the data cursor
#     counts the samples consumed.
# Needs Debian's python3-lmdb (scripts/install-deps.sh) for /usr/bin/python3.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -c "import lmdb" 2> /dev/null || { echo "FAIL: /usr/bin/python3 has no lmdb module (apt-get install python3-lmdb)"; exit 1; }

# the documentation's code, as written
awk '/^```python$/ { on = 1; next } /^```$/ { on = 0 } on' "$SRC/docs/formats.md" > "$work/formats.py"
grep -q "def read_dataset" "$work/formats.py" && grep -q "def read_checkpoint" "$work/formats.py" \
    && grep -q "def dataset_sample" "$work/formats.py" || { echo "FAIL: docs/formats.md lacks the Python readers"; exit 1; }

# documents 1..60 of 5..13 tokens, ids 1..63 (0 is EOS); every 7th document masks its first 2 tokens
"$PY" - "$work/docs.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for d in range(60):
        ids = [(3 * d + t) % 63 + 1 for t in range(5 + d % 9)]
        doc = {"input_ids": ids}
        if d % 7 == 0:
            doc["labels"] = [-100, -100] + ids[2:]
        f.write(json.dumps(doc) + "\n")
PY
"$PEFT" prep --input "$work/docs.jsonl" --out "$work/data" --seq-len 16 --shards 3 --val-fraction 0.25 \
    --eos-token-id 0 > /dev/null || { echo "FAIL: prep"; exit 1; }
"$PEFT" init-model --arch gpt2 --out "$work/model" --hidden-size 36 --num-hidden-layers 2 --num-attention-heads 2 \
    --vocab-size 64 --max-position-embeddings 32 > /dev/null || { echo "FAIL: init-model"; exit 1; }
"$PEFT" train --model "$work/model" --data "$work/data" --out "$work/run" --method lora --r 3 --max-steps 4 --save-steps 2 \
    --per-device-train-batch-size 4 --learning-rate 1e-2 --seed 5 --threads 1 > "$work/train.out" 2>&1 \
    || { echo "FAIL: train: $(cat "$work/train.out")"; exit 1; }
"$PEFT" export --run "$work/run" --format peft --out "$work/exported" > /dev/null || { echo "FAIL: export"; exit 1; }

# the C data order, for comparison
cat > "$work/order.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "data/dataset.h"
int main(int argc, char **argv) {
    unsigned long long seed = strtoull(argv[1], NULL, 10), n = strtoull(argv[2], NULL, 10);
    for (unsigned long long g = 0; g < 3 * n; g++) printf("%llu\n", (unsigned long long)dataset_sample(seed, n, g));
    return 0;
}
C
cc -std=c11 -O1 -I "$SRC/common" "$work/order.c" "$SRC/common/data/sample.c" -o "$work/order" \
    || { echo "FAIL: compiling common/data/sample.c"; exit 1; }
for sn in "42 22" "7 1000" "123456789 5" "0 4099"; do
    "$work/order" $sn > "$work/order-${sn// /-}.txt"
done

"$PY" - "$work" <<'PY'
import json, os, struct, sys, time
work = sys.argv[1]
exec(open(os.path.join(work, "formats.py")).read())
failures = []
def check(ok, msg):
    if not ok:
        failures.append(msg)
        print("FAIL: " + msg)

# --- dataset
docs = [json.loads(l) for l in open(os.path.join(work, "docs.jsonl"))]
m = json.load(open(os.path.join(work, "data", "manifest.json")))
streams = {}
for split in ("train", "val"):
    ids, mask, n, tokens = [], [], 0, 0
    for i, seq_ids, seq_mask in read_dataset(os.path.join(work, "data"), split):
        check(i == n, "%s: index %d out of order" % (split, i))
        check(1 <= len(seq_ids) <= m["seq_len"], "%s %d: %d tokens" % (split, i, len(seq_ids)))
        ids += seq_ids
        mask += seq_mask
        n += 1
    check(n == m[split]["sequences"], "%s: read %d sequences, manifest says %d" % (split, n, m[split]["sequences"]))
    check(len(ids) == m[split]["tokens"], "%s: read %d tokens, manifest says %d" % (split, len(ids), m[split]["tokens"]))
    check(sum(mask) == m[split]["loss_tokens"], "%s: mask sums to %d, manifest says %d" % (split, sum(mask), m[split]["loss_tokens"]))
    streams[split] = (ids, mask)
# packed: each split's stream is its documents in order, each followed by EOS 0
found = {"train": [], "val": []}
for split, (ids, mask) in streams.items():
    start = 0
    for p, t in enumerate(ids):
        if t == 0:
            found[split].append((ids[start:p], mask[start:p]))
            start = p + 1
    check(start == len(ids), "%s: the stream does not end with EOS" % split)
train_docs = [tuple(d) for d, _ in found["train"]]
want = {tuple(d["input_ids"]): d for d in docs}
check(len(found["train"]) + len(found["val"]) == len(docs) and len(found["val"]) > 0,
      "documents: %d train + %d val, want %d in all" % (len(found["train"]), len(found["val"]), len(docs)))
order = [tuple(d["input_ids"]) for d in docs]
it = iter(order)
check(all(any(t == o for o in it) for t in train_docs), "train documents are not in input order")
for split in found:
    for d_ids, d_mask in found[split]:
        doc = want.get(tuple(d_ids))
        check(doc is not None, "%s: a document that is not in the input: %s" % (split, d_ids))
        if doc is None:
            continue
        labels = doc.get("labels", doc["input_ids"])
        check(d_mask == [0 if l == -100 else 1 for l in labels], "%s: mask %s for labels %s" % (split, d_mask, labels))

# --- data order against the C implementation
for name in sorted(os.listdir(work)):
    if not name.startswith("order-"):
        continue
    seed, n = (int(x) for x in name[6:-4].split("-"))
    c = [int(x) for x in open(os.path.join(work, name))]
    py = [dataset_sample(seed, n, g) for g in range(3 * n)]
    check(py == c, "dataset_sample(seed %d, n %d): Python and C differ first at g = %s" % (
        seed, n, next((g for g in range(3 * n) if py[g] != c[g]), None)))
    for e in range(3):
        check(sorted(py[e * n:(e + 1) * n]) == list(range(n)), "seed %d n %d epoch %d is not a permutation" % (seed, n, e))

# --- checkpoints
run = os.path.join(work, "run")
step, config, tensors = read_checkpoint(run)
check(step == 4, "latest step %d, want 4" % step)
check(config.get("format") == "peft-run" and config.get("method") == "lora" and config.get("seed") == 5,
      "config: %s" % config)
step2, _, tensors2 = read_checkpoint(run, 2)
check(step2 == 2 and set(tensors2) == set(tensors) and tensors2 != tensors, "step 2 checkpoint")
out = open(os.path.join(work, "train.out")).read()
trainable = int(out.split("trainable params: ")[1].split()[0])
numel = sum(len(v) for _, v in tensors.values())
check(numel == trainable, "tensors hold %d values, train printed %d trainable" % (numel, trainable))
b = open(os.path.join(work, "exported", "adapter_model.safetensors"), "rb").read()
hlen = struct.unpack("<Q", b[:8])[0]
header = json.loads(b[8:8 + hlen])
exported = {k: v for k, v in header.items() if k != "__metadata__"}
check(set(exported) == set(tensors), "names: checkpoint %s, export %s" % (sorted(tensors), sorted(exported)))
for name, (shape, values) in tensors.items():
    e = exported.get(name)
    if not e:
        continue
    a, z = e["data_offsets"]
    ev = list(struct.unpack("<%df" % ((z - a) // 4), b[8 + hlen + a:8 + hlen + z]))
    check(list(shape) == e["shape"] and ev == values, "%s: checkpoint %s differs from the export %s" % (name, shape, e["shape"]))
env = lmdb.open(os.path.join(run, "checkpoints.lmdb"), subdir=False, readonly=True, lock=False)
with env.begin() as txn:
    v = txn.get(b"ckpt/%020d/state" % 4)
    check(v[:4] == b"PFTC" and struct.unpack_from("<H", v, 6)[0] == 6, "state header")
    magic, version, taken, skipped, saved_at, workers, rec = struct.unpack_from("<4sIQQqII", v, 8)
    check((magic, version, taken + skipped, workers, rec) == (b"PFRS", 1, 4, 1, 48),
          "run state %s" % ((magic, version, taken, skipped, workers, rec),))
    check(abs(saved_at - time.time()) < 3600, "saved_at %d is not about now" % saved_at)
    seed, samples = struct.unpack_from("<QQ", v, 8 + 40)
    check((seed, samples) == (5, 16), "data cursor (seed %d, samples %d), want (5, 16)" % (seed, samples))
    keys = sorted(k.decode() for k, _ in txn.cursor())
check(keys == sorted(["latest"] + ["ckpt/%020d/%s" % (s, f) for s in (2, 4)
                                   for f in ("config", "tensors", "params", "adam_m", "adam_v", "state")]),
      "keys: %s" % keys)
print("formats_doc: %d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
PY

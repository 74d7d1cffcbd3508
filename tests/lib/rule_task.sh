# rule_task.sh - sourced by shell tests: the small tasks they train on, and the tiny base.
#   rule_jsonl FILE [DOCS [MIN MAX]]: writes FILE, DOCS documents (default 400) counting through
#   1..16 in steps of 5 (x -> (x + 5) mod 16, plus 1), from a random start, each MIN..MAX tokens
#   long (default 24..40); the random stream is fixed, so the first N of more documents are the N.
#   rule_task DIR [DOCS]: a learnable task (cli/train.sh, mpi/train_mpi.sh, mpi/resume.sh,
#   mpi/multihost.sh, mpi/valgrind.sh): DIR/rule.jsonl (rule_jsonl, DOCS documents of 24..40
#   tokens), DIR/data (peft prep, sequences of 32, 10% validation, EOS 0) and DIR/gpt2 (tiny_gpt2).
#   random_task DIR DOCS: a task with nothing to learn (cli/full_disk.sh, mpi/nonfinite.sh):
#   DIR/ids.jsonl (DOCS documents of 40 random ids in 1..63), DIR/data (peft prep, sequences of 32,
#   EOS 0) and DIR/gpt2 (tiny_gpt2).
#   tiny_gpt2 DIR: a tiny random GPT-2 (peft init-model: hidden 64, 2 layers, 4 heads, vocabulary
#   64, 64 positions). cli/export.sh uses rule_jsonl alone (shorter documents, its own models).
# Need $PEFT. Return non-zero with a FAIL line when a step fails.
rule_jsonl() {
  python3 - "$1" "${2:-400}" "${3:-24}" "${4:-40}" <<'PY' || { echo "FAIL: writing $1"; return 1; }
import json, random, sys
r = random.Random(0)
docs, lo, hi = (int(a) for a in sys.argv[2:5])
with open(sys.argv[1], "w") as f:
    for d in range(docs):
        x, n = r.randrange(16), r.randrange(lo, hi + 1)
        ids = []
        for t in range(n):
            ids.append(x + 1)
            x = (x + 5) % 16
        f.write(json.dumps({"input_ids": ids}) + "\n")
PY
}

tiny_gpt2() {
  "$PEFT" init-model --arch gpt2 --out "$1" --hidden-size 64 --num-hidden-layers 2 --num-attention-heads 4 \
    --vocab-size 64 --max-position-embeddings 64 > /dev/null || { echo "FAIL: init-model"; return 1; }
}

rule_task() {
  rule_jsonl "$1/rule.jsonl" "${2:-400}" || return 1
  "$PEFT" prep --input "$1/rule.jsonl" --out "$1/data" --seq-len 32 --val-fraction 0.1 --eos-token-id 0 > /dev/null \
    || { echo "FAIL: prep"; return 1; }
  tiny_gpt2 "$1/gpt2"
}

random_task() {
  python3 - "$2" > "$1/ids.jsonl" <<'PY' || { echo "FAIL: writing $1/ids.jsonl"; return 1; }
import json, random, sys
r = random.Random(0)
for d in range(int(sys.argv[1])):
    print(json.dumps({"input_ids": [r.randrange(1, 64) for _ in range(40)]}))
PY
  "$PEFT" prep --input "$1/ids.jsonl" --out "$1/data" --seq-len 32 --eos-token-id 0 > /dev/null \
    || { echo "FAIL: prep"; return 1; }
  tiny_gpt2 "$1/gpt2"
}

# rule_task.sh - sourced by shell tests (cli/train.sh, mpi/train_mpi.sh, mpi/resume.sh): a small learnable task.
#   rule_task DIR: writes DIR/rule.jsonl (documents counting through 1..16 in steps of 5, from a
#   random start), DIR/data (peft prep, sequences of 32, 10% validation, EOS 0) and DIR/gpt2 (a tiny
#   random GPT-2: hidden 64, 2 layers, 4 heads, vocabulary 64). Needs $PEFT. Returns non-zero with a
#   FAIL line when a step fails.
rule_task() {
  python3 - "$1/rule.jsonl" <<'PY'
import json, random, sys
r = random.Random(0)
with open(sys.argv[1], "w") as f:
    for d in range(400):
        x, n = r.randrange(16), r.randrange(24, 41)
        ids = []
        for t in range(n):
            ids.append(x + 1)
            x = (x + 5) % 16
        f.write(json.dumps({"input_ids": ids}) + "\n")
PY
  "$PEFT" prep --input "$1/rule.jsonl" --out "$1/data" --seq-len 32 --val-fraction 0.1 --eos-token-id 0 > /dev/null \
    || { echo "FAIL: prep"; return 1; }
  "$PEFT" init-model --arch gpt2 --out "$1/gpt2" --hidden-size 64 --num-hidden-layers 2 --num-attention-heads 4 \
    --vocab-size 64 --max-position-embeddings 64 > /dev/null || { echo "FAIL: init-model"; return 1; }
}

#!/usr/bin/env bash
# peft plot: a real run's metrics.jsonl becomes a PNG (signature, IHDR size, non-trivial bytes) at
# RUN_DIR/metrics.png or --out; resumed (repeated) steps, non-finite values and a last line cut off
# mid-write are read; a missing, empty or corrupt metrics.jsonl, a missing RUN_DIR, no gnuplot on
# PATH and an unwritable --out fail with one line naming the file (exit 1) or the usage (exit 2),
# write no image and leave no temporary directory behind.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# png_check FILE: PNG signature, IHDR 1000 x 1000, more than 10 kB; prints why not
png_check() {
    python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
if b[:8] != b"\x89PNG\r\n\x1a\n": sys.exit("no PNG signature: %r" % b[:8])
if b[12:16] != b"IHDR": sys.exit("first chunk is %r, not IHDR" % b[12:16])
w, h = struct.unpack(">II", b[16:24])
if (w, h) != (1000, 1000): sys.exit("image is %dx%d, want 1000x1000" % (w, h))
if len(b) < 10000: sys.exit("only %d bytes: an empty picture?" % len(b))
if b[-8:-4] != b"IEND": sys.exit("no IEND chunk at the end")
PY
}
# expect_error RC PATTERN CMD...: the command fails with exit code RC and a one-line message matching PATTERN
expect_error() {
    local want=$1 pat=$2
    shift 2
    local err rc
    err=$("$@" 2>&1 >/dev/null); rc=$?
    [ "$rc" -eq "$want" ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && printf '%s' "$err" | grep -q -- "$pat" \
        || fail "'$*': rc $rc (want $want), message '$err' (want /$pat/)"
}

# --- a real run: 12 steps of a tiny GPT-2 on a counting rule, evaluated every 4 steps
python3 - "$work/rule.jsonl" <<'PY'
import json, random, sys
r = random.Random(0)
with open(sys.argv[1], "w") as f:
    for d in range(200):
        x = r.randrange(16)
        f.write(json.dumps({"input_ids": [(x + 5 * t) % 16 + 1 for t in range(r.randrange(24, 41))]}) + "\n")
PY
"$PEFT" prep --input "$work/rule.jsonl" --out "$work/data" --seq-len 32 --val-fraction 0.1 --eos-token-id 0 \
    > /dev/null || { echo "FAIL: prep"; exit 1; }
"$PEFT" init-model --arch gpt2 --out "$work/model" --hidden-size 32 --num-hidden-layers 1 --num-attention-heads 2 \
    --vocab-size 64 --max-position-embeddings 64 > /dev/null || { echo "FAIL: init-model"; exit 1; }
"$PEFT" train --model "$work/model" --data "$work/data" --out "$work/run" --method lora --max-steps 12 \
    --per-device-train-batch-size 4 --logging-steps 1 --eval-steps 4 --eval-batches 2 --threads 1 \
    > /dev/null 2> "$work/train.err" || { echo "FAIL: train: $(cat "$work/train.err")"; exit 1; }
[ "$(wc -l < "$work/run/metrics.jsonl")" -eq 12 ] || fail "metrics.jsonl: $(wc -l < "$work/run/metrics.jsonl") lines, want 12"

out=$("$PEFT" plot "$work/run" 2> "$work/plot.err") || fail "plot of a real run: $(cat "$work/plot.err")"
why=$(png_check "$work/run/metrics.png" 2>&1) || fail "RUN_DIR/metrics.png: $why"
echo "$out" | grep -q "wrote $work/run/metrics.png: 12 logged steps (1..12), .*validation loss [0-9.]* at step 12" \
    || fail "plot summary: $out"
"$PEFT" plot "$work/run" --out "$work/elsewhere.png" > /dev/null || fail "plot --out"
why=$(png_check "$work/elsewhere.png" 2>&1) || fail "--out png: $why"

# --- what a resumed or killed run leaves: repeated steps, printf's nan/inf, a cut-off last line
mkdir "$work/odd"
cat > "$work/odd/metrics.jsonl" <<'EOF'
{"step": 1, "loss": 4.0, "learning_rate": 0.001, "grad_norm": nan, "tokens_per_second": 100.0, "skipped": false}
{"step": 2, "loss": inf, "learning_rate": 0.001, "grad_norm": -nan, "tokens_per_second": 100.0, "skipped": true}
{"step": 3, "loss": 3.0, "learning_rate": 0.001, "grad_norm": 1.0, "tokens_per_second": 100.0, "skipped": false, "val_loss": 3.5}

{"step": 2, "loss": 3.9, "learning_rate": 0.001, "grad_norm": 1.0, "tokens_per_second": 90.0, "skipped": false}
{"step": 3, "loss": 3.8, "learning_rate": 0.001, "grad_norm": 1.0, "tokens_per_second": 90.0, "skipped": false, "val_loss": 3.7}
EOF
printf '{"step": 4, "loss": 3.' >> "$work/odd/metrics.jsonl"
out=$("$PEFT" plot "$work/odd" 2> "$work/plot.err") || fail "plot of a resumed run: $(cat "$work/plot.err")"
echo "$out" | grep -q "3 logged steps (1..3), last training loss 3.8000, validation loss 3.7000 at step 3" \
    || fail "resumed run summary: $out"
why=$(png_check "$work/odd/metrics.png" 2>&1) || fail "resumed run png: $why"

# --- failures
mkdir "$work/bad"
expect_error 1 "bad/metrics.jsonl: no such file" "$PEFT" plot "$work/bad"
: > "$work/bad/metrics.jsonl"
expect_error 1 "bad/metrics.jsonl: no logged steps (empty)" "$PEFT" plot "$work/bad"
printf '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.\n{"step": 3, "loss": 1.0}\n' > "$work/bad/metrics.jsonl"
expect_error 1 "bad/metrics.jsonl:2: not valid JSON" "$PEFT" plot "$work/bad"
printf '{"step": 1, "loss": 2.0}\n{"step": 2}\n' > "$work/bad/metrics.jsonl"
expect_error 1 "bad/metrics.jsonl:2: missing required key 'loss'" "$PEFT" plot "$work/bad"
printf '{"step": "one", "loss": 2.0}\n' > "$work/bad/metrics.jsonl"
expect_error 1 "bad/metrics.jsonl:1: key 'step' must be" "$PEFT" plot "$work/bad"
[ ! -e "$work/bad/metrics.png" ] || fail "a failed plot wrote an image"
expect_error 1 "nonexistent: no such directory" "$PEFT" plot "$work/nonexistent"
expect_error 2 "plot: expected RUN_DIR" "$PEFT" plot --out "$work/x.png"
expect_error 2 "unknown flag '--bogus'" "$PEFT" plot "$work/run" --bogus
expect_error 1 "gnuplot not found on PATH" env PATH=/nonexistent "$PEFT" plot "$work/run" --out "$work/nognuplot.png"
[ ! -e "$work/nognuplot.png" ] || fail "plot without gnuplot wrote an image"
expect_error 1 "nodir/x.png" "$PEFT" plot "$work/run" --out "$work/nodir/x.png"
[ -z "$(ls -A "$TMPDIR")" ] || fail "temporary files left behind: $(ls -A "$TMPDIR")"

[ "$failures" -eq 0 ] && echo "plot: all checks passed" || echo "plot: $failures check(s) failed"
[ "$failures" -eq 0 ]

#!/usr/bin/env bash
# A full disk while writing a checkpoint, a dataset or an export, on a 2 MiB tmpfs:
#  - full fine-tuning of a tiny model writes a 1.3 MiB checkpoint every step; the second cannot fit.
#    peft train ends with one clear line (the store, the step, the free space), exit 1, and the store
#    opens with its last complete checkpoint, which --resume on a roomier filesystem continues;
#  - peft prep of a dataset larger than the disk, and peft export of a merged model larger than what is
#    left, end with one line and exit 1, leaving nothing half-written that looks complete (no
#    manifest.json / no model.safetensors), and the checkpoints already there untouched.
# Needs root and mount (skipped with the reason otherwise: exit 77).
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
work=$(mktemp -d)
small="$work/small"
mkdir -p "$small"
cleanup() { umount "$small" 2> /dev/null; rm -rf "$work"; }
trap cleanup EXIT
if ! mount -t tmpfs -o size=2m tmpfs "$small" 2> "$work/mount.err"; then
  echo "SKIP: cannot mount a small tmpfs here ($(head -1 "$work/mount.err"))"
  exit 77
fi
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
. "$(dirname "$0")/../lib/rule_task.sh"
random_task "$work" 200 || exit 1   # ids.jsonl, data/, gpt2/
T=(--model "$work/gpt2" --data "$work/data" --method full --max-steps 6 --save-steps 1 --per-device-train-batch-size 4
   --threads 1 --logging-steps 1)
out=$("$PEFT" train "${T[@]}" --out "$small/run" 2>&1); rc=$?
[ $rc = 1 ] || fail "full disk: exit $rc, expected 1"
line=$(echo "$out" | grep "^peft: ")
echo "$line" | grep -q "checkpoints.lmdb: writing checkpoint 2 failed: .* bytes free on its filesystem" \
  || fail "full disk: no clear message: $out"
[ "$(echo "$out" | grep -c "^peft: ")" = 1 ] || fail "full disk: more than one error line"
inspect=$("$PEFT" inspect "$small/run" 2>&1) || fail "full disk: the store does not open: $inspect"
echo "$inspect" | grep -q "1 checkpoint" || fail "full disk: expected the checkpoint of step 1 intact: $inspect"
cp -r "$small/run" "$work/run"
"$PEFT" train "${T[@]}" --out "$work/run" --resume > /dev/null 2>&1 || fail "resume after the full disk failed"
"$PEFT" inspect "$work/run" | grep -q "6 checkpoints" || fail "resume after the full disk: expected 6 checkpoints"

# a dataset that does not fit
python3 -c '
import json, random
r = random.Random(1)
for d in range(3000):
    print(json.dumps({"input_ids": [r.randrange(1, 64) for _ in range(200)]}))' > "$work/big.jsonl"
out=$("$PEFT" prep --input "$work/big.jsonl" --out "$small/bigdata" --seq-len 32 --eos-token-id 0 2>&1); rc=$?
[ $rc = 1 ] || fail "prep on a full disk: exit $rc, expected 1"
[ "$(echo "$out" | grep -c "^peft: ")" = 1 ] || fail "prep on a full disk: not one error line: $out"
[ ! -f "$small/bigdata/manifest.json" ] || fail "prep on a full disk left a manifest.json (a dataset that looks complete)"
rm -rf "$small/bigdata"
# an export that does not fit next to the run
out=$("$PEFT" export --run "$small/run" --format merged --out "$small/merged" 2>&1); rc=$?
if [ $rc = 0 ]; then
  echo "note: the merged export fitted ($(du -sh "$small/merged" | cut -f1)); not a full-disk case here"
else
  [ $rc = 1 ] || fail "export on a full disk: exit $rc, expected 1"
  [ "$(echo "$out" | grep -c "^peft: ")" = 1 ] || fail "export on a full disk: not one error line: $out"
  [ ! -f "$small/merged/model.safetensors" ] || fail "export on a full disk left a model.safetensors behind"
fi
"$PEFT" inspect "$small/run" | grep -q "1 checkpoint" || fail "the checkpoint store changed after the failed prep/export"
[ $failures = 0 ] && echo "full disk: clear errors, nothing written before lost, resume works"
exit $((failures > 0))

#!/usr/bin/env bash
# Non-finite gradients: a base whose final LayerNorm weight is NaN makes every loss and gradient NaN.
# Every step is skipped (logged as skipped, parameters and AdamW moments unchanged: the checkpoints
# of steps 1 and 2 hold the initial values), and --max-skipped-steps 3 ends the run with one line and
# exit 1 - in one process and under mpirun (where the servers must accept a push with a NaN loss).
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
DUMP=${PEFT_CKPT_PARAMS:-build/bin/ckpt_params}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
. "$(dirname "$0")/../lib/rule_task.sh"
random_task "$work" 100 || exit 1   # ids.jsonl, data/, gpt2/
python3 - "$work/gpt2/model.safetensors" <<'PY' || { echo "FAIL: poisoning the model"; exit 1; }
import json, struct, sys
buf = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", buf[:8])[0]
v = json.loads(buf[8:8 + n])["transformer.ln_f.weight"]
a, b = (8 + n + o for o in v["data_offsets"])
buf[a:b] = struct.pack("<f", float("nan")) * ((b - a) // 4)
open(sys.argv[1], "wb").write(buf)
PY
T=(--model "$work/gpt2" --data "$work/data" --method lora --max-steps 20 --save-steps 1 --logging-steps 1
   --max-skipped-steps 3 --threads 1 --comm-timeout 60)
check() { # NAME OUTPUT RC RUN
  [ "$3" = 1 ] || fail "$1: exit $3, expected 1"
  echo "$2" | grep -q "^peft: .*train: 3 steps in a row had a NaN or Inf gradient (steps 1..3, none applied)" \
    || fail "$1: no one-line stop: $2"
  [ "$(grep -c '"skipped": true' "$4/metrics.jsonl")" -ge 2 ] || fail "$1: skipped steps not logged"
  "$DUMP" "$4" 1 | tail -n +2 > "$work/p1" && "$DUMP" "$4" 2 | tail -n +2 > "$work/p2" && cmp -s "$work/p1" "$work/p2" \
    || fail "$1: parameters changed across skipped steps"
}
out=$("$PEFT" train "${T[@]}" --out "$work/one" --per-device-train-batch-size 4 2>&1); check "one process" "$out" $? "$work/one"
out=$(timeout 120 mpirun -np 3 "$PEFT" train "${T[@]}" --out "$work/mpi" --per-device-train-batch-size 2 2>&1)
check "mpirun" "$out" $? "$work/mpi"
[ $failures = 0 ] && echo "non-finite steps skipped, counted and stopped"
exit $((failures > 0))

#!/usr/bin/env bash
# peft train under mpirun (localhost, --oversubscribe): the parameter server's contract.
#  - 2 workers with batch b give the per-step losses and final parameters of one process with
#    batch 2b (relative difference <= 1e-5); 2 servers give exactly (bitwise) what 1 server gives;
#  - --staleness 2 (asynchronous) lowers the validation loss on the small task;
#  - hostile workers (garbage bytes, a truncated frame, a table that does not match its hash, a push
#    for a range the server does not own, a push from the future) and a worker built with another
#    method are rejected with a one-line error naming the rank, and nothing crashes;
#  - a launch without a worker rank is a usage error (exit 2).
# The data and model are those of tests/cli/train.sh (a counting rule, tiny GPT-2), single-threaded.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
DUMP=${PEFT_CKPT_PARAMS:-build/bin/ckpt_params}
HOSTILE=${PEFT_HOSTILE_CLIENT:-build/bin/hostile_client}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_btl_vader_single_copy_mechanism=none
command -v mpirun > /dev/null || { echo "SKIP: mpirun not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

. "$(dirname "$0")/../lib/rule_task.sh"
rule_task "$work" || exit 1

common=(--model "$work/gpt2" --data "$work/data" --method lora --r 8 --lora-alpha 16 --target-modules c_attn,c_proj
        --max-steps 12 --learning-rate 5e-3 --logging-steps 1 --eval-steps 6 --eval-batches 2 --threads 1
        --comm-timeout 60 --seed 7)
losses() { grep -o '"loss": [-0-9.e]*' "$1/metrics.jsonl" | cut -d' ' -f2; }
# compare A B TOL: every line of the two files (numbers) agrees to relative TOL (0: bitwise as text)
compare() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
a = [l.strip() for l in open(sys.argv[1]) if not l.startswith("#")]
b = [l.strip() for l in open(sys.argv[2]) if not l.startswith("#")]
tol = float(sys.argv[3])
if len(a) != len(b) or not a:
    print(f"lengths {len(a)} vs {len(b)}"); sys.exit(1)
if tol == 0:
    bad = [i for i in range(len(a)) if a[i] != b[i]]
    if bad: print(f"{len(bad)} values differ, first at {bad[0]}: {a[bad[0]]} vs {b[bad[0]]}"); sys.exit(1)
    sys.exit(0)
x = [float(v) for v in a]; y = [float(v) for v in b]
if len(x) > 100:  # a parameter vector: norm-wise, |x - y| / |x|
    import math
    worst = math.sqrt(sum((p - q) ** 2 for p, q in zip(x, y)) / max(sum(p * p for p in x), 1e-300))
else:             # per-step losses: each one
    worst = max(abs(p - q) / max(abs(p), 1e-30) for p, q in zip(x, y))
print(f"relative difference {worst:.3g} (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
PY
}

# ---- one process with batch 4 == 1 server + 2 workers with batch 2 == 2 servers + 2 workers ----
"$PEFT" train "${common[@]}" --out "$work/single" --per-device-train-batch-size 4 > "$work/single.log" 2>&1 \
  || { cat "$work/single.log"; fail "single-process run"; }
mpirun -np 3 "$PEFT" train "${common[@]}" --out "$work/s1w2" --per-device-train-batch-size 2 > "$work/s1w2.log" 2>&1 \
  || { cat "$work/s1w2.log"; fail "1 server + 2 workers"; }
mpirun -np 4 "$PEFT" train "${common[@]}" --out "$work/s2w2" --per-device-train-batch-size 2 --num-servers 2 \
  > "$work/s2w2.log" 2>&1 || { cat "$work/s2w2.log"; fail "2 servers + 2 workers"; }
for r in single s1w2 s2w2; do
  losses "$work/$r" > "$work/$r.loss"
  "$DUMP" "$work/$r" > "$work/$r.params" || fail "$r: no checkpoint"
done
[ "$(wc -l < "$work/single.loss")" = 12 ] || fail "single: expected 12 logged steps"
compare "$work/single.loss" "$work/s1w2.loss" 1e-5 || fail "losses: 2 workers x 2 differ from 1 process x 4"
compare "$work/single.params" "$work/s1w2.params" 1e-5 || fail "parameters: 2 workers x 2 differ from 1 process x 4"
compare "$work/s1w2.loss" "$work/s2w2.loss" 0 || fail "losses: 2 servers differ from 1 server"
compare "$work/s1w2.params" "$work/s2w2.params" 0 || fail "parameters: 2 servers differ from 1 server"
grep -q "peft: server 0 on .*: 12 steps, .* s CPU" "$work/s1w2.log" || fail "the server does not report its CPU time"

# ---- asynchronous, bounded staleness: the loss still goes down -----------------------------------
mpirun -np 3 "$PEFT" train "${common[@]}" --out "$work/async" --per-device-train-batch-size 2 --staleness 2 \
  --max-steps 60 --eval-steps 60 > "$work/async.log" 2>&1 || { cat "$work/async.log"; fail "--staleness 2"; }
first=$(losses "$work/async" | head -1)
val=$(grep -o '"val_loss": [0-9.]*' "$work/async/metrics.jsonl" | tail -1 | cut -d' ' -f2)
awk -v a="$first" -v v="$val" 'BEGIN { exit !(v + 0 > 0 && v + 0 < a - 0.15) }' \
  || fail "--staleness 2: validation loss $val not well below the first training loss $first"

# ---- refusals --------------------------------------------------------------------------------------
out=$(mpirun -np 2 "$PEFT" train "${common[@]}" --out "$work/none" --num-servers 2 2>&1); rc=$?
[ $rc = 2 ] || fail "no worker rank: exit $rc, expected 2"
echo "$out" | grep -q "leaves no worker rank" || fail "no worker rank: message missing: $out"

hostile() { # MODE EXPECTED-SUBSTRING
  rm -rf "$work/h"
  out=$(timeout 60 mpirun -np 1 "$PEFT" train "${common[@]}" --out "$work/h" : -np 1 "$HOSTILE" "$1" 2>&1); rc=$?
  [ $rc != 0 ] || fail "hostile $1: the server accepted it"
  echo "$out" | grep -q "^peft: rank 0 .*$2" || fail "hostile $1: no one-line error with '$2': $out"
  # a crash of ours: a sanitizer report, or a signal trace whose frames are not mpirun's own (OpenMPI
  # 4.1's mpirun itself sometimes segfaults in PMIx_server_finalize while tearing down after MPI_Abort)
  if echo "$out" | grep -qi "sanitizer" || echo "$out" | awk '/\*\*\* Process received signal/ { sig[$1] = 1 }
       /mpirun\(/ { mpirun[$1] = 1 } END { for (p in sig) if (!(p in mpirun)) exit 0; exit 1 }'; then
    fail "hostile $1: crash: $out"
  fi
}
hostile garbage "message from rank 1 (worker 0): not a peft frame"
hostile truncated "header length 200 exceeds the 12-byte frame"
hostile selfhash "does not match its own hash"
hostile range "push from rank 1 (worker 0): range \[16, +512)"
hostile future "computed on version 7, but this server is at 0"

rm -rf "$work/m"
out=$(timeout 60 mpirun -np 2 "$PEFT" train "${common[@]}" --out "$work/m" : -np 1 "$PEFT" train "${common[@]}" \
  --out "$work/m" --r 4 2>&1); rc=$?
[ $rc != 0 ] || fail "mixed methods: accepted"
echo "$out" | grep -q "hello from rank 2 (worker 1): tensor-table hash .* differs from worker 0's" \
  || fail "mixed methods: no hash mismatch message: $out"

[ $failures = 0 ] && echo "all MPI training checks passed"
exit $((failures > 0))

#!/usr/bin/env bash
# Checkpoints and exact resume (single process and under mpirun, with LoRA dropout so that the
# saved RNG matters):
#  - a run of 16 steps, and the same run resumed from its checkpoint at step 8, give bitwise the
#    same losses for steps 9..16 and the same final parameters;
#  - SIGTERM to a lone process, SIGTERM to one worker rank under mpirun, and Ctrl-C (SIGINT) to
#    `peft launch` over 2 servers + 2 workers:
#    the step finishes, a checkpoint is written, exit 0; `--resume` then ends bitwise where the
#    uninterrupted run ends;
#  - elastic: a 2-worker checkpoint resumed by one process with the same global batch matches the
#    2-worker run to float tolerance;
#  - SIGKILL of a worker under `peft launch --max-restarts 2`: the job is relaunched from the last
#    checkpoint and ends bitwise where the uninterrupted run ends;
#  - SIGKILL of server 0 at several moments while it checkpoints every step: mpirun ends within a
#    bounded time, the store opens with its last complete checkpoint, and --resume finishes.
set -u
PEFT=${PEFT_BIN:-build/bin/peft}
DUMP=${PEFT_CKPT_PARAMS:-build/bin/ckpt_params}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_btl_vader_single_copy_mechanism=none
command -v mpirun > /dev/null || { echo "SKIP: mpirun not installed"; exit 77; }
work=$(mktemp -d)
trap 'pkill -KILL -f "$work" 2> /dev/null; rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

. "$(dirname "$0")/../lib/rule_task.sh"
rule_task "$work" || exit 1

T=(--model "$work/gpt2" --data "$work/data" --method lora --r 8 --lora-dropout 0.1 --target-modules c_attn,c_proj
   --learning-rate 5e-3 --warmup-steps 3 --logging-steps 1 --eval-steps 1000 --eval-batches 1 --threads 1
   --comm-timeout 60 --seed 3)
losses() { grep -o '"step": [0-9]*, "loss": [-0-9.e]*' "$1/metrics.jsonl"; }
same_params() { # RUN_A RUN_B [STEP_A STEP_B]: bitwise
  "$DUMP" "$1" ${3:-} | tail -n +2 > "$work/pa" && "$DUMP" "$2" ${4:-} | tail -n +2 > "$work/pb" && cmp -s "$work/pa" "$work/pb"
}
close_params() { # RUN_A RUN_B TOL: norm-wise relative difference
  "$DUMP" "$1" | tail -n +2 > "$work/pa" && "$DUMP" "$2" | tail -n +2 > "$work/pb" &&
  python3 - "$work/pa" "$work/pb" "$3" <<'PY'
import math, sys
a = [float(x) for x in open(sys.argv[1])]; b = [float(x) for x in open(sys.argv[2])]
d = math.sqrt(sum((p - q) ** 2 for p, q in zip(a, b)) / sum(p * p for p in a)) if len(a) == len(b) else float("inf")
print(f"relative difference {d:.3g}"); sys.exit(0 if d <= float(sys.argv[3]) else 1)
PY
}
# rank_pid R: the pid of this test's rank R (other jobs on the machine may run MPI too)
rank_pid() {
  for p in $(pgrep -f "peft train .*$work/"); do
    grep -qx "OMPI_COMM_WORLD_RANK=$1" <(tr '\0' '\n' < /proc/$p/environ 2> /dev/null) && { echo "$p"; return; }
  done
}
# wait_lines FILE N: until FILE has N lines (at most 60 s)
wait_lines() { for _ in $(seq 600); do [ -f "$1" ] && [ "$(wc -l < "$1")" -ge "$2" ] && return 0; sleep 0.1; done; return 1; }

# ---- resume from a checkpoint: bitwise --------------------------------------------------------------
"$PEFT" train "${T[@]}" --out "$work/a" --max-steps 16 --save-steps 4 --per-device-train-batch-size 4 > /dev/null 2>&1 \
  || fail "run a"
cp -r "$work/a" "$work/b"
"$PEFT" train "${T[@]}" --out "$work/b" --max-steps 16 --save-steps 4 --per-device-train-batch-size 4 \
  --resume-from-checkpoint 8 > "$work/b.log" 2>&1 || { cat "$work/b.log"; fail "resume from checkpoint 8"; }
grep -q "resuming from checkpoint 8" "$work/b.log" || fail "resume: no 'resuming from checkpoint 8' line"
[ "$(losses "$work/a" | sed -n '9,16p')" = "$(losses "$work/b" | tail -8)" ] || fail "resumed losses differ from the uninterrupted run"
same_params "$work/a" "$work/b" || fail "resumed parameters differ from the uninterrupted run"

# ---- SIGTERM to a lone process, then --resume: bitwise ------------------------------------------------
"$PEFT" train "${T[@]}" --out "$work/c" --max-steps 200 --save-steps 1000 --per-device-train-batch-size 4 > /dev/null 2>&1 \
  || fail "run c"
"$PEFT" train "${T[@]}" --out "$work/d" --max-steps 200 --save-steps 1000 --per-device-train-batch-size 4 \
  > "$work/d.log" 2>&1 &
pid=$!
wait_lines "$work/d/metrics.jsonl" 3 || fail "run d did not start"
kill -TERM $pid
wait $pid; rc=$?
[ $rc = 0 ] || fail "SIGTERM: exit $rc, expected 0"
grep -q "stopped after step .* (SIGTERM)" "$work/d.log" || fail "SIGTERM: no 'stopped' line: $(tail -3 "$work/d.log")"
"$PEFT" train "${T[@]}" --out "$work/d" --max-steps 200 --save-steps 1000 --per-device-train-batch-size 4 --resume \
  > /dev/null 2>&1 || fail "--resume after SIGTERM"
same_params "$work/c" "$work/d" || fail "SIGTERM + --resume: parameters differ from the uninterrupted run"

# ---- 2 servers + 2 workers: uninterrupted, then Ctrl-C to peft launch and --resume ------------------------
M=(--max-steps 200 --save-steps 50 --per-device-train-batch-size 2 --num-servers 2)
mpirun -np 4 "$PEFT" train "${T[@]}" "${M[@]}" --out "$work/m" > "$work/m.log" 2>&1 || { cat "$work/m.log"; fail "mpirun run m"; }
"$PEFT" launch --np 4 -- train "${T[@]}" "${M[@]}" --out "$work/n" > "$work/n.log" 2>&1 &
pid=$!
wait_lines "$work/n/metrics.jsonl" 3 || fail "launch n did not start"
kill -INT $pid
wait $pid; rc=$?
[ $rc = 0 ] || fail "Ctrl-C to launch: exit $rc, expected 0: $(tail -5 "$work/n.log")"
grep -q "stopped after step .* (SIGUSR1)" "$work/n.log" || fail "Ctrl-C to launch: no 'stopped' line"
"$PEFT" launch --np 4 -- train "${T[@]}" "${M[@]}" --out "$work/n" --resume > "$work/n2.log" 2>&1 \
  || { tail -5 "$work/n2.log"; fail "launch --resume"; }
same_params "$work/m" "$work/n" || fail "mpirun Ctrl-C + --resume: parameters differ from the uninterrupted run"

# ---- SIGTERM to one worker rank under mpirun: every rank stops after the step, exit 0; resume: bitwise --
mpirun -np 4 "$PEFT" train "${T[@]}" "${M[@]}" --out "$work/t" > "$work/t.log" 2>&1 &
pid=$!
wait_lines "$work/t/metrics.jsonl" 3 || fail "run t did not start"
victim=$(rank_pid 3)
[ -n "$victim" ] && kill -TERM "$victim" || fail "no rank 3 to signal"
wait $pid; rc=$?
[ $rc = 0 ] || fail "SIGTERM to a worker rank: mpirun exit $rc: $(tail -3 "$work/t.log")"
grep -q "stopped after step .* (a stop requested by another rank)" "$work/t.log" || fail "SIGTERM to a worker rank: no 'stopped' line"
mpirun -np 4 "$PEFT" train "${T[@]}" "${M[@]}" --out "$work/t" --resume > /dev/null 2>&1 || fail "mpirun --resume after SIGTERM"
same_params "$work/m" "$work/t" || fail "SIGTERM to a worker + --resume: parameters differ from the uninterrupted run"

# ---- elastic: a 2-worker checkpoint continued by one process with batch 4 (no dropout: the workers'
# dropout streams cannot be one process's) ---------------------------------------------------------------
E=("${T[@]}" --lora-dropout 0 --max-steps 60 --save-steps 30)
mpirun -np 3 "$PEFT" train "${E[@]}" --per-device-train-batch-size 2 --out "$work/w2" > "$work/w2.log" 2>&1 \
  || { cat "$work/w2.log"; fail "elastic: 2-worker run"; }
cp -r "$work/w2" "$work/e"
"$PEFT" train "${E[@]}" --per-device-train-batch-size 4 --out "$work/e" --resume-from-checkpoint 30 > "$work/e.log" 2>&1 \
  || { cat "$work/e.log"; fail "elastic resume"; }
grep -q "of 2 workers with 1: the global data order continues" "$work/e.log" || fail "elastic resume: no notice of the new worker count"
close_params "$work/w2" "$work/e" 1e-5 || fail "elastic resume: 1 process differs from 2 workers beyond 1e-5"

# ---- SIGKILL of a worker under peft launch: relaunched, bitwise the uninterrupted result -------------------
"$PEFT" launch --np 4 --max-restarts 2 -- train "${T[@]}" "${M[@]}" --save-steps 10 --out "$work/k" > "$work/k.log" 2>&1 &
pid=$!
wait_lines "$work/k/metrics.jsonl" 25 || fail "launch k did not start"
victim=$(rank_pid 3)
[ -n "$victim" ] && kill -KILL "$victim" || fail "no rank 3 to kill"
timeout 300 tail --pid=$pid -f /dev/null; wait $pid; rc=$?
[ $rc = 0 ] || fail "killed worker: launch exit $rc: $(tail -5 "$work/k.log")"
grep -q "restart 1 of 2, resuming from the last checkpoint" "$work/k.log" || fail "killed worker: no restart line"
"$DUMP" "$work/m" 200 | tail -n +2 > "$work/pm"; "$DUMP" "$work/k" 200 | tail -n +2 > "$work/pk"
cmp -s "$work/pm" "$work/pk" || fail "killed worker + relaunch: parameters differ from the uninterrupted run"

# ---- SIGKILL of server 0 while it checkpoints every step: bounded end, intact store ----------------------
for delay in 0.3 0.9 1.7; do
  rm -rf "$work/s"
  start=$(date +%s)
  mpirun -np 3 "$PEFT" train "${T[@]}" --max-steps 400 --save-steps 1 --per-device-train-batch-size 2 --out "$work/s" \
    > "$work/s.log" 2>&1 &
  pid=$!
  wait_lines "$work/s/metrics.jsonl" 2 || fail "run s did not start"
  sleep $delay
  victim=$(rank_pid 0)
  [ -n "$victim" ] && kill -KILL "$victim" || fail "server killed after ${delay}s: no rank 0 found"
  timeout 60 tail --pid=$pid -f /dev/null || fail "server killed after ${delay}s: mpirun still running after 60 s"
  wait $pid; rc=$?
  [ $rc != 0 ] || fail "server killed after ${delay}s: mpirun exit 0"
  "$DUMP" "$work/s" > /dev/null || fail "server killed after ${delay}s: the store does not open: $("$DUMP" "$work/s" 2>&1 | tail -1)"
  timeout 120 mpirun -np 3 "$PEFT" train "${T[@]}" --max-steps 60 --save-steps 30 --per-device-train-batch-size 2 \
    --out "$work/s" --resume > "$work/s2.log" 2>&1 || { tail -3 "$work/s2.log"; fail "server killed after ${delay}s: --resume failed"; }
done

[ $failures = 0 ] && echo "all resume checks passed"
exit $((failures > 0))

#!/usr/bin/env bash
# A short `peft train` under mpirun (1 server, 2 workers on localhost) with every rank under valgrind
# memcheck: no invalid access, no use of uninitialised memory, no definitely lost block (leak check
# full). Open MPI's own reports are suppressed by its shipped file and tests/mpi/valgrind-openmpi.supp,
# whose entries all need a frame inside Open MPI, libevent or dlopen(). First a negative control: the
# probe with --canary (one invalid read, one leaked block in rank 0) must be reported through the same
# suppressions, so that a clean run means something. Label slow (minutes under valgrind; not in CI).
# Skipped (exit 77, reason printed) when valgrind is not installed. The GEMM backend is OpenBLAS:
# oneDNN's JIT kernels load 32 bytes past the end of their own scratch buffers, which memcheck
# reports (24 contexts in a 2-step run) in code it cannot attribute (JIT frames show as ???).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
PEFT=${PEFT_BIN:-$root/build/bin/peft}
CHECK=${PEFT_MPI_HOSTS_CHECK:-$root/build/bin/mpi_hosts_check}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

command -v valgrind > /dev/null || { echo "SKIP: valgrind is not installed (scripts/install-deps.sh)"; exit 77; }
[ -x "$CHECK" ] || { echo "FAIL: $CHECK is not built"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# without OMP_WAIT_POLICY peft restarts itself through /proc/self/exe (cli/main.c), which under
# valgrind is valgrind's own tool binary and refuses to run ("You cannot run ... directly")
export OMP_WAIT_POLICY=PASSIVE
supp=(--suppressions=/usr/share/openmpi/openmpi-valgrind.supp
      --suppressions="$root/tests/mpi/valgrind-openmpi.supp")

# vg_run NAME NP CMD...: every rank under memcheck, one log per rank in $work/NAME/vg.PID.log
vg_run() {
    local name=$1 np=$2
    shift 2
    mkdir -p "$work/$name"
    timeout 1200 mpirun --oversubscribe --bind-to none -np "$np" valgrind --error-exitcode=3 --leak-check=full \
        --errors-for-leak-kinds=definite --show-leak-kinds=definite "${supp[@]}" \
        --log-file="$work/$name/vg.%p.log" "$@" > "$work/$name.out" 2>&1
}
# errors NAME: the memcheck error count of each rank's log, one number per line
errors() { sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$work/$1"/vg.*.log; }
# suppressed NAME: how many errors the suppressions hid in each rank
suppressed() { sed -n 's/.*ERROR SUMMARY: .*suppressed: \([0-9]*\) from.*/\1/p' "$work/$1"/vg.*.log | tr '\n' ' '; }

# --- the negative control
start=$(date +%s)
vg_run canary 2 "$CHECK" --canary
rc=$?
echo "canary: exit $rc in $(($(date +%s) - start)) s; errors per rank: $(errors canary | tr '\n' ' ')"
[ $rc -ne 0 ] || fail "canary: valgrind reported nothing (exit 0)"
[ "$(errors canary | sort -n | tr '\n' ' ')" = "0 2 " ] \
    || fail "canary: want 2 errors in rank 0 and none in rank 1, got: $(errors canary | tr '\n' ' ')"
grep -q 'Invalid read of size 4' "$work"/canary/vg.*.log || fail "canary: the invalid read was not reported"
grep -q 'definitely lost' "$work"/canary/vg.*.log || fail "canary: the leaked block was not reported"

# --- peft train: 3 steps, tiny GPT-2 with LoRA, 1 server + 2 workers
. "$root/tests/lib/rule_task.sh"
rule_task "$work" 40 || exit 1   # rule.jsonl, data/, gpt2/
start=$(date +%s)
vg_run train 3 "$PEFT" train --model "$work/gpt2" --data "$work/data" --out "$work/run" --method lora \
    --learning-rate 3e-2 --max-steps 3 --per-device-train-batch-size 2 --logging-steps 1 --save-steps 2 \
    --threads 1 --num-servers 1 --gemm openblas
rc=$?
echo "peft train (1 server, 2 workers, 3 steps): exit $rc in $(($(date +%s) - start)) s;" \
    "errors per rank: $(errors train | tr '\n' ' ')(suppressed: $(suppressed train))"
grep -E '^(done|peft: server)' "$work/train.out"
[ $rc -eq 0 ] || fail "peft train under valgrind: exit $rc: $(grep '^peft: ' "$work/train.out" | head -3)"
[ "$(errors train | tr '\n' ' ')" = "0 0 0 " ] || {
    fail "peft train under valgrind: errors per rank $(errors train | tr '\n' ' '), want 0 0 0"
    grep -h -A12 -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall|[0-9,]+ bytes in)' "$work"/train/vg.*.log | head -80
}
grep -q '^done: 3 steps' "$work/train.out" || fail "peft train under valgrind did not finish its 3 steps"

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "valgrind.sh: all checks passed"

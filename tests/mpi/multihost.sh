#!/usr/bin/env bash
# MPI across hosts: scripts/mpi_hosts.sh makes three hosts h1, h2, h3 on this machine (network
# namespaces on a private bridge, one sshd each), and mpirun on h1 starts one rank per host over
# ssh, the ranks talking over TCP only (--mca btl tcp,self; shared memory cannot reach across hosts).
# Checked: every rank runs on its own host (h1, h2, h3, each with its own 10.77.0.K address), an
# MPI_Allreduce gives n (n + 1) / 2 and a 1 MiB ring exchange arrives intact. Then a short
# `peft train` with 1 server and 2 workers on the three hosts equals the same run on localhost.
# Where the hosts cannot be made (not root, no CAP_NET_ADMIN, no `ip netns`, sshd missing) the test
# prints "SKIP: <reason>" and exits 77, which ctest reports as skipped. The hosts are always torn down.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
HOSTS=$root/scripts/mpi_hosts.sh
CHECK=${PEFT_MPI_HOSTS_CHECK:-$root/build/bin/mpi_hosts_check}
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
skip() { echo "SKIP: $*"; exit 77; }

[ -x "$CHECK" ] || { echo "FAIL: $CHECK is not built"; exit 1; }
work=$(mktemp -d)
made=0
cleanup() {
    [ $made -eq 1 ] && "$HOSTS" down
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# one multi-host test at a time on this machine (another worktree may be running the suite)
lock=/tmp/peft-mpi-hosts.lock
[ -e $lock ] || : > $lock
exec 9< $lock
flock -w 300 9 || { echo "FAIL: another multi-host test held $lock for 300 s"; exit 1; }
# hosts that a killed run of this test left behind (it marks its hosts; we hold the lock, so that run
# is over) are removed; hosts someone made by hand are not ours to remove
if [ -e /run/netns-mpi/made-by-multihost-test ]; then
    echo "removing the hosts a killed run of this test left behind"
    "$HOSTS" down
fi
[ ! -e /run/netns-mpi ] || { echo "FAIL: hosts are already up (/run/netns-mpi): '$HOSTS down' first"; exit 1; }

made=1
"$HOSTS" up 3 2> "$work/up.err"
rc=$?
case $rc in
    0) ;;
    77) skip "$(sed 's/^mpi_hosts.sh: //' "$work/up.err")" ;;
    *) echo "FAIL: mpi_hosts.sh up 3 (exit $rc): $(cat "$work/up.err")"; exit 1 ;;
esac
: > /run/netns-mpi/made-by-multihost-test

# --- one rank per host, TCP only
start=$(date +%s%N)
timeout 120 "$HOSTS" run -- --host h1,h2,h3 -np 3 --mca pml ob1 --mca btl tcp,self "$CHECK" \
    > "$work/check.out" 2> "$work/check.err"
rc=$?
echo "mpi_hosts_check on h1,h2,h3: exit $rc in $((($(date +%s%N) - start) / 1000000)) ms"
cat "$work/check.out"
[ $rc -eq 0 ] || fail "mpi_hosts_check exit $rc: $(cat "$work/check.err")"
for r in 0 1 2; do
    line=$(grep "^rank $r " "$work/check.out")
    host=$(echo "$line" | awk '{ print $4 }')
    addr=$(echo "$line" | awk '{ print $6 }')
    # the host name and the address must agree: hK is 10.77.0.K
    case "$host" in
        h[123]) [ "$addr" = "10.77.0.${host#h}" ] || fail "rank $r: host $host has address '$addr'" ;;
        *) fail "rank $r: host '$host', want one of h1, h2, h3" ;;
    esac
done
hosts=$(awk '/^rank / { print $4 }' "$work/check.out" | sort | tr '\n' ' ')
[ "$hosts" = "h1 h2 h3 " ] || fail "the ranks ran on '$hosts', want one on each of h1 h2 h3"
grep -qx "sum 6 want 6" "$work/check.out" || fail "allreduce of rank + 1 over 3 ranks: $(grep '^sum' "$work/check.out"), want 6"
grep -qx "ring ok" "$work/check.out" || fail "ring exchange: $(grep '^ring' "$work/check.out")"

# --- peft train across the hosts: 1 server (rank 0, on h1) and 2 workers (h2, h3) give the same
# per-step losses and the same final parameters (the merged model, byte for byte) as the same 3 ranks
# on localhost: the transport is the only difference.
PEFT=${PEFT_BIN:-$root/build/bin/peft}
. "$root/tests/lib/rule_task.sh"
train_across_hosts() {
    rule_task "$work" 100 || { fail "the rule task (above)"; return; }   # rule.jsonl, data/, gpt2/
    local args=(train --model "$work/gpt2" --data "$work/data" --method lora --learning-rate 3e-2 --max-steps 8
        --per-device-train-batch-size 4 --logging-steps 1 --threads 1 --seed 1 --num-servers 1)
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun --oversubscribe --bind-to none \
        -np 3 "$PEFT" "${args[@]}" --out "$work/run-local" > "$work/local.out" 2>&1 \
        || { fail "peft train on localhost: $(tail -5 "$work/local.out")"; return; }
    start=$(date +%s%N)
    timeout 300 "$HOSTS" run -- --host h1,h2,h3 -np 3 --mca pml ob1 --mca btl tcp,self --display-map \
        "$PEFT" "${args[@]}" --out "$work/run-hosts" > "$work/hosts.out" 2>&1
    rc=$?
    echo "peft train on h1,h2,h3 (1 server, 2 workers): exit $rc in $((($(date +%s%N) - start) / 1000000)) ms"
    grep -E '^(done|peft: server)' "$work/hosts.out"
    [ $rc -eq 0 ] || { fail "peft train across hosts: exit $rc: $(tail -5 "$work/hosts.out")"; return; }
    # mpirun's map (printed once per daemon): rank r on h(r+1); the server names its host
    for r in 0 1 2; do
        host=$(awk -v r=$r '/Data for node:/ { h = $4 } /Process rank:/ && $(NF - 2) == r { print h; exit }' "$work/hosts.out")
        [ "$host" = "h$((r + 1))" ] || fail "peft train: rank $r mapped to '$host', want h$((r + 1))"
    done
    grep -q '^peft: server 0 on h1:' "$work/hosts.out" || fail "peft train: no 'server 0 on h1' line"
    python3 - "$work/run-local/metrics.jsonl" "$work/run-hosts/metrics.jsonl" <<'PY' || fail "losses differ (above)"
import json, sys
local, hosts = ([json.loads(l) for l in open(p)] for p in sys.argv[1:])
assert [r["step"] for r in local] == list(range(1, 9)), [r["step"] for r in local]
assert [r["step"] for r in hosts] == list(range(1, 9)), [r["step"] for r in hosts]
for a, b in zip(local, hosts):
    for k in ("loss", "grad_norm", "learning_rate"):
        assert a[k] == b[k], f"step {a['step']} {k}: localhost {a[k]}, hosts {b[k]} (want equal)"
assert local[-1]["val_loss"] == hosts[-1]["val_loss"], (local[-1]["val_loss"], hosts[-1]["val_loss"])
print("losses equal: " + " ".join(f"{r['loss']:.6f}" for r in hosts))
PY
    for run in local hosts; do
        "$PEFT" export --run "$work/run-$run" --format merged --out "$work/merged-$run" > /dev/null \
            || fail "peft export of run-$run"
    done
    cmp -s "$work/merged-local/model.safetensors" "$work/merged-hosts/model.safetensors" \
        && echo "final parameters equal (merged model.safetensors identical)" \
        || fail "final parameters differ: merged model.safetensors of the two runs are not identical"
}
train_across_hosts

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "multihost.sh: all checks passed"

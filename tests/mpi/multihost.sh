#!/usr/bin/env bash
# MPI across hosts: scripts/mpi_hosts.sh makes three hosts h1, h2, h3 on this machine (network
# namespaces on a private bridge, one sshd each), and mpirun on h1 starts one rank per host over
# ssh, the ranks talking over TCP only (--mca btl tcp,self; shared memory cannot reach across hosts).
# Checked: every rank runs on its own host (h1, h2, h3, each with its own 10.77.0.K address), an
# MPI_Allreduce gives n (n + 1) / 2 and a 1 MiB ring exchange arrives intact.
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
[ ! -e /run/netns-mpi ] || { echo "FAIL: hosts are already up (/run/netns-mpi): '$HOSTS down' first"; exit 1; }

made=1
"$HOSTS" up 3 2> "$work/up.err"
rc=$?
case $rc in
    0) ;;
    77) skip "$(sed 's/^mpi_hosts.sh: //' "$work/up.err")" ;;
    *) echo "FAIL: mpi_hosts.sh up 3 (exit $rc): $(cat "$work/up.err")"; exit 1 ;;
esac

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

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "multihost.sh: all checks passed"

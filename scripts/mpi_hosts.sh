#!/usr/bin/env bash
# Several MPI hosts on this one machine, so that `mpirun --host` really launches one orted per host
# over ssh and the ranks on different hosts talk over TCP (the recipe measured in
# shared/mpi-hosts.md). Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), `ip netns`, sshd and ssh.
#   scripts/mpi_hosts.sh up [N]              make hosts h1..hN (default 3, at most 16)
#   scripts/mpi_hosts.sh run -- ARGS...      exec `mpirun ARGS...` on host h1, with the MCA environment
#   scripts/mpi_hosts.sh down                remove everything `up` made (safe to run any time, twice)
#
# Host K is the network namespace mpinsK: eth0 = 10.77.0.K/24, hostname hK (its own UTS namespace),
# one sshd bound to 10.77.0.K only. The veth peers hang on bridge br0 inside a private namespace
# mpihub, so the machine's own interfaces are never touched. Throw-away client and host keys, the
# ssh client config and a hostfile (hK slots=1 per line) live in /run/netns-mpi; names resolve
# through /etc/netns/mpinsK/hosts, which `ip netns exec` binds over /etc/hosts. ~/.ssh and
# /etc/hosts are never touched. The filesystem and the PID space stay shared: binaries and the cwd
# are the same on every host.
#
# Exit codes: 0 done; 77 these hosts cannot be made here (the reason on one line: not root, a tool
# missing, no CAP_NET_ADMIN); 1 anything else failed (everything made so far is removed again);
# 2 usage. `run` execs mpirun, so its exit code and signals are mpirun's own (no orphaned ranks when
# `timeout` or Ctrl-C stops it).
#
# Ranks do not bind to cores (every fake host believes it owns every core, so all of them would bind
# their first rank to core 0) and yield when idle, since the hosts share the machine's cores.
# Remote ranks see only the environment that mpirun forwards: pass `-x NAME` for anything else.
set -euo pipefail

S=/run/netns-mpi
NET=10.77.0
PROG=mpi_hosts.sh
SSHD=/usr/sbin/sshd

die() { echo "$PROG: $*" >&2; exit 1; }
cannot() { echo "$PROG: cannot make hosts here: $*" >&2; exit 77; }
usage() { sed -n '5,7s/^#//p' "$0" >&2; exit 2; }

hosts_down() {
    local pidfile pid ns killed="" try
    for pidfile in "$S"/sshd-*.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        # only an sshd, in case the pid was reused after that sshd died
        [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] && kill "$pid" 2>/dev/null && killed="$killed $pid"
    done
    for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^mpins[0-9]+$/ || $1 == "mpihub" { print $1 }'); do
        # whatever runs in our namespaces (sshd, its sessions, orted, ranks) was started through them
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill "$pid" 2>/dev/null && killed="$killed $pid"
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    for try in $(seq 1 30); do
        for pid in $killed; do [ -d "/proc/$pid" ] && break; pid=""; done
        [ -z "${pid:-}" ] && break
        sleep 0.1
    done
    rm -rf /etc/netns/mpins* "$S"
    rmdir /etc/netns 2>/dev/null || true
}

check_prerequisites() {
    [ "$(id -u)" -eq 0 ] || cannot "not root (uid $(id -u)); network namespaces and sshd need root"
    local tool
    for tool in ip unshare ssh ssh-keygen mpirun; do
        command -v "$tool" > /dev/null || cannot "'$tool' is not installed (scripts/install-deps.sh)"
    done
    [ -x "$SSHD" ] || cannot "$SSHD is not installed (openssh-server, scripts/install-deps.sh)"
    ip netns list > /dev/null 2>&1 || cannot "'ip netns' does not work: $(ip netns list 2>&1 | head -1)"
}

# netns_op WHAT CMD...: a step that only fails where namespaces or virtual links cannot be made
netns_op() {
    local what=$1 out
    shift
    out=$("$@" 2>&1) || cannot "$what failed (no CAP_NET_ADMIN or kernel support?): $out"
}

hosts_up() {
    local n=$1 k
    case "$n" in '' | *[!0-9]*) usage ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le 16 ] || die "up: N must be 1..16, got $n"
    check_prerequisites
    if [ -d "$S" ] || ip netns list | grep -qE '^(mpihub|mpins[0-9]+)( |$)'; then
        die "hosts are already up (/run/netns-mpi or namespace mpihub exists); run '$0 down' first"
    fi
    trap 'status=$?; if [ $status -ne 0 ]; then
              [ $status -eq 77 ] || echo "$PROG: up failed (exit $status); removing what it made" >&2
              hosts_down
          fi; exit $status' EXIT
    trap 'exit 1' INT TERM HUP

    mkdir -p "$S" /run/sshd
    chmod 700 "$S"
    ssh-keygen -q -t ed25519 -N '' -C peft-mpi-hosts -f "$S/id_ed25519"
    cp "$S/id_ed25519.pub" "$S/authorized_keys"
    ssh-keygen -q -t ed25519 -N '' -C peft-mpi-hosts -f "$S/host_ed25519"
    printf 'Host h* %s.*\n User root\n IdentityFile %s/id_ed25519\n IdentitiesOnly yes\n BatchMode yes\n StrictHostKeyChecking no\n UserKnownHostsFile /dev/null\n LogLevel ERROR\n ConnectTimeout 10\n' \
        "$NET" "$S" > "$S/ssh_config"
    # sshd reads only this file (and its -o ListenAddress/PidFile), never /etc/ssh/sshd_config
    printf 'HostKey %s/host_ed25519\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAuthorizedKeysFile %s/authorized_keys\nUsePAM no\nUseDNS no\nMaxStartups 64\n' \
        "$S" "$S" > "$S/sshd_config"
    : > "$S/hosts"
    : > "$S/hostfile"
    for k in $(seq 1 "$n"); do
        echo "$NET.$k h$k" >> "$S/hosts"
        echo "h$k slots=1" >> "$S/hostfile"
    done

    netns_op "ip netns add mpihub" ip netns add mpihub
    netns_op "ip netns exec" ip netns exec mpihub true
    netns_op "creating a bridge" ip -n mpihub link add br0 type bridge
    ip -n mpihub link set br0 up
    for k in $(seq 1 "$n"); do
        ip netns add "mpins$k"
        mkdir -p "/etc/netns/mpins$k"
        { echo "127.0.0.1 localhost"; cat "$S/hosts"; } > "/etc/netns/mpins$k/hosts"
        netns_op "creating a veth pair" ip -n mpihub link add "v$k" type veth peer name eth0 netns "mpins$k"
        ip -n mpihub link set "v$k" master br0 up
        ip -n "mpins$k" link set lo up
        ip -n "mpins$k" addr add "$NET.$k/24" dev eth0
        ip -n "mpins$k" link set eth0 up
        netns_op "unshare --uts" ip netns exec "mpins$k" unshare --uts true
        ip netns exec "mpins$k" unshare --uts sh -c "hostname h$k; exec $SSHD -f $S/sshd_config \
            -o ListenAddress=$NET.$k -o PidFile=$S/sshd-$k.pid" \
            || die "sshd on h$k did not start"
    done
    # every host answers over ssh from h1 with its own name (this also waits for the sshds)
    for k in $(seq 1 "$n"); do
        local got="" try
        for try in 1 2 3 4 5 6 7 8 9 10; do
            got=$(ip netns exec mpins1 ssh -F "$S/ssh_config" "h$k" hostname 2>&1) && break
            sleep 0.3
        done
        [ "$got" = "h$k" ] || die "h1 cannot ssh to h$k: $got"
    done
    echo "$n" > "$S/count"
    trap - EXIT INT TERM HUP
    echo "$PROG: hosts h1..h$n up ($NET.1..$NET.$n), hostfile $S/hostfile"
}

hosts_run() {
    [ -f "$S/count" ] || die "run: no hosts are up; run '$0 up' first"
    # exec all the way down (ip netns exec, unshare and env exec too): the caller's pid becomes mpirun
    exec ip netns exec mpins1 unshare --uts sh -c 'hostname h1 && s=$1 net=$2 && shift 2 && exec env \
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_plm_rsh_agent=ssh OMPI_MCA_plm_rsh_args="-F $s/ssh_config" \
        OMPI_MCA_btl_tcp_if_include=$net.0/24 OMPI_MCA_oob_tcp_if_include=$net.0/24 \
        OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_hwloc_base_binding_policy=none \
        OMPI_MCA_mpi_yield_when_idle=1 \
        mpirun "$@"' sh "$S" "$NET" "$@"
}

case "${1:-}" in
    up) [ $# -le 2 ] || usage; hosts_up "${2:-3}" ;;
    down) [ $# -eq 1 ] || usage; hosts_down ;;
    run) [ "${2:-}" = "--" ] || usage; shift 2; hosts_run "$@" ;;
    *) usage ;;
esac

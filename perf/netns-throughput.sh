#!/usr/bin/env bash
# perf/netns-throughput.sh — iperf3 throughput through a VPN tunnel in network namespaces:
# real openvpn as the server, and (with --fwd) fwd as the server, same lab, same client.
#
# Usage: perf/netns-throughput.sh [--fwd PATH] [--fwd-args "ARGS"] [--duration S]
#                                 [--underlay 4|6] [--reverse] [--keep]
#
# Topology: namespace "server" <-veth-> namespace "client1" (tools/lab.sh); a real openvpn
# 2.6 client in client1; iperf3 server in the server namespace bound to the tunnel
# addresses (10.8.0.1, fd00:8::1); iperf3 client in client1 (client -> server direction).
# Measures TCP and UDP with IPv4 and IPv6 payload, S seconds each (default 5). --reverse adds
# TCP server -> client (iperf3 -R: the servers' tun -> encrypt -> UDP path).
#
# Exit status: 0 all measured; 3 fwd was given but its tunnel did not come up (the openvpn
# numbers are still printed); 1 the lab or the openvpn baseline failed.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../tools/lab.sh
source "$here/../tools/lab.sh"

FWD=
FWD_ARGS=
DURATION=5
UNDERLAY=4
KEEP=
REVERSE=
while (($#)); do
    case $1 in
    --fwd) FWD=$(readlink -f "$2"); shift 2 ;;
    --fwd-args) FWD_ARGS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --underlay) UNDERLAY=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --reverse) REVERSE=1; shift ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 1 && DURATION <= 60)) || {
    echo "--duration must be 1..60 seconds" >&2
    exit 2
}
[[ $UNDERLAY == 4 || $UNDERLAY == 6 ]] || { echo "--underlay must be 4 or 6" >&2; exit 2; }
if [[ -n $FWD && ! -x $FWD ]]; then
    echo "--fwd $FWD: not an executable" >&2
    exit 2
fi
for bin in ip openvpn openssl iperf3; do
    command -v "$bin" >/dev/null || { echo "missing $bin (bash .ci/run installs it)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/fwd-perf-XXXXXX)
cleanup() {
    lab_down
    if [[ -n $KEEP ]]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up server client1
lab_pki "$WORK/pki" client1 >/dev/null
PKI=$WORK/pki
if [[ $UNDERLAY == 6 ]]; then PROTO=udp6; REMOTE=$(lab_addr server 6); else PROTO=udp; REMOTE=$(lab_addr server 4); fi

write_server_conf() { # FILE EXTRA
    cat >"$1" <<EOF
port 1194
proto $PROTO
dev tun
ca $PKI/ca.crt
cert $PKI/server.crt
key $PKI/server.key
dh none
tls-crypt $PKI/tc.key
topology subnet
server 10.8.0.0 255.255.255.0
server-ipv6 fd00:8::/64
keepalive 10 60
verb 3
$2
EOF
}
write_server_conf "$WORK/openvpn-server.conf" disable-dco
write_server_conf "$WORK/fwd-server.conf" ""
cat >"$WORK/client1.conf" <<EOF
client
dev tun
proto $PROTO
remote $REMOTE 1194
nobind
ca $PKI/ca.crt
cert $PKI/client1.crt
key $PKI/client1.key
remote-cert-tls server
tls-crypt $PKI/tc.key
disable-dco
connect-retry 1 1
verb 3
EOF

IPERF_PID=$(lab_spawn server "$WORK/iperf3-server.log" iperf3 -s)

# iperf3 CLIENT_ARGS...: prints receiver Mbit/s or "fail".
measure() {
    local out
    if ! out=$(lab_exec client1 timeout $((DURATION + 15)) iperf3 -f m -t "$DURATION" "$@" 2>&1); then
        echo fail
        return
    fi
    awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) }
         END { if (v == "") print "fail"; else print v }' <<<"$out"
}

TESTS=("IPv4 TCP|-c 10.8.0.1" "IPv4 UDP|-c 10.8.0.1 -u -b 0 -l 1400"
    "IPv6 TCP|-c fd00:8::1" "IPv6 UDP|-c fd00:8::1 -u -b 0 -l 1380")
[[ -n $REVERSE ]] && TESTS+=("IPv4 TCP rev|-c 10.8.0.1 -R" "IPv6 TCP rev|-c fd00:8::1 -R")
declare -A RESULT

# run_server KIND ARGV...: tunnel up with KIND as the server, measure all, tear down.
# Returns 1 (results "n/a") if the client never completed initialization.
run_server() {
    local kind=$1
    shift
    local slog="$WORK/$kind-server.log" clog="$WORK/$kind-client1.log" spid cpid t
    spid=$(lab_spawn server "$slog" "$@")
    sleep 0.5 # let the server bind before the client's first packet
    cpid=$(lab_spawn client1 "$clog" openvpn --config "$WORK/client1.conf")
    # Up to 20 s for the client to complete; give up at once if either process dies.
    local up=
    for _ in $(seq 200); do
        if grep -qF "Initialization Sequence Completed" "$clog" 2>/dev/null; then up=1; break; fi
        kill -0 "$spid" 2>/dev/null && kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $up ]] || ! kill -0 "$spid" 2>/dev/null; then
        local why="client did not complete initialization"
        kill -0 "$spid" 2>/dev/null || why="server process exited"
        echo "!! $kind: tunnel did not come up ($why)" >&2
        echo "-- $kind server log (tail) --" >&2
        tail -n 15 "$slog" >&2 || true
        echo "-- client log (tail) --" >&2
        tail -n 15 "$clog" >&2 || true
        for t in "${TESTS[@]}"; do RESULT["$kind|${t%%|*}"]="n/a"; done
        lab_kill "$cpid"
        lab_kill "$spid"
        return 1
    fi
    # The tunnel addresses must be usable before iperf3 starts.
    for t in 10.8.0.1 fd00:8::1; do
        for _ in $(seq 30); do lab_exec client1 ping -c1 -W1 "$t" >/dev/null 2>&1 && break; done
    done
    for t in "${TESTS[@]}"; do
        # shellcheck disable=SC2086 # the argument string is split on purpose
        RESULT["$kind|${t%%|*}"]=$(measure ${t#*|})
        echo "   $kind ${t%%|*}: ${RESULT["$kind|${t%%|*}"]} Mbit/s" >&2
    done
    lab_kill "$cpid"
    lab_kill "$spid"
    return 0
}

echo "== openvpn server (underlay IPv$UNDERLAY, ${DURATION}s per test) ==" >&2
if ! run_server openvpn openvpn --config "$WORK/openvpn-server.conf"; then
    echo "openvpn baseline failed; lab broken?" >&2
    exit 1
fi

FWD_STATUS=skipped
if [[ -n $FWD ]]; then
    echo "== fwd server: $FWD $FWD_ARGS ==" >&2
    # shellcheck disable=SC2086 # extra args are split on purpose
    if run_server fwd "$FWD" --config "$WORK/fwd-server.conf" $FWD_ARGS; then
        FWD_STATUS=ok
    else
        FWD_STATUS="failed to connect"
    fi
fi

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'
}

lab_kill "$IPERF_PID"
printf '\n%-12s %14s %14s %12s\n' "payload" "openvpn Mbit/s" "fwd Mbit/s" "fwd/openvpn"
for t in "${TESTS[@]}"; do
    name=${t%%|*}
    o=${RESULT["openvpn|$name"]}
    f=${RESULT["fwd|$name"]:-n/a}
    printf '%-12s %14s %14s %12s\n' "$name" "$o" "$f" "$(ratio "$f" "$o")"
done
echo
echo "fwd: $FWD_STATUS"
[[ $FWD_STATUS == "failed to connect" ]] && exit 3
exit 0

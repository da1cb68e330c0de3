#!/usr/bin/env bash
# perf/many-clients.sh — many simulated clients against fwd and against stock openvpn, same
# lab, same config, same load (fwd-loadgen), and a comparison table.
#
# Usage: perf/many-clients.sh [--fwd PATH] [--loadgen PATH] [--clients N] [--rate R]
#                             [--pps P] [--data-secs S] [--size B] [--lg-threads T]
#                             [--fwd-threads T] [--server-extra "LINES"]
#                             [--only fwd|openvpn] [--keep]
#
# Defaults: target/release/fwd and target/release/fwd-loadgen, 1000 clients at 200 new
# handshakes/s, then 10 echo requests/s per client (IPv4 and IPv6 alternating, 100-byte
# packets) for 10 s after the last handshake started; fwd runs with --threads 2; the load
# generator with 2 threads.
#
# Topology: namespace "server" <-veth-> namespace "lg" (tools/lab.sh). The server config is
# the same for both programs: `server 10.8.0.0 255.255.0.0`, `server-ipv6 fd00:8::/64`,
# topology subnet, tls-crypt, max-clients 5000, duplicate-cn (one client certificate for every
# simulated client), keepalive 10 60, and `connect-freq-initial 100000 10` (the 2.6 default of
# 100 replies per 10 s would cap both servers at 10 new clients/s and measure only the
# limiter); openvpn also gets `disable-dco`. The simulated clients ping the server's own tun
# addresses (10.8.0.1, fd00:8::1), so the server host's kernel answers.
#
# --server-extra appends config lines to both servers' configs (`;` separates lines), e.g.
# --server-extra "rcvbuf 4194304;sndbuf 4194304".
#
# Reported per server: handshakes completed, handshakes/s, p50/p99 handshake latency, echo
# requests sent / replies received / loss, server CPU seconds during the run (utime+stime
# from /proc/PID/stat) and peak RSS (VmHWM), then fwd/openvpn ratios.
#
# Exit status: 0 both measured; 1 lab or a server failed to start; 2 bad arguments.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# Our own lab state, so a concurrent lab of someone else is never touched.
export FWD_LAB_STATE=${FWD_LAB_STATE:-/tmp/fwd-lab-many-clients}
# shellcheck source=../tools/lab.sh
source "$root/tools/lab.sh"

FWD=$root/target/release/fwd
LOADGEN=$root/target/release/fwd-loadgen
CLIENTS=1000
RATE=200
PPS=10
DATA_SECS=10
SIZE=100
LG_THREADS=2
FWD_THREADS=2
ONLY=
KEEP=
EXTRA=
while (($#)); do
    case $1 in
    --fwd) FWD=$(readlink -f "$2"); shift 2 ;;
    --loadgen) LOADGEN=$(readlink -f "$2"); shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --pps) PPS=$2; shift 2 ;;
    --data-secs) DATA_SECS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --lg-threads) LG_THREADS=$2; shift 2 ;;
    --fwd-threads) FWD_THREADS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --server-extra) EXTRA=${2//;/$'\n'}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in CLIENTS RATE PPS DATA_SECS SIZE LG_THREADS FWD_THREADS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "--${v,,} must be a whole number" >&2; exit 2; }
done
((CLIENTS >= 1 && CLIENTS <= 5000)) || { echo "--clients must be 1..5000" >&2; exit 2; }
((RATE >= 1)) || { echo "--rate must be >= 1" >&2; exit 2; }
((DATA_SECS >= 1 && DATA_SECS <= 300)) || { echo "--data-secs must be 1..300" >&2; exit 2; }
[[ -z $ONLY || $ONLY == fwd || $ONLY == openvpn ]] || { echo "--only fwd|openvpn" >&2; exit 2; }
for bin in "$FWD" "$LOADGEN"; do
    [[ -x $bin ]] || { echo "$bin: not an executable (cargo build --release)" >&2; exit 2; }
done
for bin in ip openvpn openssl; do
    command -v "$bin" >/dev/null || { echo "missing $bin" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/fwd-many-XXXXXX)
cleanup() {
    lab_down
    if [[ -n $KEEP ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab_up server lg
lab_pki "$WORK/pki" client1 >/dev/null
PKI=$WORK/pki
REMOTE=$(lab_addr server 4)

write_server_conf() { # FILE EXTRA
    cat >"$1" <<EOF
port 1194
proto udp
dev tun
ca $PKI/ca.crt
cert $PKI/server.crt
key $PKI/server.key
dh none
tls-crypt $PKI/tc.key
topology subnet
server 10.8.0.0 255.255.0.0
server-ipv6 fd00:8::/64
max-clients 5000
duplicate-cn
keepalive 10 60
connect-freq-initial 100000 10
verb 3
$EXTRA
$2
EOF
}
write_server_conf "$WORK/openvpn-server.conf" disable-dco
write_server_conf "$WORK/fwd-server.conf" ""
cat >"$WORK/client.ovpn" <<EOF
client
dev tun
proto udp
remote $REMOTE 1194
nobind
ca $PKI/ca.crt
cert $PKI/client1.crt
key $PKI/client1.key
remote-cert-tls server
tls-crypt $PKI/tc.key
verb 1
EOF

# Handshakes start over CLIENTS/RATE seconds; every client then gets about DATA_SECS of data.
DURATION=$(((CLIENTS + RATE - 1) / RATE + DATA_SECS))
TICK=$(getconf CLK_TCK)
declare -A R

udp_drops() { # ROLE: UDP receive-buffer drops (IPv4 + IPv6 sockets) in ROLE's namespace so far
    {
        lab_exec "$1" cat /proc/net/snmp | awk '/^Udp:/ { if (h) print $6; h = 1 }'
        lab_exec "$1" cat /proc/net/snmp6 | awk '$1 == "Udp6RcvbufErrors" { print $2 }'
    } | awk '{ s += $1 } END { print s + 0 }'
}

tun_drops() { # dropped packets (tx + rx) on the server's tun devices so far
    lab_exec server sh -c 'cat /sys/class/net/tun*/statistics/tx_dropped \
        /sys/class/net/tun*/statistics/rx_dropped 2>/dev/null' | awk '{ s += $1 } END { print s + 0 }'
}

cpu_ticks() { # PID: utime + stime
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# measure KIND ARGV...: start the server, run the load, record R[KIND|key].
measure() {
    local kind=$1
    shift
    local slog="$WORK/$kind-server.log" llog="$WORK/$kind-loadgen.log" spid c0 c1 line kv
    spid=$(lab_spawn server "$slog" "$@")
    if ! lab_wait_log "$slog" "Initialization Sequence Completed" 20 "$spid"; then
        echo "!! $kind server did not start" >&2
        tail -n 20 "$slog" >&2 || true
        lab_kill "$spid"
        return 1
    fi
    c0=$(cpu_ticks "$spid")
    local sd0 ld0 td0
    td0=$(tun_drops)
    sd0=$(udp_drops server)
    ld0=$(udp_drops lg)
    echo "== $kind: $CLIENTS clients, $RATE handshakes/s, $PPS pps x ${SIZE} B, ${DURATION} s ==" >&2
    lab_exec lg timeout $((DURATION + 30)) "$LOADGEN" --config "$WORK/client.ovpn" \
        --clients "$CLIENTS" --rate "$RATE" --duration "$DURATION" --pps "$PPS" \
        --size "$SIZE" --threads "$LG_THREADS" --drain 1 >"$llog" 2>&1 || true
    sed 's/^/   /' "$llog" | grep -v '^   RESULT' >&2 || true
    if ! kill -0 "$spid" 2>/dev/null; then
        echo "!! $kind server died during the run" >&2
        tail -n 20 "$slog" >&2 || true
        return 1
    fi
    c1=$(cpu_ticks "$spid")
    R["$kind|udp_srv"]=$(($(udp_drops server) - sd0))
    R["$kind|udp_lg"]=$(($(udp_drops lg) - ld0))
    R["$kind|tun_drops"]=$(($(tun_drops) - td0))
    R["$kind|cpu"]=$(awk -v a="$c0" -v b="$c1" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
    R["$kind|rss"]=$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$spid/status")
    line=$(grep '^RESULT ' "$llog" || true)
    for kv in $line; do
        [[ $kv == *=* ]] && R["$kind|${kv%%=*}"]=${kv#*=}
    done
    lab_kill "$spid"
    sleep 1
}

STATUS=0
if [[ $ONLY != openvpn ]]; then
    measure fwd "$FWD" --config "$WORK/fwd-server.conf" --threads "$FWD_THREADS" || STATUS=1
fi
if [[ $ONLY != fwd ]]; then
    measure openvpn openvpn --config "$WORK/openvpn-server.conf" || STATUS=1
fi

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'
}
row() { # LABEL KEY
    local f=${R["fwd|$2"]:-n/a} o=${R["openvpn|$2"]:-n/a}
    printf '%-28s %12s %12s %12s\n' "$1" "$f" "$o" "$(ratio "$f" "$o")"
}
echo
echo "$CLIENTS clients, $RATE new/s, $PPS pps x $SIZE B each, fwd --threads $FWD_THREADS," \
    "loadgen --threads $LG_THREADS, $DURATION s${EXTRA:+, server extra: ${EXTRA//$'\n'/; }}"
printf '%-28s %12s %12s %12s\n' metric fwd openvpn fwd/openvpn
row "handshakes completed" hs_ok
row "handshakes failed" hs_failed
row "handshakes/s" hs_per_s
row "handshake p50 (ms)" hs_p50_ms
row "handshake p99 (ms)" hs_p99_ms
row "echo requests sent" sent
row "echo replies received" received
row "loss (%)" loss_pct
row "echo rtt p99 (ms)" rtt_p99_ms
row "server CPU (s)" cpu
row "server peak RSS (MB)" rss
row "loadgen CPU (s)" lg_cpu_s
row "UDP rcvbuf drops, server" udp_srv
row "UDP rcvbuf drops, loadgen" udp_lg
row "server tun drops" tun_drops
exit $STATUS

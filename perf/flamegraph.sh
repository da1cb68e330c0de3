#!/usr/bin/env bash
# perf/flamegraph.sh — where the fwd server spends its time: a CPU flamegraph of the fwd
# server (optionally also the client) under the fwd-fwd TCP 1-stream load of
# perf/compare.sh, the top symbols as text, and instructions (or CPU time) per packet for a
# TCP 1-stream and a UDP 64-byte load.
#
# Usage: perf/flamegraph.sh [--fwd PATH] [--fwd-args "ARGS"] [--fwd-server-args "ARGS"]
#                           [--fwd-client-args "ARGS"] [--duration S] [--freq HZ]
#                           [--call-graph dwarf|fp|lbr] [--client] [--dir c2s|s2c]
#                           [--payload 4|6] [--udp-pps N] [--out DIR] [--no-stat]
#                           [--wait-idle S]
#
# Same lab, PKI and configs as perf/compare.sh (perf/lib.sh): fwd server in namespace
# "server", fwd client in "client1", iperf3 through the tunnel to 10.8.0.1 / fd00:8::1.
#
# 1. iperf3 TCP, 1 stream, --dir (default c2s) for --duration + 2 s (default 10 + 2);
#    `perf record -F HZ --call-graph MODE -p <server pid>` (and the client with --client) for
#    --duration s in the middle of it. Default call graph: dwarf (release builds have no
#    frame pointers; fp gives truncated stacks unless built with -C force-frame-pointers).
# 2. Renders OUT/server.svg (and client.svg) with inferno (inferno-collapse-perf |
#    inferno-flamegraph; `cargo install inferno` if missing) and prints the top 25 symbols
#    by self time (perf report --no-children) and by inclusive time (--children).
# 3. Unless --no-stat: `perf stat -e instructions,cycles -p <server pid>` for --duration s
#    during a TCP 1-stream run and during a UDP 64-byte run (-b 0 = unlimited, or --udp-pps
#    N packets/s), divided by the packets the server handled in that window (rx + tx packets
#    of the server's tun device; for UDP also iperf3's own count). Where the machine has no
#    hardware counters (many VMs), it says so and reports task-clock (CPU ns) per packet.
#
# --wait-idle S: first wait up to S seconds for the machine to be idle (see compare.sh).
#
# OUT (default: the work directory /tmp/fwd-flame-*, kept) holds perf.data files, SVGs, the
# text reports and the logs. Exit status: 0 ok; 1 tunnel or profiling failed; 2 bad arguments.

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }

FWD=$FWD_ROOT/target/release/fwd
FWD_ARGS=
FWD_SERVER_ARGS=
FWD_CLIENT_ARGS=
DURATION=10
FREQ=499
CALLGRAPH=dwarf
CLIENT=
DIR=c2s
PAYLOAD=4
UDP_PPS=0
OUT=
STAT=1
WAIT_IDLE=0
while (($#)); do
    case $1 in
    --fwd) FWD=$(readlink -f "$2"); shift 2 ;;
    --fwd-args) FWD_ARGS=$2; shift 2 ;;
    --fwd-server-args) FWD_SERVER_ARGS=$2; shift 2 ;;
    --fwd-client-args) FWD_CLIENT_ARGS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --freq) FREQ=$2; shift 2 ;;
    --call-graph) CALLGRAPH=$2; shift 2 ;;
    --client) CLIENT=1; shift ;;
    --dir) DIR=$2; shift 2 ;;
    --payload) PAYLOAD=$2; shift 2 ;;
    --udp-pps) UDP_PPS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-stat) STAT=; shift ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
die2() { echo "$*" >&2; exit 2; }
for v in DURATION FREQ UDP_PPS WAIT_IDLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die2 "--${v,,}: whole number expected"
done
((DURATION >= 1 && DURATION <= 120)) || die2 "--duration must be 1..120 seconds"
((FREQ >= 1 && FREQ <= 20000)) || die2 "--freq must be 1..20000"
[[ $CALLGRAPH == dwarf || $CALLGRAPH == fp || $CALLGRAPH == lbr ]] || die2 "--call-graph dwarf|fp|lbr"
[[ $DIR == c2s || $DIR == s2c ]] || die2 "--dir c2s|s2c"
[[ $PAYLOAD == 4 || $PAYLOAD == 6 ]] || die2 "--payload 4|6"
[[ -x $FWD ]] || die2 "--fwd $FWD: not an executable (cargo build --release)"
[[ $(id -u) -eq 0 ]] || die2 "must run as root (network namespaces, perf -p)"
cmp_need ip openssl iperf3 python3 ss timeout perf "$OVPN" || exit 2
export PATH=$PATH:${CARGO_HOME:-$HOME/.cargo}/bin
if ! command -v inferno-flamegraph >/dev/null || ! command -v inferno-collapse-perf >/dev/null; then
    echo "inferno-flamegraph not found: install it with  cargo install inferno" >&2
    exit 2
fi

cmp_fwd_argv

WORK=$(mktemp -d "/tmp/fwd-flame-$(date +%Y%m%d-%H%M%S)-XXXX")
mkdir -p "$WORK/iperf"
OUT=${OUT:-$WORK}
mkdir -p "$OUT" || die2 "--out $OUT: cannot create"
OUT=$(cd "$OUT" && pwd)
PERF_PIDS=()
cleanup() {
    local p
    for p in "${PERF_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
    for p in "${PERF_PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    cmp_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Hardware counters (instructions, cycles) are often missing in VMs; then sample cpu-clock.
HW=1
if ! perf stat -x, -e instructions true 2>&1 >/dev/null | grep -q '^[0-9]'; then HW=; fi
EVENT=cycles
[[ -n $HW ]] || EVENT=cpu-clock

TARGET=$(cmp_target fwd-fwd "$PAYLOAD")
DIRARG=()
[[ $DIR == s2c ]] && DIRARG=(-R)

((WAIT_IDLE > 0)) && cmp_wait_idle "$WAIT_IDLE"
cmp_log "work dir $WORK, output $OUT"
cmp_lab_up "$WORK" || { echo "lab setup failed" >&2; exit 1; }
cmp_tunnel_up fwd-fwd || exit 1
cmp_log "fwd server pid $SPID, client pid $CPID; sampling $EVENT at $FREQ Hz, call graph $CALLGRAPH"
[[ -z $HW ]] && cmp_log "hardware counters are not supported here (perf stat -e instructions: <not supported>); using cpu-clock / task-clock"

# load_bg NAME IPERF_ARGS...: iperf3 for DURATION + 2 s in the background (sets LOAD_PID).
load_bg() {
    local name=$1
    shift
    cmp_iperf "$WORK/iperf/$name.json" $((DURATION + 2)) -c "$TARGET" "${DIRARG[@]}" "$@" &
    LOAD_PID=$!
    sleep 1
}

iperf_summary() { # FILE: one line for humans
    python3 - "$1" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as ex:
    print("iperf3 failed (no JSON: %s)" % ex.__class__.__name__)
    sys.exit(0)
if d.get("error") or "sum_received" not in d.get("end", {}):
    print("iperf3 failed (%s)" % d.get("error"))
    sys.exit(0)
r, s = d["end"]["sum_received"], d["end"]["sum_sent"]
line = "%.0f Mbit/s received" % (r["bits_per_second"] / 1e6)
if "lost_packets" in r:
    rx = r["packets"] - r["lost_packets"]
    line += ", %d datagrams (%.0f pps), loss %.2f %%" % (rx, rx / s["seconds"], r["lost_percent"])
print(line)
EOF
}

# ---- 1. perf record -------------------------------------------------------------------
STATUS=0
cmp_log "profiling: TCP 1 stream $DIR IPv$PAYLOAD, ${DURATION}s"
load_bg record-tcp1
perf record -q -e "$EVENT" -F "$FREQ" --call-graph "$CALLGRAPH" -p "$SPID" \
    -o "$OUT/server.perf.data" -- sleep "$DURATION" >"$WORK/perf-record-server.log" 2>&1 &
PERF_PIDS+=($!)
if [[ -n $CLIENT ]]; then
    perf record -q -e "$EVENT" -F "$FREQ" --call-graph "$CALLGRAPH" -p "$CPID" \
        -o "$OUT/client.perf.data" -- sleep "$DURATION" >"$WORK/perf-record-client.log" 2>&1 &
    PERF_PIDS+=($!)
fi
for p in "${PERF_PIDS[@]}"; do wait "$p" || STATUS=1; done
PERF_PIDS=()
wait "$LOAD_PID"
cmp_log "load: $(iperf_summary "$WORK/iperf/record-tcp1.json")"

# ---- 2. flamegraphs and top symbols ---------------------------------------------------
# tidy: perf report text without comments, blank lines and the empty IPC columns.
tidy() { grep -v -e '^#' -e '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//'; }
render() { # SIDE
    local side=$1 data=$OUT/$1.perf.data
    [[ -s $data ]] || { echo "!! no $data (see $WORK/perf-record-$side.log)" >&2; STATUS=1; return; }
    timeout 600 perf script -i "$data" 2>/dev/null | inferno-collapse-perf >"$OUT/$side.folded" &&
        inferno-flamegraph --title "fwd $side, TCP 1 stream $DIR IPv$PAYLOAD ($EVENT, $CALLGRAPH)" \
            <"$OUT/$side.folded" >"$OUT/$side.svg" || { echo "!! flamegraph for $side failed" >&2; STATUS=1; }
    timeout 600 perf report -i "$data" --stdio --no-children -g none --sort symbol \
        --percent-limit 0.01 2>/dev/null | tidy >"$OUT/$side.self.txt"
    timeout 600 perf report -i "$data" --stdio --children -g none --sort symbol \
        --percent-limit 0.01 2>/dev/null | tidy >"$OUT/$side.children.txt"
    echo
    local weight
    weight=$(awk -v e="$EVENT" '{ s += $NF } END {
        if (e == "cpu-clock") printf "%.2f s of CPU sampled", s / 1e9; else printf "%.3g %s", s, e }' "$OUT/$side.folded")
    echo "== $side: top 25 symbols by self time ($weight)"
    echo "   Self  Symbol"
    head -25 "$OUT/$side.self.txt"
    echo
    echo "== $side: top 25 symbols by inclusive time (children)"
    echo "   Children      Self  Symbol"
    head -25 "$OUT/$side.children.txt"
    echo
    echo "flamegraph: $OUT/$side.svg"
}
render server
[[ -n $CLIENT ]] && render client

# ---- 3. instructions per packet -------------------------------------------------------
tun_dev() { # the server's tun device (the one holding 10.8.0.1)
    lab_exec server ip -o -4 addr show | awk '$4 ~ /^10\.8\.0\.1\// { print $2; exit }'
}
tun_pkts() { # DEV: rx + tx packets of DEV in the server namespace
    lab_exec server sh -c "cat /sys/class/net/$1/statistics/rx_packets /sys/class/net/$1/statistics/tx_packets" |
        awk '{ s += $1 } END { print s + 0 }'
}

# stat_run NAME IPERF_ARGS...: perf stat on the server during one load; prints the per-packet line.
stat_run() {
    local name=$1 dev p0 p1 events
    shift
    dev=$(tun_dev)
    [[ -n $dev ]] || { echo "!! server tun device not found" >&2; STATUS=1; return; }
    if [[ -n $HW ]]; then events=instructions,cycles,task-clock; else events=task-clock,cpu-clock; fi
    load_bg "$name" "$@"
    p0=$(tun_pkts "$dev")
    perf stat -x, -e "$events" -p "$SPID" -o "$WORK/$name.stat" -- sleep "$DURATION" \
        >/dev/null 2>&1 &
    PERF_PIDS+=($!)
    wait "${PERF_PIDS[-1]}"
    PERF_PIDS=()
    p1=$(tun_pkts "$dev")
    wait "$LOAD_PID"
    python3 - "$WORK/$name.stat" "$((p1 - p0))" "$name" "$WORK/iperf/$name.json" "$DURATION" <<'EOF'
import json, sys
stat, pkts, name, ipj, dur = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
ev = {}
for line in open(stat):
    f = line.strip().split(",")
    if len(f) >= 3 and not line.startswith("#"):
        try:
            ev[f[2]] = float(f[0])
        except ValueError:
            ev[f[2]] = None  # <not supported> / <not counted>
extra = ""
try:
    r = json.load(open(ipj))["end"]["sum_received"]
    if "lost_packets" in r:
        extra = ", iperf3: %d datagrams received in the whole %.0f s test" % (
            r["packets"] - r["lost_packets"], dur + 2)
    else:
        extra = ", iperf3: %.0f Mbit/s" % (r["bits_per_second"] / 1e6)
except Exception:
    extra = ", iperf3 failed"
print("%s: server tun packets (rx+tx) in %.0f s: %d (%.0f pps)%s" % (name, dur, pkts, pkts / dur, extra))
if pkts <= 0:
    print("   no packets: nothing to divide by")
    sys.exit(0)
ins, cyc = ev.get("instructions"), ev.get("cycles")
tc = ev.get("task-clock")  # msec
if ins:
    print("   instructions per packet: %.0f (instructions %.3g)" % (ins / pkts, ins))
    if cyc:
        print("   cycles per packet: %.0f, IPC %.2f" % (cyc / pkts, ins / cyc))
else:
    print("   instructions per packet: n/a (hardware counters not supported on this machine)")
if tc:
    print("   server CPU per packet (task-clock): %.0f ns; %.2f CPUs busy" % (tc * 1e6 / pkts, tc / 1e3 / dur))
EOF
}
if [[ -n $STAT ]]; then
    echo
    echo "== per-packet cost of the fwd server (perf stat -p $SPID, ${DURATION}s windows) =="
    stat_run stat-tcp1
    if ((UDP_PPS > 0)); then
        stat_run stat-udp64 -u -l 64 -b $((UDP_PPS * 64 * 8))
    else
        stat_run stat-udp64 -u -l 64 -b 0
    fi
fi
kill -0 "$SPID" 2>/dev/null || { echo "!! fwd server died" >&2; STATUS=1; }
echo
echo "output: $OUT"
exit $STATUS

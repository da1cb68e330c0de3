#!/usr/bin/env bash
# perf/compare.sh — fwd and stock openvpn side by side: the same iperf3 workloads through
# three client/server pairings and the bare underlay, one table with ratios, one JSON file.
#
# Usage: perf/compare.sh [--quick] [--pairings LIST] [--workloads LIST] [--dirs LIST]
#                        [--payloads LIST] [--duration S] [--pps-duration S] [--pps-tries N]
#                        [--fwd PATH] [--fwd-args "ARGS"] [--fwd-server-args "ARGS"]
#                        [--fwd-client-args "ARGS"] [--openvpn PATH] [--json FILE]
#                        [--label TEXT] [--wait-idle S]
#
# Pairings (client-server; default all, in this order):
#   ovpn-ovpn  openvpn 2.6 server (--disable-dco) <- openvpn client (--disable-dco)
#   fwd-fwd    fwd server <- fwd client
#   ovpn-fwd   fwd server <- stock openvpn client (--disable-dco)
#   underlay   no tunnel: iperf3 straight over the veth between the namespaces (the ceiling)
# Workloads (default all): tcp1 (TCP, 1 stream), tcp4 (TCP, -P 4), udp1400 (UDP, unlimited
# rate, 1400-byte datagrams; 1380 with IPv6 payload so both are 1428-byte tunnel packets),
# udp64 (UDP 64-byte datagrams: the highest packets/s that arrives with < 1 % loss, found
# with up to --pps-tries short runs of --pps-duration seconds: first unlimited, then
# bisecting the offered rate).
# Directions: c2s (client -> server) and s2c (server -> client, iperf3 -R); payloads: 4 and 6
# (to 10.8.0.1 / fd00:8::1 through the tunnel). --quick = tcp1 + udp64, IPv4, both directions.
#
# --fwd-args go to the fwd server and the fwd client, --fwd-server-args / --fwd-client-args
# to one side only. Default fwd binary: target/release/fwd. --duration (default 5) is the
# length of every TCP / UDP-1400 test. --json defaults to WORKDIR/compare.json; the work
# directory (/tmp/fwd-compare-*, kept) also holds every iperf3 JSON and the VPN logs.
#
# --wait-idle S first waits up to S seconds for the machine to be idle (< 10 % busy over 5 s;
# other builds or benchmarks on the same cores skew everything); the busy percentage before
# the run and the load averages are printed and stored in the JSON. --label TEXT is stored too.
#
# Server CPU: utime+stime of the server process (all threads, /proc/PID/stat) before and
# after each test, divided by the GB iperf3 received. The JSON also has the client's CPU, the
# UDP loss, and per namespace the IP fragments created / reassembled and UDP receive-buffer
# drops during each test.
#
# Exit status: 0 everything measured; 1 some measurement n/a (tunnel down, no rate below
# 1 % loss, ...; see the "n/a:" lines); 2 bad arguments or missing tools.

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }

FWD=$FWD_ROOT/target/release/fwd
FWD_ARGS=
FWD_SERVER_ARGS=
FWD_CLIENT_ARGS=
PAIRINGS=ovpn-ovpn,fwd-fwd,ovpn-fwd,underlay
WORKLOADS=tcp1,tcp4,udp1400,udp64
DIRS=c2s,s2c
PAYLOADS=4,6
DURATION=5
PPS_DURATION=3
PPS_TRIES=6
JSON_OUT=
LABEL=
WAIT_IDLE=0
ORIG_ARGS=("$@")
while (($#)); do
    case $1 in
    --quick) WORKLOADS=tcp1,udp64 PAYLOADS=4 DIRS=c2s,s2c; shift ;;
    --pairings) PAIRINGS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --dirs) DIRS=$2; shift 2 ;;
    --payloads) PAYLOADS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --pps-duration) PPS_DURATION=$2; shift 2 ;;
    --pps-tries) PPS_TRIES=$2; shift 2 ;;
    --fwd) FWD=$(readlink -f "$2"); shift 2 ;;
    --fwd-args) FWD_ARGS=$2; shift 2 ;;
    --fwd-server-args) FWD_SERVER_ARGS=$2; shift 2 ;;
    --fwd-client-args) FWD_CLIENT_ARGS=$2; shift 2 ;;
    --openvpn) OVPN=$2; shift 2 ;;
    --json) JSON_OUT=$2; shift 2 ;;
    --label) LABEL=$2; shift 2 ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

die2() { echo "$*" >&2; exit 2; }
in_list() { [[ ,$2, == *,$1,* ]]; }
check_list() { # NAME VALUE ALLOWED
    local x
    [[ -n $2 ]] || die2 "--$1: empty list"
    for x in ${2//,/ }; do in_list "$x" "$3" || die2 "--$1: unknown '$x' (one of $3)"; done
}
check_list pairings "$PAIRINGS" ovpn-ovpn,fwd-fwd,ovpn-fwd,underlay
check_list workloads "$WORKLOADS" tcp1,tcp4,udp1400,udp64
check_list dirs "$DIRS" c2s,s2c
check_list payloads "$PAYLOADS" 4,6
for v in DURATION PPS_DURATION PPS_TRIES WAIT_IDLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die2 "--${v,,}: whole number expected"
done
((DURATION >= 1 && DURATION <= 300)) || die2 "--duration must be 1..300 seconds"
((PPS_DURATION >= 1 && PPS_DURATION <= 60)) || die2 "--pps-duration must be 1..60 seconds"
((PPS_TRIES >= 1 && PPS_TRIES <= 20)) || die2 "--pps-tries must be 1..20"
if in_list fwd-fwd "$PAIRINGS" || in_list ovpn-fwd "$PAIRINGS"; then
    [[ -x $FWD ]] || die2 "--fwd $FWD: not an executable (cargo build --release)"
fi
[[ $(id -u) -eq 0 ]] || die2 "must run as root (network namespaces)"
cmp_need ip openssl iperf3 python3 ss timeout "$OVPN" || exit 2

cmp_fwd_argv

WORK=$(mktemp -d "/tmp/fwd-compare-$(date +%Y%m%d-%H%M%S)-XXXX")
mkdir -p "$WORK/iperf"
JSON_OUT=${JSON_OUT:-$WORK/compare.json}
RECORDS=$WORK/records.jsonl
: >"$RECORDS"
cleanup() {
    cmp_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- metadata -------------------------------------------------------------------------
((WAIT_IDLE > 0)) && cmp_wait_idle "$WAIT_IDLE"
BUSY0=$(cmp_busy 2)
((BUSY0 < 15)) || cmp_log "!! the machine is ${BUSY0}% busy before the run: other load skews every number"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
fwd_version= fwd_commit= fwd_dirty=
if [[ -x $FWD ]]; then
    fwd_version=$("$FWD" --version 2>/dev/null | head -1)
    fwd_dir=$(dirname "$FWD")
    if fwd_commit=$(git -C "$fwd_dir" rev-parse HEAD 2>/dev/null); then
        [[ -n $(git -C "$fwd_dir" status --porcelain --untracked-files=no 2>/dev/null) ]] &&
            fwd_dirty=1
    fi
fi

# ---- measurements ---------------------------------------------------------------------
# measure PAIRING WORKLOAD DIR PAYLOAD TRY RATE_PPS DURATION IPERF_ARGS...
# Runs one iperf3 test, records it, prints "status mbps rx_pps loss_pct sent_pps".
measure() {
    local pairing=$1 wl=$2 dir=$3 pl=$4 try=$5 rate=$6 dur=$7
    shift 7
    local name="$pairing-$wl-$dir-v$pl-$try" s0= s1= c0= c1= salive=1 scpu= ccpu=
    local sn0 sn1 cn0 cn1 net=()
    sn0=$(cmp_netstat server) cn0=$(cmp_netstat client1)
    [[ -n $SPID ]] && s0=$(cmp_cpu_ticks "$SPID")
    [[ -n $CPID ]] && c0=$(cmp_cpu_ticks "$CPID")
    cmp_iperf "$WORK/iperf/$name.json" "$dur" "$@"
    [[ -n $SPID ]] && s1=$(cmp_cpu_ticks "$SPID")
    [[ -n $CPID ]] && c1=$(cmp_cpu_ticks "$CPID")
    sn1=$(cmp_netstat server) cn1=$(cmp_netstat client1)
    # Deltas: IP fragments created / reassembly requests / UDP receive-buffer drops per side.
    read -r -a net < <(echo "$sn0 $sn1 $cn0 $cn1" | awk '{ print $4 - $1, $5 - $2, $6 - $3, $10 - $7, $11 - $8, $12 - $9 }')
    if [[ -n $SPID ]]; then
        if [[ -n $s0 && -n $s1 ]] && kill -0 "$SPID" 2>/dev/null; then
            scpu=$(awk -v a="$s0" -v b="$s1" -v t="$CMP_TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
        else
            salive=0
        fi
    fi
    if [[ -n $CPID && -n $c0 && -n $c1 ]]; then
        ccpu=$(awk -v a="$c0" -v b="$c1" -v t="$CMP_TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
    fi
    python3 "$here/compare.py" record "$RECORDS" "$WORK/iperf/$name.json" \
        pairing="$pairing" workload="$wl" dir="$dir" payload="$pl" try="$try" \
        rate_pps="$rate" duration="$dur" server_kind="$SERVER_KIND" client_kind="$CLIENT_KIND" \
        server_cpu_s="$scpu" client_cpu_s="$ccpu" server_alive="$salive" \
        server_frag_creates="${net[0]:-}" server_reasm_reqds="${net[1]:-}" \
        server_udp_rcvbuf_errors="${net[2]:-}" client_frag_creates="${net[3]:-}" \
        client_reasm_reqds="${net[4]:-}" client_udp_rcvbuf_errors="${net[5]:-}" \
        args="$*"
}

# udp64 PAIRING DIR PAYLOAD ARGS...: highest rate with < 1 % loss, at most PPS_TRIES runs.
# Try 1 is unlimited (-b 0); if it loses >= 1 %, the upper bound is min(what it sent, 1.5 x
# what it delivered) and try 2 offers what it delivered. From then on a pass raises the lower
# bound to the rate sent, a failure lowers the upper bound to it, and the next rate is the
# geometric mean of the bounds (while nothing has passed yet: the lower of 0.8 x the upper
# bound and 0.95 x what the failed try delivered), until the bounds are within 8 %.
udp64() {
    local pairing=$1 dir=$2 pl=$3
    shift 3
    local try=1 rate=0 lo=0 hi=0 st mbps rx loss sent
    read -r st mbps rx loss sent < <(measure "$pairing" udp64 "$dir" "$pl" 1 0 "$PPS_DURATION" \
        "$@" -u -l 64 -b 0)
    cmp_log "   try 1: unlimited: sent $(kp "$sent") kpps, received $(kp "$rx") kpps, loss $loss %"
    [[ $st == ok ]] || return 0
    pass "$loss" && return 0
    hi=$(awk -v s="$sent" -v r="$rx" 'BEGIN { h = 1.5 * r; if (s < h) h = s; printf "%d", h }')
    rate=${rx%.*}
    while ((try < PPS_TRIES)); do
        try=$((try + 1))
        ((rate >= 100)) || rate=100
        read -r st mbps rx loss sent < <(measure "$pairing" udp64 "$dir" "$pl" "$try" "$rate" \
            "$PPS_DURATION" "$@" -u -l 64 -b $((rate * 64 * 8)))
        cmp_log "   try $try: offered $(kp "$rate") kpps: sent $(kp "$sent"), received $(kp "$rx") kpps, loss $loss %"
        [[ $st == ok ]] || return 0
        sent=${sent%.*}
        ((sent > 0)) || sent=$rate
        if pass "$loss"; then
            ((sent > lo)) && lo=$sent
            ((hi > lo)) || hi=$((lo * 3 / 2))
        else
            ((sent < hi)) && hi=$sent
        fi
        if ((lo > 0)); then
            awk -v l="$lo" -v h="$hi" 'BEGIN { exit !(h <= l * 1.08) }' && return 0
            rate=$(awk -v l="$lo" -v h="$hi" 'BEGIN { printf "%d", sqrt(l * h) }')
        else
            rate=$(awk -v h="$hi" -v r="$rx" 'BEGIN { a = 0.8 * h; b = 0.95 * r; printf "%d", (a < b ? a : b) }')
        fi
    done
}
pass() { awk -v l="$1" -v m=1 'BEGIN { exit !(l < m) }'; }
kp() { awk -v p="${1:-0}" 'BEGIN { printf "%.1f", p / 1000 }'; }

# run_test PAIRING WORKLOAD DIR PAYLOAD
run_test() {
    local pairing=$1 wl=$2 dir=$3 pl=$4 target args=() st mbps rx loss sent
    target=$(cmp_target "$pairing" "$pl")
    args=(-c "$target")
    [[ $dir == s2c ]] && args+=(-R)
    case $wl in
    tcp1 | tcp4 | udp1400)
        case $wl in
        tcp4) args+=(-P 4) ;;
        udp1400) args+=(-u -b 0 -l $([[ $pl == 6 ]] && echo 1380 || echo 1400)) ;;
        esac
        read -r st mbps rx loss sent < <(measure "$pairing" "$wl" "$dir" "$pl" 1 0 "$DURATION" \
            "${args[@]}")
        if [[ $wl == udp1400 ]]; then
            cmp_log "   $st: $mbps Mbit/s received, loss $loss %"
        else
            cmp_log "   $st: $mbps Mbit/s"
        fi
        ;;
    udp64) udp64 "$pairing" "$dir" "$pl" "${args[@]}" ;;
    esac
}

alive() { [[ -z $SPID ]] || { kill -0 "$SPID" 2>/dev/null && kill -0 "$CPID" 2>/dev/null; }; }

cmp_log "work dir $WORK"
cmp_lab_up "$WORK" || { echo "lab setup failed" >&2; exit 1; }
cmp_log "lab $(cat "$(_lab_state_dir)/id"): server $(lab_addr server 4) <-> client1 $(lab_addr client1 4)"
for pairing in ${PAIRINGS//,/ }; do
    cmp_log "== $pairing =="
    up=1
    cmp_tunnel_up "$pairing" || up=
    for wl in ${WORKLOADS//,/ }; do
        for dir in ${DIRS//,/ }; do
            for pl in ${PAYLOADS//,/ }; do
                if [[ -n $up ]] && ! alive; then
                    cmp_log "!! $pairing: a VPN process died; restarting the tunnel"
                    cmp_tunnel_down
                    cmp_tunnel_up "$pairing" || up=
                fi
                if [[ -z $up ]]; then
                    python3 -c 'import json,sys; print(json.dumps(dict(zip(
                        ["pairing","workload","dir","payload"], sys.argv[1:5]),
                        ok=False, error="tunnel did not come up")))' \
                        "$pairing" "$wl" "$dir" "$pl" >>"$RECORDS"
                    continue
                fi
                cmp_log "-- $pairing $wl $dir IPv$pl"
                run_test "$pairing" "$wl" "$dir" "$pl"
            done
        done
    done
    cmp_tunnel_down
done

# ---- report ---------------------------------------------------------------------------
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
CMDLINE=perf/compare.sh
for a in "${ORIG_ARGS[@]}"; do
    if [[ $a =~ ^[A-Za-z0-9_./,:=+-]+$ ]]; then CMDLINE+=" $a"; else CMDLINE+=" '${a//\'/\'\\\'\'}'"; fi
done
M_LABEL=$LABEL M_CMD=$CMDLINE M_OVPN=$OVPN M_FWD=$FWD M_FWD_VERSION=$fwd_version \
    M_FWD_COMMIT=$fwd_commit M_FWD_DIRTY=$fwd_dirty M_SARGS="${FWD_SERVER_ARGV[*]}" \
    M_CARGS="${FWD_CLIENT_ARGV[*]}" M_PAIRINGS=$PAIRINGS M_WORKLOADS=$WORKLOADS M_DIRS=$DIRS \
    M_PAYLOADS=$PAYLOADS M_DURATION=$DURATION M_PPS_DURATION=$PPS_DURATION \
    M_PPS_TRIES=$PPS_TRIES M_BUSY0=$BUSY0 M_LOAD0=$LOAD0 M_LOAD1=$LOAD1 M_WORK=$WORK \
    python3 - "$WORK/meta.json" <<'EOF'
import json, os, platform, subprocess, sys
e = os.environ
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""
meta = {
    "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
    "label": e["M_LABEL"],
    "command": e["M_CMD"],
    "nproc": os.cpu_count(),
    "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-").strip(),
    "kernel": platform.release(),
    "openvpn": sh(e["M_OVPN"] + " --version | head -1"),
    "iperf3": sh("iperf3 --version | head -1"),
    "fwd": e["M_FWD"],
    "fwd_version": e["M_FWD_VERSION"],
    "fwd_tree_commit": e["M_FWD_COMMIT"] or None,
    "fwd_tree_dirty": bool(e["M_FWD_DIRTY"]),
    "fwd_server_args": e["M_SARGS"].split(),
    "fwd_client_args": e["M_CARGS"].split(),
    "pairings": e["M_PAIRINGS"].split(","),
    "workloads": e["M_WORKLOADS"].split(","),
    "dirs": e["M_DIRS"].split(","),
    "payloads": e["M_PAYLOADS"].split(","),
    "duration_s": int(e["M_DURATION"]),
    "pps_duration_s": int(e["M_PPS_DURATION"]),
    "pps_tries": int(e["M_PPS_TRIES"]),
    "loss_limit_percent": 1.0,
    "busy_percent_before": int(e["M_BUSY0"]),
    "loadavg_start": e["M_LOAD0"],
    "loadavg_end": e["M_LOAD1"],
    "workdir": e["M_WORK"],
}
with open(sys.argv[1], "w") as f:
    json.dump(meta, f, indent=1)
EOF
echo
echo "fwd: $FWD ${fwd_version:+($fwd_version)}${fwd_commit:+, tree at ${fwd_commit:0:12}${fwd_dirty:+ (dirty)}}"
echo "fwd server args: ${FWD_SERVER_ARGV[*]:-(none)}; fwd client args: ${FWD_CLIENT_ARGV[*]:-(none)}"
echo "machine: ${BUSY0}% busy before the run; load average start $LOAD0, end $LOAD1 ($(nproc) CPUs)"
python3 "$here/compare.py" report "$RECORDS" "$JSON_OUT" "$WORK/meta.json"
status=$?
echo
echo "JSON: $JSON_OUT"
echo "work dir (iperf3 JSON, logs): $WORK"
exit $status

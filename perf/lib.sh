# perf/lib.sh — shell functions shared by perf/compare.sh and perf/flamegraph.sh (sourced,
# not run). Builds on tools/lab.sh: one "server" and one "client1" namespace joined by a veth
# pair, a throwaway PKI, one server config and one client config used by every pairing.
#
#   cmp_lab_up WORK            lab + PKI + configs in WORK (server.conf, client.ovpn)
#   cmp_tunnel_up PAIRING      start server + client for fwd-fwd | ovpn-fwd | ovpn-ovpn
#                              (sets SPID, CPID, SERVER_KIND, CLIENT_KIND); underlay: no-op
#   cmp_tunnel_down            stop them
#   cmp_target PAIRING 4|6     the address iperf3 connects to (tunnel or underlay)
#   cmp_iperf OUT ARGS...      one iperf3 test (fresh one-off server), JSON to OUT
#   cmp_cpu_ticks PID          utime + stime of a process (all threads), clock ticks
#   cmp_wait_idle MAX_S [PCT]  wait until the machine is idle (other users' load)
#   cmp_netstat ROLE           fragmentation / UDP receive-buffer drop counters of a namespace
#   cmp_stop PID               stop a process this script started (and forget it)
#
# Variables read: FWD (binary), FWD_SERVER_ARGV / FWD_CLIENT_ARGV (arrays of extra args),
# OVPN (openvpn binary, default openvpn). The caller must `trap cmp_cleanup EXIT` (kills what
# was started, deletes the namespaces).

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FWD_ROOT=$(cd "$PERF_DIR/.." && pwd)
# Our own lab state directory: a lab made by someone else's `tools/lab.sh up` is never touched.
export FWD_LAB_STATE=${FWD_LAB_STATE:-/tmp/fwd-lab-perf}
# shellcheck source=../tools/lab.sh
source "$FWD_ROOT/tools/lab.sh"

OVPN=${OVPN:-openvpn}
CMP_TICK=$(getconf CLK_TCK)
SPID=
CPID=
SERVER_KIND=
CLIENT_KIND=
TUN4=10.8.0.1
TUN6=fd00:8::1

cmp_need() { # CMD...: fail with a message if a command is missing
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || { echo "missing command: $c" >&2; return 1; }
    done
}

# cmp_fwd_argv: FWD_SERVER_ARGV / FWD_CLIENT_ARGV from the --fwd-args, --fwd-server-args and
# --fwd-client-args strings (FWD_ARGS, FWD_SERVER_ARGS, FWD_CLIENT_ARGS).
cmp_fwd_argv() {
    # shellcheck disable=SC2206 # the argument strings are split on purpose
    FWD_SERVER_ARGV=($FWD_ARGS $FWD_SERVER_ARGS)
    # shellcheck disable=SC2206
    FWD_CLIENT_ARGV=($FWD_ARGS $FWD_CLIENT_ARGS)
}

cmp_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# cmp_forget PID: drop PID from the lab's record once we have stopped it ourselves, so the
# final lab_down never signals a PID number that may have been reused meanwhile.
cmp_forget() {
    local dir
    dir=$(_lab_state_dir 2>/dev/null) || return 0
    [[ -f $dir/pids ]] && sed -i "/^$1\$/d" "$dir/pids"
    return 0
}

cmp_stop() { # PID
    [[ -n ${1:-} ]] || return 0
    lab_kill "$1"
    cmp_forget "$1"
}

cmp_cpu_ticks() { # PID -> utime + stime (clock ticks); empty if the process is gone
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null
}

# cmp_netstat ROLE: "frag_creates reasm_reqds udp_rcvbuf_errors" (IPv4 + IPv6) so far in
# ROLE's namespace: outer packets fragmented / reassembled, UDP datagrams dropped on a full
# receive buffer.
cmp_netstat() {
    lab_exec "$1" cat /proc/net/snmp /proc/net/snmp6 2>/dev/null | awk '
        /^(Ip|Udp): / { if (!($1 in hdr)) { for (i = 2; i <= NF; i++) h[$1, i] = $i; hdr[$1] = 1; next }
                        for (i = 2; i <= NF; i++) v[substr($1, 1, length($1) - 1) h[$1, i]] = $i; next }
        NF == 2 { v[$1] = $2 }
        END { print v["IpFragCreates"] + v["Ip6FragCreates"], v["IpReasmReqds"] + v["Ip6ReasmReqds"],
                    v["UdpRcvbufErrors"] + v["Udp6RcvbufErrors"] }'
}

# cmp_busy S: percentage of all CPUs busy (anything but idle/iowait) over the next S seconds.
cmp_busy() {
    local a b
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat)
    echo "$a $b" | awk '{ d = ($3 - $1) + ($4 - $2); printf "%d", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}

# cmp_wait_idle MAX_S [PCT]: wait (up to MAX_S) until the machine is below PCT % busy
# (default 10) over a 5 s window; returns 1 if it never was. Other people's builds and
# benchmarks on the same cores make every number here noise.
cmp_wait_idle() {
    local max=$1 pct=${2:-10} t0=$SECONDS b
    while :; do
        b=$(cmp_busy 5)
        ((b < pct)) && { cmp_log "machine idle (${b}% busy)"; return 0; }
        ((SECONDS - t0 >= max)) && { cmp_log "!! machine still ${b}% busy after ${max}s; measuring anyway (noisy)"; return 1; }
        cmp_log "machine ${b}% busy; waiting for it to go idle (up to ${max}s)"
    done
}

cmp_lab_up() { # WORK
    local work=$1
    lab_up server client1 || return 1
    lab_pki "$work/pki" client1 >/dev/null 2>&1 || { echo "PKI generation failed" >&2; return 1; }
    local pki=$work/pki remote
    remote=$(lab_addr server 4)
    # One server config for both servers and one client profile for both clients. openvpn
    # gets --disable-dco on its command line (fwd has no DCO and rejects the option).
    cat >"$work/server.conf" <<EOF
port 1194
proto udp
dev tun
ca $pki/ca.crt
cert $pki/server.crt
key $pki/server.key
dh none
tls-crypt $pki/tc.key
data-ciphers AES-256-GCM
topology subnet
server 10.8.0.0 255.255.255.0
server-ipv6 fd00:8::/64
tun-mtu 1500
keepalive 10 60
verb 3
EOF
    cat >"$work/client.ovpn" <<EOF
client
dev tun
proto udp
remote $remote 1194
nobind
ca $pki/ca.crt
cert $pki/client1.crt
key $pki/client1.key
remote-cert-tls server
tls-crypt $pki/tc.key
data-ciphers AES-256-GCM
tun-mtu 1500
connect-retry 1 1
verb 3
EOF
    CMP_WORK=$work
}

cmp_target() { # PAIRING 4|6
    if [[ $1 == underlay ]]; then
        lab_addr server "$2"
    elif [[ $2 == 6 ]]; then
        echo "$TUN6"
    else
        echo "$TUN4"
    fi
}

# cmp_tunnel_up PAIRING [TIMEOUT_S]: returns 1 (logs' tails on stderr) if it did not come up.
cmp_tunnel_up() {
    local pairing=$1 t=${2:-25} slog clog
    SPID= CPID=
    case $pairing in
    underlay) SERVER_KIND=none CLIENT_KIND=none; return 0 ;;
    fwd-fwd) SERVER_KIND=fwd CLIENT_KIND=fwd ;;
    ovpn-fwd) SERVER_KIND=fwd CLIENT_KIND=openvpn ;;
    ovpn-ovpn) SERVER_KIND=openvpn CLIENT_KIND=openvpn ;;
    *) echo "unknown pairing $pairing" >&2; return 1 ;;
    esac
    slog=$CMP_WORK/$pairing-server.log
    clog=$CMP_WORK/$pairing-client.log
    if [[ $SERVER_KIND == fwd ]]; then
        SPID=$(lab_spawn server "$slog" "$FWD" --config "$CMP_WORK/server.conf" "${FWD_SERVER_ARGV[@]}")
    else
        SPID=$(lab_spawn server "$slog" "$OVPN" --config "$CMP_WORK/server.conf" --disable-dco)
    fi
    if ! lab_wait_log "$slog" "Initialization Sequence Completed" "$t" "$SPID"; then
        echo "!! $pairing: server did not start" >&2
        tail -n 15 "$slog" >&2 || true
        cmp_tunnel_down
        return 1
    fi
    if [[ $CLIENT_KIND == fwd ]]; then
        CPID=$(lab_spawn client1 "$clog" "$FWD" --config "$CMP_WORK/client.ovpn" "${FWD_CLIENT_ARGV[@]}")
    else
        CPID=$(lab_spawn client1 "$clog" "$OVPN" --config "$CMP_WORK/client.ovpn" --disable-dco)
    fi
    if ! lab_wait_log "$clog" "Initialization Sequence Completed" "$t" "$CPID" ||
        ! kill -0 "$SPID" 2>/dev/null; then
        echo "!! $pairing: tunnel did not come up" >&2
        echo "-- server log (tail) --" >&2
        tail -n 15 "$slog" >&2 || true
        echo "-- client log (tail) --" >&2
        tail -n 15 "$clog" >&2 || true
        cmp_tunnel_down
        return 1
    fi
    # Both tunnel addresses must answer before any measurement.
    local a ok
    for a in "$TUN4" "$TUN6"; do
        ok=
        for _ in $(seq 20); do
            if lab_exec client1 ping -c1 -W1 "$a" >/dev/null 2>&1; then ok=1; break; fi
            sleep 0.2
        done
        if [[ -z $ok ]]; then
            echo "!! $pairing: $a does not answer through the tunnel" >&2
            cmp_tunnel_down
            return 1
        fi
    done
    return 0
}

cmp_tunnel_down() {
    cmp_stop "$CPID"
    cmp_stop "$SPID"
    CPID= SPID=
}

# cmp_iperf_server: a one-off iperf3 server in the server namespace; sets IPERF_PID.
cmp_iperf_server() {
    IPERF_PID=$(lab_spawn server "$CMP_WORK/iperf3-server.log" iperf3 -s -1 --rcv-timeout 10000)
    local i
    for i in $(seq 50); do
        if lab_exec server ss -Hln 'sport = :5201' 2>/dev/null | grep -q .; then return 0; fi
        kill -0 "$IPERF_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "!! iperf3 server did not start" >&2
    cmp_stop "$IPERF_PID"
    return 1
}

# cmp_iperf OUT DURATION ARGS...: run one iperf3 test from client1 with JSON output to OUT.
# Bounded: the client is killed DURATION + 20 s after it started.
cmp_iperf() {
    local out=$1 dur=$2 rc
    shift 2
    cmp_iperf_server || { echo '{"error": "iperf3 server did not start"}' >"$out"; return 1; }
    lab_exec client1 timeout -k 3 $((dur + 20)) \
        iperf3 -J --connect-timeout 3000 -t "$dur" "$@" >"$out" 2>"$out.err"
    rc=$?
    cmp_stop "$IPERF_PID"
    IPERF_PID=
    return $rc
}

# cmp_ns_pids: PIDs of processes still inside this lab's namespaces (all started by us: the
# namespaces are unique to this run), e.g. an iperf3 client left by an interrupted test.
cmp_ns_pids() {
    local dir role ns
    dir=$(_lab_state_dir 2>/dev/null) || return 0
    [[ -f $dir/hosts ]] || return 0
    while read -r role ns; do
        [[ -n $ns ]] && ip netns pids "$ns" 2>/dev/null
    done <"$dir/hosts"
}

cmp_cleanup() {
    [[ -n ${IPERF_PID:-} ]] && cmp_stop "$IPERF_PID"
    cmp_tunnel_down
    local pid
    for pid in $(cmp_ns_pids); do lab_kill "$pid"; done
    lab_down
}

#!/usr/bin/env bash
# tools/lab.sh — a network-namespace lab for fwd, for humans and perf scripts.
#
# Same model as the Rust test lab (tests/common/lab.rs):
#   * one namespace per host, named fwdt-<pid>-<n>-<role>;
#   * hosts joined by veth pairs over a private underlay: link k gets
#     10.200.k.1/24 + fd00:200:k::1/64 on side a and .2 / ::2 on side b;
#   * `lo` up in each namespace; nothing is ever configured outside the namespaces.
#
# CLI (the lab outlives the command; state lives in $FWD_LAB_STATE, default /tmp/fwd-lab):
#   tools/lab.sh up [ROLE...]        create hosts (default: server client1 client2); every host
#                                    after the first is linked to the first (a star)
#   tools/lab.sh exec ROLE CMD...    run CMD inside ROLE's namespace
#   tools/lab.sh spawn ROLE LOG CMD... start CMD in the background, output to LOG; its PID is
#                                    recorded and killed by `down`
#   tools/lab.sh addr ROLE [4|6]     print ROLE's first underlay address
#   tools/lab.sh pki DIR [CLIENT...] write a test PKI (CA, server, clients, tls-crypt key) to DIR
#   tools/lab.sh status              list the lab's namespaces, links and recorded PIDs
#   tools/lab.sh down                kill recorded PIDs, delete the namespaces
#
# Library use (perf scripts): `source tools/lab.sh` defines lab_up / lab_down / lab_exec /
# lab_spawn / lab_kill / lab_addr / lab_wait_log / lab_pki; call `trap lab_down EXIT` right
# after sourcing so the lab is torn down whatever happens. When sourced, only the lab made by
# this process's lab_up is ever used (never the CLI's "current" lab).

set -o pipefail

FWD_LAB_STATE_ROOT=${FWD_LAB_STATE:-/tmp/fwd-lab}

_lab_die() { echo "lab.sh: $*" >&2; return 1; }

# _lab_state_dir: the directory holding the current lab's state.
_lab_state_dir() {
    if [[ -n ${_LAB_DIR:-} ]]; then
        echo "$_LAB_DIR"
    elif [[ -z ${_LAB_SOURCED:-} && -L $FWD_LAB_STATE_ROOT/current ]]; then
        readlink -f "$FWD_LAB_STATE_ROOT/current"
    else
        return 1
    fi
}

_lab_ns() { # ROLE -> namespace name
    local dir
    dir=$(_lab_state_dir) || { _lab_die "no lab is up (run: tools/lab.sh up)"; return 1; }
    local ns
    ns=$(awk -v r="$1" '$1 == r { print $2 }' "$dir/hosts")
    [[ -n $ns ]] || { _lab_die "no host '$1' in lab $(cat "$dir/id")"; return 1; }
    echo "$ns"
}

# _lab_ifname K PEER_ROLE: veth name on one side of link K, at most 15 chars (IFNAMSIZ-1).
_lab_ifname() {
    local name="u$1-$2"
    echo "${name:0:15}"
}

lab_check() {
    [[ $(id -u) -eq 0 ]] || { _lab_die "must run as root (network namespaces)"; return 1; }
    command -v ip >/dev/null || { _lab_die "'ip' (iproute2) not found"; return 1; }
}

lab_host() { # ROLE: create one namespace
    local role=$1 dir id ns
    dir=$(_lab_state_dir) || return 1
    id=$(cat "$dir/id")
    [[ $role =~ ^[a-z0-9]+$ ]] || { _lab_die "role must be [a-z0-9]+: $role"; return 1; }
    ns="$id-$role"
    ip netns add "$ns" || return 1
    echo "$role $ns" >>"$dir/hosts"
    ip -n "$ns" link set lo up
    # Forwarding on, so a host can route for what sits behind it (iroutes, perf topologies).
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

lab_link() { # ROLE_A ROLE_B: veth pair + underlay addresses; prints "v4a v4b v6a v6b"
    local a=$1 b=$2 dir nsa nsb k ifa ifb
    dir=$(_lab_state_dir) || return 1
    nsa=$(_lab_ns "$a") || return 1
    nsb=$(_lab_ns "$b") || return 1
    k=$(($(wc -l <"$dir/links") + 1))
    ((k <= 254)) || { _lab_die "too many links"; return 1; }
    ifa=$(_lab_ifname "$k" "$b")
    ifb=$(_lab_ifname "$k" "$a")
    # Created inside namespace a and moved: never touches the root namespace's names.
    ip -n "$nsa" link add "$ifa" type veth peer name "$ifb" || return 1
    ip -n "$nsa" link set "$ifb" netns "$nsb" || return 1
    ip -n "$nsa" addr add "10.200.$k.1/24" dev "$ifa"
    ip -n "$nsb" addr add "10.200.$k.2/24" dev "$ifb"
    ip -n "$nsa" -6 addr add "fd00:200:$k::1/64" dev "$ifa" nodad
    ip -n "$nsb" -6 addr add "fd00:200:$k::2/64" dev "$ifb" nodad
    ip -n "$nsa" link set "$ifa" up
    ip -n "$nsb" link set "$ifb" up
    echo "$k $a $b 10.200.$k.1 10.200.$k.2 fd00:200:$k::1 fd00:200:$k::2" >>"$dir/links"
    echo "10.200.$k.1 10.200.$k.2 fd00:200:$k::1 fd00:200:$k::2"
}

lab_up() { # [ROLE...]: new lab, star topology around the first role
    lab_check || return 1
    local roles=("$@")
    ((${#roles[@]})) || roles=(server client1 client2)
    mkdir -p "$FWD_LAB_STATE_ROOT"
    local n=0
    while [[ -e $FWD_LAB_STATE_ROOT/fwdt-$$-$n ]]; do n=$((n + 1)); done
    _LAB_DIR="$FWD_LAB_STATE_ROOT/fwdt-$$-$n"
    mkdir -p "$_LAB_DIR"
    echo "fwdt-$$-$n" >"$_LAB_DIR/id"
    : >"$_LAB_DIR/hosts"
    : >"$_LAB_DIR/links"
    : >"$_LAB_DIR/pids"
    local r
    for r in "${roles[@]}"; do lab_host "$r" || return 1; done
    for r in "${roles[@]:1}"; do lab_link "${roles[0]}" "$r" >/dev/null || return 1; done
}

lab_exec() { # ROLE CMD...
    local ns
    ns=$(_lab_ns "$1") || return 1
    shift
    ip netns exec "$ns" "$@"
}

lab_spawn() { # ROLE LOG CMD...: background process, PID recorded (printed on stdout)
    local ns dir log=$2
    ns=$(_lab_ns "$1") || return 1
    dir=$(_lab_state_dir) || return 1
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >>"$dir/pids"
    echo "$pid"
}

lab_kill() { # PID: stop one recorded process (TERM, then KILL after 2 s)
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 20); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    return 0
}

lab_addr() { # ROLE [4|6]: the role's address on its first link
    local dir
    dir=$(_lab_state_dir) || return 1
    awk -v r="$1" -v f="${2:-4}" '
        $2 == r { print (f == 6 ? $6 : $4); exit }
        $3 == r { print (f == 6 ? $7 : $5); exit }' "$dir/links"
}

lab_wait_log() { # LOG NEEDLE TIMEOUT_S [PID]: wait for NEEDLE in LOG; fail early if PID died
    local log=$1 needle=$2 t=$3 pid=${4:-} i
    for ((i = 0; i < t * 10; i++)); do
        grep -qF -- "$needle" "$log" 2>/dev/null && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            sleep 0.1
            grep -qF -- "$needle" "$log" 2>/dev/null && return 0
            return 1
        fi
        sleep 0.1
    done
    return 1
}

lab_down() { # tear down the current lab: kill recorded PIDs, delete namespaces
    local dir pid role ns
    dir=$(_lab_state_dir 2>/dev/null) || return 0
    [[ -d $dir ]] || return 0
    if [[ -f $dir/pids ]]; then
        while read -r pid; do [[ -n $pid ]] && lab_kill "$pid"; done <"$dir/pids"
    fi
    if [[ -f $dir/hosts ]]; then
        while read -r role ns; do
            [[ -n $ns ]] && ip netns del "$ns" 2>/dev/null
        done <"$dir/hosts"
    fi
    if [[ $(readlink -f "$FWD_LAB_STATE_ROOT/current" 2>/dev/null) == "$dir" ]]; then
        rm -f "$FWD_LAB_STATE_ROOT/current"
    fi
    rm -rf "$dir"
    _LAB_DIR=
    return 0
}

lab_pki() { # DIR [CLIENT...]: test PKI like tests/common/pki.rs (default clients client1 client2)
    local dir=$1 name eku
    shift
    local clients=("$@")
    ((${#clients[@]})) || clients=(client1 client2)
    mkdir -p "$dir" || return 1
    (
        set -e
        cd "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.crt -subj /CN=fwd-test-ca -days 3650 \
            -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        local serial=4096
        for name in server "${clients[@]}"; do
            eku=clientAuth
            [[ $name == server ]] && eku=serverAuth
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
            printf '%s\n' 'basicConstraints=critical,CA:FALSE' \
                'keyUsage=critical,digitalSignature' "extendedKeyUsage=$eku" \
                'subjectKeyIdentifier=hash' 'authorityKeyIdentifier=keyid' >"$name.ext"
            serial=$((serial + 1))
            openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "$serial" \
                -days 3650 -sha256 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
        done
        openvpn --genkey secret tc.key
    )
}

lab_status() {
    local dir
    dir=$(_lab_state_dir) || { echo "no lab is up"; return 0; }
    echo "lab $(cat "$dir/id")"
    echo "hosts (role namespace):"
    sed 's/^/  /' "$dir/hosts"
    echo "links (k a b v4a v4b v6a v6b):"
    sed 's/^/  /' "$dir/links"
    echo "pids:"
    local pid
    while read -r pid; do
        [[ -n $pid ]] || continue
        if kill -0 "$pid" 2>/dev/null; then echo "  $pid running"; else echo "  $pid exited"; fi
    done <"$dir/pids"
}

_lab_main() {
    set -u
    local cmd=${1:-}
    shift || true
    case $cmd in
    up)
        if _lab_state_dir >/dev/null 2>&1; then
            _lab_die "a lab is already up ($(cat "$(_lab_state_dir)/id")); run: $0 down"
            exit 1
        fi
        # Partial setup is undone if anything fails.
        trap 'lab_down' EXIT
        lab_up "$@" || exit 1
        ln -sfn "$_LAB_DIR" "$FWD_LAB_STATE_ROOT/current"
        trap - EXIT
        lab_status
        ;;
    down) lab_down ;;
    exec)
        (($# >= 2)) || { _lab_die "usage: $0 exec ROLE CMD..."; exit 2; }
        lab_exec "$@"
        ;;
    spawn)
        (($# >= 3)) || { _lab_die "usage: $0 spawn ROLE LOG CMD..."; exit 2; }
        lab_spawn "$@"
        ;;
    addr) lab_addr "$@" ;;
    pki)
        (($# >= 1)) || { _lab_die "usage: $0 pki DIR [CLIENT...]"; exit 2; }
        lab_pki "$@"
        ;;
    status) lab_status ;;
    *)
        sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
        [[ $cmd == -h || $cmd == --help || $cmd == help ]] || exit 2
        ;;
    esac
}

# Run as a command unless sourced.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    _lab_main "$@"
else
    _LAB_SOURCED=1
fi

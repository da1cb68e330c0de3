#!/usr/bin/env python3
"""Regenerates the OpenVPN interop fixtures in this directory (test-only tool, not run by cargo).

For every wrapping mode it starts a real `openvpn` 2.6 peer-to-peer TLS server and client on
127.0.0.1 (`--dev null`, no root needed) with a UDP relay between them, records the first
datagrams in both directions and writes them as `<mode>.hex` lines `c2s <hex>` / `s2c <hex>`.
Both openvpn processes are started by this script and killed by their PIDs.

Key material (`ta.key`, `ca.crt`, `*.crt`, `*.key`) is created on first run and committed so
the fixtures stay verifiable; it protects nothing.

Usage: python3 tests/vectors/wire/capture.py   (from anywhere)
"""
import os
import select
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OPENVPN = "/usr/sbin/openvpn"
MAX_PACKETS = 10
MAX_SECONDS = 6.0

MODES = {
    "plain": ([], []),
    "tls-auth-sha1": (["--tls-auth", "ta.key", "0"], ["--tls-auth", "ta.key", "1"]),
    "tls-auth-sha256": (
        ["--tls-auth", "ta.key", "0", "--auth", "SHA256"],
        ["--tls-auth", "ta.key", "1", "--auth", "SHA256"],
    ),
    "tls-auth-bidir-sha512": (
        ["--tls-auth", "ta.key", "--auth", "SHA512"],
        ["--tls-auth", "ta.key", "--auth", "SHA512"],
    ),
    "tls-crypt": (["--tls-crypt", "ta.key"], ["--tls-crypt", "ta.key"]),
    # `--pull` + `--tls-client` is what `--client` expands to.
    "tls-crypt-pull": (["--tls-crypt", "ta.key"], ["--tls-crypt", "ta.key", "--pull"]),
}


def run(cmd):
    subprocess.run(cmd, cwd=HERE, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_keys():
    if not os.path.exists(os.path.join(HERE, "ta.key")):
        run([OPENVPN, "--genkey", "secret", "ta.key"])
    if not os.path.exists(os.path.join(HERE, "ca.crt")):
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "36500", "-subj", "/CN=fwd-test-ca"])
        for name in ("server", "client"):
            run(["openssl", "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=fwd-test-{name}"])
            run(["openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-CAcreateserial", "-days", "36500", "-out", f"{name}.crt"])
            os.remove(os.path.join(HERE, f"{name}.csr"))
        srl = os.path.join(HERE, "ca.srl")
        if os.path.exists(srl):
            os.remove(srl)


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def capture(mode, server_extra, client_extra):
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.1", 0))
    relay_port = relay.getsockname()[1]
    server_port = free_udp_port()
    common = [OPENVPN, "--dev", "null", "--proto", "udp", "--verb", "3", "--ca", "ca.crt",
              "--connect-retry-max", "1", "--hand-window", "10"]
    server_cmd = common + ["--tls-server", "--dh", "none", "--local", "127.0.0.1",
                           "--lport", str(server_port), "--cert", "server.crt",
                           "--key", "server.key"] + server_extra
    client_cmd = common + ["--tls-client", "--nobind", "--remote", "127.0.0.1", str(relay_port),
                           "--cert", "client.crt", "--key", "client.key"] + client_extra
    log = open(os.path.join("/tmp", f"fwd-capture-{mode}.log"), "w")
    procs = []
    lines = []
    try:
        procs.append(subprocess.Popen(server_cmd, cwd=HERE, stdout=log, stderr=log))
        time.sleep(0.5)
        procs.append(subprocess.Popen(client_cmd, cwd=HERE, stdout=log, stderr=log))
        client_addr = None
        server_addr = ("127.0.0.1", server_port)
        deadline = time.monotonic() + MAX_SECONDS
        while len(lines) < MAX_PACKETS and time.monotonic() < deadline:
            r, _, _ = select.select([relay], [], [], 0.2)
            if not r:
                continue
            data, addr = relay.recvfrom(4096)
            if addr == server_addr:
                if client_addr is None:
                    continue
                lines.append(f"s2c {data.hex()}")
                relay.sendto(data, client_addr)
            else:
                client_addr = addr
                lines.append(f"c2s {data.hex()}")
                relay.sendto(data, server_addr)
    finally:
        for p in procs:
            p.kill()  # by PID: only the processes started here
            p.wait()
        relay.close()
        log.close()
    out = os.path.join(HERE, f"{mode}.hex")
    with open(out, "w") as f:
        f.write(f"# openvpn {mode}: first datagrams of a real {OPENVPN} p2p TLS handshake\n")
        f.write(f"# server: {' '.join(server_cmd[1:])}\n# client: {' '.join(client_cmd[1:])}\n")
        f.write("\n".join(lines) + "\n")
    print(f"{mode}: {len(lines)} packets -> {out}")


def main():
    ensure_keys()
    modes = sys.argv[1:] or list(MODES)
    for m in modes:
        capture(m, *MODES[m])


if __name__ == "__main__":
    main()

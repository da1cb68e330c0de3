#!/usr/bin/env python3
"""Helper for perf/compare.sh: parse iperf3 JSON, keep measurement records, print tables.

  compare.py record JSONL IPERF_JSON key=value...
      Parse one iperf3 -J output, append one JSON record (the key=value fields plus the
      parsed numbers) to JSONL, and print "status mbps rx_pps loss_pct sent_pps" on stdout
      (status ok|fail; numbers 0 when failed) for the shell's rate search.
  compare.py report JSONL OUT_JSON META_JSON
      Select the result of every test, print the throughput table and the server CPU table
      (with ratios against ovpn-ovpn), and write OUT_JSON with meta, results and every
      measurement.
"""

import json
import math
import sys

PAIRINGS = ["ovpn-ovpn", "fwd-fwd", "ovpn-fwd", "underlay"]
WORKLOADS = {
    "tcp1": ("TCP 1 stream", "Mbit/s"),
    "tcp4": ("TCP 4 streams", "Mbit/s"),
    "udp1400": ("UDP 1400 B max", "Mbit/s"),
    "udp64": ("UDP 64 B <1% loss", "kpps"),
}
LOSS_LIMIT = 1.0


def num(v):
    """key=value strings to int/float/None where they look like numbers."""
    if v == "":
        return None
    for t in (int, float):
        try:
            return t(v)
        except ValueError:
            pass
    return v


def parse_iperf(path):
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        return {"ok": False, "error": f"no iperf3 JSON ({e.__class__.__name__})"}
    if d.get("error"):
        return {"ok": False, "error": str(d["error"])}
    end = d.get("end") or {}
    start = (d.get("start") or {}).get("test_start") or {}
    udp = start.get("protocol") == "UDP"
    rcv = end.get("sum_received") or {}
    snd = end.get("sum_sent") or {}
    if not rcv or not snd:
        return {"ok": False, "error": "iperf3 JSON without end.sum_received/sum_sent"}
    r = {
        "ok": True,
        "protocol": start.get("protocol"),
        "streams": start.get("num_streams"),
        "reverse": bool(start.get("reverse")),
        "blksize": start.get("blksize"),
        "seconds": snd.get("seconds"),
        "bytes_sent": snd.get("bytes"),
        "bytes": rcv.get("bytes"),  # received = moved through the tunnel
        "mbps": (rcv.get("bits_per_second") or 0) / 1e6,
        "sender_mbps": (snd.get("bits_per_second") or 0) / 1e6,
    }
    if udp:
        blk = start.get("blksize") or 1
        sent = snd.get("packets") or 0
        lost = rcv.get("lost_packets") or 0
        rx = max((rcv.get("packets") or 0) - lost, 0)
        secs = snd.get("seconds") or 1
        r.update(
            {
                "packets_sent": sent,
                "packets_received": rx,
                "lost_packets": lost,
                "lost_percent": rcv.get("lost_percent") or 0.0,
                "sent_pps": sent / secs,
                "rx_pps": (rcv.get("bits_per_second") or 0) / 8 / blk,
                "jitter_ms": rcv.get("jitter_ms"),
            }
        )
    else:
        r["retransmits"] = snd.get("retransmits")
    cpu = end.get("cpu_utilization_percent")
    if cpu:
        r["iperf_cpu_percent"] = cpu
    return r


def cmd_record(jsonl, iperf, kvs):
    rec = {}
    for kv in kvs:
        k, _, v = kv.partition("=")
        rec[k] = num(v)
    rec.update(parse_iperf(iperf))
    if rec.get("ok") and rec.get("server_alive") == 0:
        rec["ok"] = False
        rec["error"] = "server process died during the test"
    rec["iperf_json"] = iperf
    scpu, b = rec.get("server_cpu_s"), rec.get("bytes")
    if rec.get("ok") and scpu is not None and b:
        rec["server_cpu_s_per_gb"] = scpu / (b / 1e9)
        if rec.get("packets_received"):
            rec["server_cpu_us_per_pkt"] = scpu * 1e6 / rec["packets_received"]
    ccpu = rec.get("client_cpu_s")
    if rec.get("ok") and ccpu is not None and b:
        rec["client_cpu_s_per_gb"] = ccpu / (b / 1e9)
    with open(jsonl, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    if rec.get("ok"):
        print(
            "ok %.3f %.1f %.4f %.1f"
            % (rec["mbps"], rec.get("rx_pps", 0), rec.get("lost_percent", 0), rec.get("sent_pps", 0))
        )
    else:
        print("fail 0 0 100 0")


def select(records):
    """(workload, dir, payload, pairing) -> chosen result."""
    groups = {}
    for r in records:
        key = (r["workload"], r["dir"], str(r["payload"]), r["pairing"])
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        wl = key[0]
        res = {"workload": wl, "dir": key[1], "payload": "IPv" + key[2], "pairing": key[3]}
        ok = [r for r in rs if r.get("ok")]
        if wl == "udp64":
            good = [r for r in ok if r.get("lost_percent", 100) < LOSS_LIMIT]
            res["tries"] = len(rs)
            if good:
                best = max(good, key=lambda r: r["rx_pps"])
                res.update(value=best["rx_pps"] / 1e3, unit="kpps", chosen=best)
            else:
                res.update(value=None, unit="kpps", chosen=None)
                res["error"] = (
                    "no try below %g %% loss" % LOSS_LIMIT if ok else (rs[-1].get("error") or "failed")
                )
        else:
            best = ok[-1] if ok else None
            res.update(value=best["mbps"] if best else None, unit="Mbit/s", chosen=best)
            if not best:
                res["error"] = rs[-1].get("error") or "failed"
        c = res["chosen"]
        res["server_cpu_s_per_gb"] = c.get("server_cpu_s_per_gb") if c else None
        res["client_cpu_s_per_gb"] = c.get("client_cpu_s_per_gb") if c else None
        if c and c.get("lost_percent") is not None:
            res["lost_percent"] = c["lost_percent"]
        out[key] = res
    return out


def fmt(v, nd=1):
    if v is None:
        return "n/a"
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.*f" % (max(nd, 2), v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2f" % (a / b)


def table(rows, header):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: " | ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w)
                                    for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(header))
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def cmd_report(jsonl, out_json, meta_json):
    records = []
    try:
        with open(jsonl) as f:
            records = [json.loads(l) for l in f if l.strip()]
    except OSError:
        pass
    with open(meta_json) as f:
        meta = json.load(f)
    sel = select(records)
    order_wl = list(WORKLOADS)
    keys = sorted(
        {k[:3] for k in sel},
        key=lambda k: (order_wl.index(k[0]) if k[0] in order_wl else 99, k[1], k[2]),
    )
    pairings = [p for p in PAIRINGS if p in meta.get("pairings", PAIRINGS)]

    def get(k, p, field):
        r = sel.get(k + (p,))
        return r.get(field) if r else None

    ratios = [r for r in ("fwd-fwd", "ovpn-fwd") if "ovpn-ovpn" in pairings and r in pairings]

    def metric_table(cols, field, unit):
        """One row per measured test: `field` for each pairing in `cols`, then the ratios."""
        head = ["workload", "dir", "payload", "unit"] + cols + [r + "/ovpn-ovpn" for r in ratios]
        rows = []
        for k in keys:
            row = [WORKLOADS.get(k[0], (k[0],))[0], k[1], "IPv" + k[2], unit(k)]
            row += [fmt(get(k, p, field)) for p in cols]
            base = get(k, "ovpn-ovpn", field)
            row += [ratio(get(k, r, field), base) for r in ratios]
            rows.append(row)
        return rows, head

    rows, head = metric_table(pairings, "value", lambda k: WORKLOADS.get(k[0], ("", "?"))[1])
    print()
    print("Throughput (receiver side; UDP 64 B = highest packets/s with < 1 % loss; higher is better)")
    table(rows, head)

    cpu_pairings = [p for p in pairings if p != "underlay"]
    rows2, head2 = metric_table(cpu_pairings, "server_cpu_s_per_gb", lambda k: "s/GB")
    if cpu_pairings:
        print()
        print("Server CPU seconds (utime+stime, all threads) per GB received (lower is better)")
        table(rows2, head2)

    fails = [r for r in sel.values() if r["value"] is None]
    if fails:
        print()
        for r in fails:
            print("n/a: %s %s %s %s: %s" % (r["pairing"], r["workload"], r["dir"], r["payload"],
                                          r.get("error")))
    results = []
    for k in keys:
        for p in pairings:
            r = sel.get(k + (p,))
            if r:
                r = dict(r)
                c = r.pop("chosen")
                r["chosen_iperf_json"] = c.get("iperf_json") if c else None
                r["chosen_try"] = c.get("try") if c else None
                results.append(r)
    doc = {"meta": meta, "results": results, "measurements": records,
           "tables": {"throughput": [head] + rows, "server_cpu_s_per_gb": [head2] + rows2}}
    with open(out_json, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    return 0 if not fails else 1


def main(argv):
    if len(argv) >= 3 and argv[1] == "record":
        cmd_record(argv[2], argv[3], argv[4:])
        return 0
    if len(argv) == 5 and argv[1] == "report":
        return cmd_report(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

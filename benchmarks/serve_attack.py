"""Decode-cost bombs against `fakedet serve` while good requests run (loopback, bounded).

    .venv/bin/python benchmarks/serve_attack.py [--package P.fdet] [--seconds 20] [--clients 4]
        [--attackers 4] [--machine NAME]

Phases, each --seconds long, on one server (--decode-workers 2, --timeout-s 10):
  baseline   --clients threads POST good JPEGs (256x192), one per request;
  scan-bomb  the same, plus --attackers threads POSTing progressive JPEGs whose shortest
             scan is repeated 30,000 times (finding 1 of the hostile-client review: ~80 s of
             libjpeg work each before the fix) with ?timeout_s=1;
  slow-bomb  the same with bombs under the scan limit (100 scans of a 4096x4096 image,
             ~3 s of decoding each on an idle core), which only the decode budget and the
             504's cancellation stop.
Per phase: good requests' p50/p99 latency and answers by status (504s counted), the
attackers' answers by status. Target (the issue's): under the scan-bomb flood, good p99
<= 2 s and no good request answered 504. Also imported by serve_load.py (--attack-seconds).
Writes benchmarks/results/serve_attack-<machine>.json and .md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SCAN_LIMIT = 100  # fakedet.runtime.jpeg_scans.MAX_JPEG_SCANS


def scan_bomb(extra_scans: int, size) -> bytes:
    """A progressive JPEG of a flat image with its shortest scan repeated `extra_scans` times."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    starts = [m.start() for m in re.finditer(b"\xff\xda", data)]
    eoi = data.rfind(b"\xff\xd9")
    scan = min((data[s:e] for s, e in zip(starts, starts[1:] + [eoi])), key=len)
    return data[:eoi] + scan * extra_scans + data[eoi:]


def _poster(port, blob, query, until, status: Counter, latency: list | None, lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/detect" + query, blob, {"Content-Type": "image/jpeg"})
            r = conn.getresponse()
            r.read()
            code = str(r.status)
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            code = f"conn:{type(e).__name__}"
            conn.close()
        dt = time.perf_counter() - t0
        with lock:
            status[code] += 1
            if latency is not None:
                latency.append(dt)
    conn.close()


def attack_phase(port: int, good: list[bytes], bomb: bytes | None, clients: int, attackers: int,
                 seconds: float) -> dict:
    """`clients` good posters (and `attackers` bomb posters with ?timeout_s=1) for `seconds`."""
    lock, until = threading.Lock(), time.perf_counter() + seconds
    good_status, bomb_status, latency = Counter(), Counter(), []
    threads = [threading.Thread(target=_poster, args=(port, good[k % len(good)], "", until, good_status, latency,
                                                      lock), daemon=True) for k in range(clients)]
    if bomb is not None:
        threads += [threading.Thread(target=_poster, args=(port, bomb, "?timeout_s=1", until, bomb_status, None,
                                                           lock), daemon=True) for _ in range(attackers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.array(latency) * 1e3 if latency else np.array([np.nan])
    return {"good": {"requests": sum(good_status.values()), "status": dict(sorted(good_status.items())),
                     "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                     "max_ms": float(np.max(lat)), "504": good_status.get("504", 0)},
            "attack": {"requests": sum(bomb_status.values()), "status": dict(sorted(bomb_status.items()))},
            "seconds": seconds, "clients": clients, "attackers": attackers if bomb is not None else 0,
            "bomb_bytes": len(bomb) if bomb is not None else 0}


def bombs() -> dict:
    return {"scan-bomb": scan_bomb(30_000, (2048, 2048)), "slow-bomb": scan_bomb(SCAN_LIMIT - 10, (4096, 4096))}


def _package(work: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from appliance_helpers import build_brightness_package

    pkg = work / "pkg" / "bright.fdet"
    return pkg if pkg.exists() else build_brightness_package(work / "pkg")


def markdown(r: dict) -> str:
    rows = ["| phase | good req | good p50 ms | good p99 ms | good 504 | good answers | attack answers |",
            "|---|---|---|---|---|---|---|"]
    for name, ph in r["phases"].items():
        g = ph["good"]
        rows.append(f"| {name} | {g['requests']} | {g['p50_ms']:.1f} | {g['p99_ms']:.1f} | {g['504']} | "
                    f"{g['status']} | {ph['attack']['status'] or '-'} |")
    return "\n".join([f"# serve under decode-cost bombs ({r['machine']['name']})", "",
                      f"CPU: {r['machine']['cpu']}; load before: {r['machine']['load_before']}; "
                      f"command: `{r['command']}`; server: `{r['server_command']}`", "", *rows, "",
                      *(f"- {k}: {v[0]} ({'met' if v[1] else 'NOT met'})" for k, v in r["targets"].items()), ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, default=None, help="default: the tests' tiny brightness package")
    ap.add_argument("--work", type=Path, default=Path("/tmp/fakedet-serve-attack"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--attackers", type=int, default=4)
    ap.add_argument("--machine", default=socket.gethostname())
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from serve_load import cpu_name, free_port, make_images, relative, wait_ready

    args.work.mkdir(parents=True, exist_ok=True)
    package = args.package or _package(args.work)
    good = make_images(args.work / "images", 16)
    port = free_port()
    cmd = [sys.executable, "-m", "fakedet", "serve", str(package), "--port", str(port), "--backend", "ort-cpu",
           "--decode-workers", "2", "--threads", "1"]
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    phases = {}
    try:
        wait_ready(port, proc)
        phases["baseline"] = attack_phase(port, good, None, args.clients, 0, args.seconds)
        for name, bomb in bombs().items():
            phases[name] = attack_phase(port, good, bomb, args.clients, args.attackers, args.seconds)
            print(f"{name}: {phases[name]['good']}", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    sb = phases["scan-bomb"]["good"]
    report = {"schema": "fakedet.serve_attack", "schema_version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": relative(" ".join(["benchmarks/serve_attack.py"] + sys.argv[1:]), args.work),
              "server_command": relative(" ".join(["fakedet"] + cmd[3:]), args.work),
              "machine": {"name": args.machine, "cpu": cpu_name(), "load_before": " ".join(load_before)},
              "phases": phases,
              "targets": {"scan-bomb flood: good p99 <= 2 s": (f"{sb['p99_ms']:.0f} ms", sb["p99_ms"] <= 2000),
                          "scan-bomb flood: no good request answered 504": (str(sb["504"]), sb["504"] == 0)}}
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"serve_attack-{args.machine}"
    from fakedet.atomic import atomic_write_text

    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0 if all(met for _, met in report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Peak and after-the-fact resident memory for one large PNG through `predict` and `serve`.

    .venv/bin/python benchmarks/large_image_memory.py PACKAGE [--sides 1000 4000]

For each side: a flat SIDE x SIDE PNG; `fakedet predict PACKAGE img.png` (peak RSS of the
process, from its rusage); then one `fakedet serve PACKAGE` per side: RSS after warm-up,
the peak (VmHWM, reset after warm-up through /proc/PID/clear_refs) while it scores the
image, and RSS once answered. --max-memory is raised to 64GB so nothing is refused.
Writes benchmarks/results/large_image_memory-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def _kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def predict_peak_mib(package: Path, image: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "fakedet", "predict", str(package), str(image), "--threads", "2",
                        "--max-memory", "64GB"], capture_output=True, text=True, cwd=REPO)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"rc": r.returncode, "peak_mib": peak / 1024 if peak > before else None, "seconds": time.perf_counter() - t0,
            "line": r.stdout.strip().splitlines()[-1]}


def serve_mib(package: Path, image: Path) -> dict:
    import http.client

    from serve_load import free_port, wait_ready

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fakedet", "serve", str(package), "--port", str(port), "--threads",
                             "2", "--max-memory", "64GB", "--timeout-s", "600", "--max-bytes", "200MB"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_ready(port, proc)
        time.sleep(1.0)
        warm = _kib(proc.pid, "VmRSS")
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
        c.request("POST", "/v1/detect", image.read_bytes(), {"Content-Type": "image/png"})
        status = c.getresponse().status
        time.sleep(1.0)
        return {"status": status, "after_warmup_mib": warm / 1024, "peak_mib": _kib(proc.pid, "VmHWM") / 1024,
                "after_mib": _kib(proc.pid, "VmRSS") / 1024}
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> int:
    from PIL import Image

    from serve_load import cpu_name

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("package", type=Path)
    ap.add_argument("--sides", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/fakedet-large-image"))
    ap.add_argument("--machine", default=socket.gethostname())
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for side in args.sides:
        img = args.work / f"flat-{side}.png"
        Image.new("RGB", (side, side), (120, 130, 140)).save(img)
        rows[side] = {"png_bytes": img.stat().st_size, "predict": predict_peak_mib(args.package, img),
                      "serve": serve_mib(args.package, img)}
        print(side, json.dumps(rows[side]), file=sys.stderr)
    report = {"schema": "fakedet.large_image_memory", "schema_version": 1,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "package": args.package.name,
              "machine": {"name": args.machine, "cpu": cpu_name(), "load": os.getloadavg()}, "sides": rows}
    out = REPO / "benchmarks" / "results" / f"large_image_memory-{args.machine}.json"
    from fakedet.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

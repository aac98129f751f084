"""Load test of `fakedet serve` on loopback, bounded in requests and time (it stops by itself).

    .venv/bin/python benchmarks/serve_load.py [--package P.fdet] [--clients 16] [--requests 10000]
        [--seconds 300] [--batch 8] [--machine NAME]

1. Package: --package, else (built once, cached under --work) a ResNet-50-class INT8 CPU
   package from benchmarks/bench_headline.py at --size (random init: speed, not accuracy).
2. `fakedet bench PACKAGE --images DIR --batch B` (ONNX Runtime CPU, INT8): the end-to-end
   figure (decode + preprocess + infer) the service is held against, before the server runs.
3. `fakedet serve` (--max-batch B) on a free 127.0.0.1 port; N client threads with
   keep-alive connections POST JPEGs (one per request):
     warm-up   --warm-requests, then the server's resident memory is the baseline;
     main      until --requests answered or --seconds passed: throughput, p50/p99 latency,
               answers by status, connection errors, resident memory sampled every 0.5 s;
     overload  --overload-seconds with max-queue + 32 clients: 503 + Retry-After expected,
               no other 5xx;
     attack    --attack-seconds per bomb kind of serve_attack.py: good clients beside as many
               decode-bomb posters; good p99 and 504s.
   Then SIGTERM (graceful) and the exit code.
Targets (the issue's): no 5xx except deliberate 503s; memory growth under 5% over the main
phase (>= 10,000 requests); service throughput >= 80% of the bench's end-to-end throughput.
Writes benchmarks/results/serve_load-<machine>.json, .md and .png.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import signal
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
sys.path.insert(0, str(REPO / "benchmarks"))


def log(msg: str) -> None:
    print(f"[serve-load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    vnni = "avx512_vnni" in out
    return f"{name} ({os.cpu_count()} cores{', avx512_vnni' if vnni else ', no avx512_vnni'})"


def make_images(folder: Path, n: int, size=(256, 192)) -> list[bytes]:
    """n photo-like JPEGs (smooth gradients + texture + noise), written to `folder` too."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    blobs = []
    for i in range(n):
        base = np.stack([(xx * rng.uniform(0.2, 1.0) + yy * rng.uniform(0.2, 1.0) + rng.uniform(0, 255)) % 256
                         for _ in range(3)], axis=2)
        tex = 30 * np.sin(xx / rng.uniform(3, 12))[..., None] * np.cos(yy / rng.uniform(3, 12))[..., None]
        arr = np.clip(base + tex + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, "JPEG", quality=90)
        (folder / f"img{i:03d}.jpg").write_bytes(buf.getvalue())
        blobs.append(buf.getvalue())
    return blobs


def relative(text: str, work: Path) -> str:
    """A command line without this machine's paths."""
    return text.replace(str(work), "$WORK").replace(str(REPO) + "/", "")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the bench baseline -------------------------------------------------------------
def bench_e2e(package: Path, images: Path, batch: int, threads: int, work: Path, seconds: float,
              precision: str) -> dict:
    out = work / "bench.json"
    cmd = [sys.executable, "-m", "fakedet", "bench", str(package), "--images", str(images), "--backend", "ort-cpu",
           "--precision", precision, "--batch", str(batch), "--threads", str(threads), "--warmup", "2",
           "--duration", str(seconds), "--repeats", "3", "-q", "--json", str(out)]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    row = json.loads(out.read_text())["results"][0]
    return {"command": relative(" ".join(["fakedet"] + cmd[3:]), work), "img_s": row["throughput_img_s"]["median"],
            "spread": [row["throughput_img_s"]["min"], row["throughput_img_s"]["max"]],
            "split_ms": row["split_ms"], "artifact": row["artifact"]}


# ---- load ----------------------------------------------------------------------------
class Load:
    """Client threads with keep-alive connections until `count` answers or `seconds` pass."""

    def __init__(self, port: int, blobs: list[bytes], clients: int, count: int, seconds: float):
        self.port, self.blobs, self.clients = port, blobs, clients
        self.count, self.seconds = count, seconds
        self.lock = threading.Lock()
        self.issued = 0
        self.latency: list[float] = []
        self.done_at: list[float] = []
        self.status: Counter = Counter()
        self.retry_after_ok = True

    def _take(self) -> bool:
        with self.lock:
            if self.issued >= self.count or time.perf_counter() >= self.deadline:
                return False
            self.issued += 1
            return True

    def _client(self, k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        i = k
        while self._take():
            body = self.blobs[i % len(self.blobs)]
            i += self.clients
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/detect", body, {"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                code = str(r.status)
                if r.status == 503 and not r.getheader("Retry-After"):
                    self.retry_after_ok = False
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            except (OSError, http.client.HTTPException) as e:
                code = f"conn:{type(e).__name__}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            t1 = time.perf_counter()
            with self.lock:
                self.status[code] += 1
                if code == "200":
                    self.latency.append(t1 - t0)
                    self.done_at.append(t1)
        conn.close()

    def run(self) -> dict:
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + self.seconds
        threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - self.t0
        lat = np.array(self.latency) * 1e3 if self.latency else np.array([np.nan])
        ok = self.status.get("200", 0)
        return {
            "clients": self.clients, "requests": sum(self.status.values()), "seconds": round(wall, 3),
            "throughput_img_s": ok / wall if wall > 0 else 0.0,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                           "max": float(np.max(lat)), "mean": float(np.mean(lat))},
            "status": dict(sorted(self.status.items())),
            "retry_after_on_every_503": self.retry_after_ok,
        }


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.samples.append((round(self.now(), 2), rss_kib(self.pid)))
            except OSError:
                return
            self.stop_event.wait(self.every_s)


def wait_ready(port: int, proc, timeout: float = 180.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not become ready")


def is_5xx_other_than_503(code: str) -> bool:
    return code.startswith("conn:") or (code.isdigit() and int(code) >= 500 and code != "503")


# ---- report ----------------------------------------------------------------------------
def per_second(done_at, t0: float) -> list[int]:
    t = np.array(done_at) - t0
    if not t.size:
        return []
    counts, _ = np.histogram(t, np.arange(0, t.max() + 1.0, 1.0))
    return counts.tolist()


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    series = report["series"]
    if series["main_img_per_s"]:
        a.plot(range(len(series["main_img_per_s"])), series["main_img_per_s"], lw=1, label="service (200s per second)")
    a.axhline(report["bench"]["img_s"], color="k", ls="--", lw=1, label="fakedet bench --images (end to end)")
    a.axhline(0.8 * report["bench"]["img_s"], color="r", ls=":", lw=1, label="80% target")
    a.set_xlabel("seconds into the main phase")
    a.set_ylabel("images / s")
    a.legend(fontsize=8)
    a.set_title(f"{report['main']['clients']} clients, batch <= {report['settings']['batch']}")
    if series["rss_kib"]:
        st, kib = zip(*series["rss_kib"])
        b.plot(st, np.array(kib) / 1024, lw=1)
        for name, at in series["phases_s"].items():
            b.axvline(at, color="grey", ls=":", lw=1)
            b.text(at, b.get_ylim()[0], f" {name}", fontsize=8, va="bottom")
    b.set_xlabel("seconds since the server was ready")
    b.set_ylabel("server RSS (MiB)")
    b.set_title(f"memory: {report['memory']['growth_pct']:+.2f}% over {report['main']['requests']} requests")
    fig.suptitle(f"fakedet serve load, {report['machine']['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(r: dict) -> str:
    m, o, mem, t = r["main"], r["overload"], r["memory"], r["targets"]
    lines = [
        f"# fakedet serve under load ({r['machine']['name']})",
        "",
        f"CPU: {r['machine']['cpu']}; {r['machine']['note']}",
        f"Package: {r['package']} ({r['bench']['artifact']}), batch <= {r['settings']['batch']}, "
        f"max-delay {r['settings']['max_delay_ms']} ms, queue {r['settings']['max_queue']}, "
        f"ONNX Runtime threads {r['settings']['threads']}.",
        f"Command: `{r['command']}`",
        "",
        "| phase | clients | requests | seconds | img/s | p50 ms | p99 ms | answers |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, ph in (("main", m), ("overload", o)):
        if ph:
            lines.append(f"| {name} | {ph['clients']} | {ph['requests']} | {ph['seconds']:.1f} | "
                         f"{ph['throughput_img_s']:.1f} | {ph['latency_ms']['p50']:.1f} | {ph['latency_ms']['p99']:.1f} "
                         f"| {', '.join(f'{k}: {v}' for k, v in ph['status'].items())} |")
    lines += [
        "",
        f"`{r['bench']['command']}`: {r['bench']['img_s']:.1f} img/s end to end "
        f"(spread {r['bench']['spread'][0]:.1f}-{r['bench']['spread'][1]:.1f}).",
        f"Server RSS: {mem['start_mib']:.1f} MiB when ready, {mem['after_warm_mib']:.1f} MiB after warm-up, "
        f"{mem['end_mib']:.1f} MiB after the main phase ({mem['growth_pct']:+.2f}%); cold start {r['cold_start_s']:.1f} s; "
        f"SIGTERM exit code {r['sigterm_exit']}.",
        "",
        "| target | value | met |",
        "| --- | --- | --- |",
    ]
    for name, (value, met) in t.items():
        lines.append(f"| {name} | {value} | {'yes' if met else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fakedet-serve-load"))
    ap.add_argument("--size", type=int, default=112, help="crop of the built package (when --package is not given)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=10_000, help="main phase: stop after this many answers")
    ap.add_argument("--seconds", type=float, default=300.0, help="main phase: stop after this long at most")
    ap.add_argument("--warm-requests", type=int, default=500)
    ap.add_argument("--overload-seconds", type=float, default=5.0)
    ap.add_argument("--attack-seconds", type=float, default=0.0, help="per bomb kind (serve_attack.py); 0: none")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--precision", default="int8", help="artifact precision for both bench and serve")
    ap.add_argument("--max-delay-ms", type=float, default=5.0)
    ap.add_argument("--max-queue", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--bench-seconds", type=float, default=5.0)
    ap.add_argument("--machine", default=socket.gethostname())
    ap.add_argument("--note", default="", help="e.g. 'shared with other jobs'")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for the .json/.md/.png")
    args = ap.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    if args.package is None:
        from bench_headline import build_package

        args.package = build_package(args.work / f"r50-{args.size}", args.size, 32)
    log(f"package {args.package}")
    images = args.work / "images"
    blobs = make_images(images, 64)
    log(f"fakedet bench --images (batch {args.batch}, {args.threads} threads)")
    bench = bench_e2e(args.package, images, args.batch, args.threads, args.work, args.bench_seconds, args.precision)
    log(f"bench end to end: {bench['img_s']:.1f} img/s")

    port = free_port()
    cmd = [sys.executable, "-m", "fakedet", "serve", str(args.package), "--port", str(port), "--backend", "ort-cpu",
           "--precision", args.precision, "--max-batch", str(args.batch), "--max-delay-ms", str(args.max_delay_ms),
           "--max-queue", str(args.max_queue), "--threads", str(args.threads)]
    server_log = open(args.work / "server.log", "wb")
    t_start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        cold = wait_ready(port, proc)
        sampler = RssSampler(proc.pid)
        sampler.start()
        rss_start = rss_kib(proc.pid)
        log(f"server ready in {cold:.1f} s, RSS {rss_start / 1024:.1f} MiB; warm-up {args.warm_requests} requests")
        Load(port, blobs, args.clients, args.warm_requests, args.seconds).run()
        rss_warm = rss_kib(proc.pid)
        phases = {"main": sampler.now()}
        log(f"main phase: {args.clients} clients, up to {args.requests} requests / {args.seconds:g} s")
        load = Load(port, blobs, args.clients, args.requests, args.seconds)
        main_phase = load.run()
        rss_end = rss_kib(proc.pid)
        phases["overload"] = sampler.now()
        log(f"main: {main_phase['throughput_img_s']:.1f} img/s, p50 {main_phase['latency_ms']['p50']:.1f} ms, "
            f"p99 {main_phase['latency_ms']['p99']:.1f} ms, {main_phase['status']}")
        overload = None
        if args.overload_seconds > 0:
            n = args.max_queue + 32
            log(f"overload: {n} clients for {args.overload_seconds:g} s")
            overload = Load(port, blobs, n, 10**9, args.overload_seconds).run()
            log(f"overload: {overload['status']}")
        attack = None
        if args.attack_seconds > 0:  # good clients beside as many attackers, per bomb kind
            from serve_attack import attack_phase, bombs

            attack = {kind: attack_phase(port, blobs, bomb, args.clients, args.clients, args.attack_seconds)
                      for kind, bomb in bombs().items()}
            log(f"attack: {({k: v['good'] for k, v in attack.items()})}")
        sampler.stop_event.set()
        proc.send_signal(signal.SIGTERM)
        sigterm_exit = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
        server_log.close()

    growth = 100.0 * (rss_end - rss_warm) / rss_warm
    bad = {k: v for ph in (main_phase, overload or {"status": {}}) for k, v in ph["status"].items()
           if is_5xx_other_than_503(k)}
    report = {
        "schema": "fakedet.serve_load", "schema_version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": relative(" ".join(["benchmarks/serve_load.py"] + sys.argv[1:]), args.work),
        "machine": {"name": args.machine, "cpu": cpu_name(), "platform": platform.platform(), "note": args.note},
        "package": str(args.package.name),
        "settings": {"precision": args.precision, "batch": args.batch, "max_delay_ms": args.max_delay_ms, "max_queue": args.max_queue,
                     "threads": args.threads, "server_command": relative(" ".join(["fakedet"] + cmd[3:]), args.work)},
        "bench": bench, "cold_start_s": cold, "main": main_phase, "overload": overload, "attack": attack,
        "memory": {"start_mib": rss_start / 1024, "after_warm_mib": rss_warm / 1024, "end_mib": rss_end / 1024,
                   "growth_pct": growth},
        "sigterm_exit": sigterm_exit,
        "series": {"rss_kib": sampler.samples, "phases_s": phases,
                   "main_img_per_s": per_second(load.done_at, load.t0)},
    }
    ratio = main_phase["throughput_img_s"] / bench["img_s"]
    report["targets"] = {
        "no 5xx except deliberate 503s": (f"{sum(bad.values())} ({bad})" if bad else "0", not bad),
        "memory growth < 5% over >= 10,000 requests": (
            f"{growth:+.2f}% over {main_phase['requests']}", growth < 5.0 and main_phase["requests"] >= 10_000),
        "service >= 80% of bench --images end to end": (f"{ratio:.2f}", ratio >= 0.8),
        "overload answered with 503 + Retry-After": (
            f"{(overload or {}).get('status', {}).get('503', 0)} x 503",
            bool(overload) and overload["status"].get("503", 0) > 0 and overload["retry_after_on_every_503"]),
    }
    if attack:
        flood = attack["scan-bomb"]["good"]
        report["targets"]["scan-bomb flood: good p99 <= 2 s, no 504"] = (
            f"p99 {flood['p99_ms']:.0f} ms, {flood['504']} x 504", flood["p99_ms"] <= 2000 and flood["504"] == 0)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / f"serve_load-{args.machine}"
    from fakedet.atomic import atomic_write_text

    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown(report))
    plot(report, stem.with_suffix(".png"))
    print(markdown(report))
    log(f"wrote {stem}.json/.md/.png in {time.perf_counter() - t_start:.0f} s")
    return 0 if all(met for _, met in report["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Run NVIDIA's trtexec on a package's plan and read its performance summary, so
`fakedet bench --trtexec` puts the TensorRT backend beside the tool its users trust,
on the same plan, batch and shapes, in the same run.

trtexec (8.x - 11.x) ends a timing run with

    [I] === Performance summary ===
    [I] Throughput: 812.4 qps
    [I] Latency: min = 9.1 ms, max = 9.9 ms, mean = 9.3 ms, median = 9.3 ms, percentile(99%) = 9.8 ms
    [I] Enqueue Time: ...      [I] H2D Latency: ...      [I] GPU Compute Time: ...
    [I] D2H Latency: ...       [I] Total Host Walltime: 3.0 s      [I] Total GPU Compute Time: 2.9 s

(an optional [date-time] prefix on each line; some sections also have
percentile(90%)/(95%)). One query is one batch, so images/s = qps x batch. The
parsing is pure and tested on text; running trtexec needs a GPU (pytest -m gpu).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

SECTIONS = ("Latency", "End-to-End Host Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency")
_LINE = re.compile(r"^(?:\[[^\]]*\]\s*)*(?P<label>[A-Za-z][A-Za-z0-9 \-]*?):\s*(?P<body>.*)$")
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([0-9.eE+-]+)\s*ms")
_SECONDS = re.compile(r"^([0-9.eE+-]+)\s*s\b")


class TrtexecError(RuntimeError):
    """trtexec could not be run, failed, or printed no performance summary."""


def find_trtexec(explicit: str | None = None) -> str | None:
    """The trtexec to use: an explicit path, else PATH, else where TensorRT puts it
    (JetPack and NVIDIA's containers: /usr/src/tensorrt/bin)."""
    if explicit:
        return explicit if Path(explicit).is_file() else shutil.which(explicit)
    found = shutil.which("trtexec")
    if found:
        return found
    for p in ("/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec"):
        if Path(p).is_file():
            return p
    return None


def shape_arg(input_name: str, shape: tuple) -> str:
    """`--shapes` value: input:8x3x224x224. Names with ':' or ',' are quoted the way
    trtexec documents ('name with, comma':1x3)."""
    dims = "x".join(str(int(d)) for d in shape)
    name = f"'{input_name}'" if any(c in input_name for c in ":,") else input_name
    return f"{name}:{dims}"


def command(trtexec: str, plan: str | Path, input_name: str, shape: tuple, warmup_s: float, duration_s: float,
            cuda_graph: bool = False, extra: list[str] | None = None) -> list[str]:
    """The trtexec command that measures `plan` at one input shape like fakedet's
    tensorrt backend runs it: one stream, data transfers included, CUDA graphs when
    fakedet uses them too."""
    cmd = [
        trtexec,
        f"--loadEngine={plan}",
        f"--shapes={shape_arg(input_name, shape)}",
        f"--warmUp={max(int(round(warmup_s * 1000)), 0)}",
        f"--duration={max(int(round(duration_s)), 1)}",
        "--iterations=10",
    ]
    if cuda_graph:
        cmd.append("--useCudaGraph")
    return cmd + list(extra or [])


def _stats(body: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, pct, value in _STAT.findall(body):
        out[f"p{pct}" if pct else name] = float(value)
    return out


def parse_summary(text: str) -> dict:
    """{'throughput_qps': float, 'sections': {name: {min, max, mean, median, p99, ...} ms},
    'host_walltime_s': float|None, 'gpu_compute_total_s': float|None} from trtexec's
    output. Only the lines after '=== Performance summary ===' count (earlier lines
    include per-10-runs averages). Raises TrtexecError without a summary."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "=== Performance summary ===" in line), None)
    if start is None:
        raise TrtexecError("trtexec printed no '=== Performance summary ===' (did the run fail? see its log)")
    result: dict = {"throughput_qps": None, "sections": {}, "host_walltime_s": None, "gpu_compute_total_s": None}
    for line in lines[start + 1 :]:
        m = _LINE.match(line.strip())
        if not m:
            continue
        label, body = m.group("label").strip(), m.group("body").strip()
        if label == "Throughput":
            q = re.match(r"([0-9.eE+-]+)\s*qps", body)
            if q:
                result["throughput_qps"] = float(q.group(1))
        elif label in SECTIONS:
            result["sections"][label] = _stats(body)
        elif label in ("Total Host Walltime", "Total GPU Compute Time"):
            s = _SECONDS.match(body)
            key = "host_walltime_s" if label == "Total Host Walltime" else "gpu_compute_total_s"
            result[key] = float(s.group(1)) if s else None
        elif "===" in line:  # the next block (e.g. "=== Explanations ===")
            break
    if result["throughput_qps"] is None:
        raise TrtexecError("trtexec's performance summary has no 'Throughput: N qps' line")
    return result


def images_per_second(summary: dict, batch: int) -> float:
    """One trtexec query is one execution of the whole batch."""
    return float(summary["throughput_qps"]) * int(batch)


def run(cmd: list[str], timeout_s: float) -> dict:
    """Run trtexec; its summary, or TrtexecError with the tail of its output."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise TrtexecError(f"{cmd[0]}: not found") from None
    except subprocess.TimeoutExpired:
        raise TrtexecError(f"trtexec ran past {timeout_s:.0f} s") from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = " | ".join(out.strip().splitlines()[-3:])
        raise TrtexecError(f"trtexec exited {proc.returncode}: {tail[:400]}")
    return parse_summary(out)

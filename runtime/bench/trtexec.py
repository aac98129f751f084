"""`fakedet bench --trtexec`: each measured TensorRT row beside trtexec on the same
plan, batch and input shape, measured in the same run (after fakedet's rows, so the
two never share the GPU)."""

from __future__ import annotations

from fakedet.package import ModelPackage

from . import trtexec_command as tx
from .inputs import sample_shape

TRTEXEC_ENTRY_SCHEMA = {
    "type": "object",
    "required": ["precision", "batch", "plan", "command", "trtexec_img_s", "fakedet_img_s", "ratio", "error"],
    "properties": {
        "precision": {"type": "string"},
        "batch": {"type": "integer", "minimum": 1},
        "plan": {"type": "string"},
        "command": {"type": "array", "items": {"type": "string"}},
        "trtexec_img_s": {"type": ["number", "null"]},
        "fakedet_img_s": {"type": "number"},
        "ratio": {"type": ["number", "null"]},
        "gpu_compute_ms": {"type": ["object", "null"]},
        "error": {"type": ["string", "null"]},
    },
}


def compare(pkg: ModelPackage, report: dict, settings, progress=None, runner=tx.run) -> list[dict]:
    """One entry per tensorrt row of `report`: trtexec's images/s on the same plan and
    fakedet/trtexec (1.0 = parity). A trtexec that is missing or fails gives entries
    with `error`, never an exception."""
    rows = [r for r in report["results"] if r["backend"] == "tensorrt"]
    if not rows:
        return []
    exe = tx.find_trtexec(None if settings.trtexec in (None, "auto") else settings.trtexec)
    shape, _ = sample_shape(pkg.manifest)
    out = []
    for r in rows:
        art = next(a for a in pkg.manifest.artifacts if a.file == r["artifact"])
        plan = str(pkg.path_of(art, verify=False))
        cmd = tx.command(exe or "trtexec", plan, pkg.manifest.input.name, (r["batch"], *shape),
                         settings.warmup_s, settings.duration_s * settings.repeats, settings.cuda_graph)
        entry = {"precision": r["precision"], "batch": r["batch"], "plan": r["artifact"], "command": cmd,
                 "trtexec_img_s": None, "fakedet_img_s": r["throughput_img_s"]["median"], "ratio": None,
                 "gpu_compute_ms": None, "error": None}
        if exe is None:
            entry["error"] = "trtexec not found (PATH, /usr/src/tensorrt/bin); pass --trtexec PATH"
        else:
            if progress:
                progress(f"trtexec {r['precision']} batch {r['batch']}")
            try:
                summary = runner(cmd, timeout_s=settings.warmup_s + settings.duration_s * settings.repeats + 120)
                entry["trtexec_img_s"] = tx.images_per_second(summary, r["batch"])
                entry["gpu_compute_ms"] = summary["sections"].get("GPU Compute Time")
                entry["ratio"] = entry["fakedet_img_s"] / entry["trtexec_img_s"] if entry["trtexec_img_s"] else None
            except tx.TrtexecError as e:
                entry["error"] = str(e)
        out.append(entry)
    return out


def format_lines(entries: list[dict]) -> list[str]:
    lines = []
    for e in entries:
        head = f"trtexec, same plan ({e['plan']}, {e['precision']}, batch {e['batch']}): "
        if e["error"]:
            lines.append(head + f"not measured: {e['error']}")
        else:
            lines.append(head + f"{e['trtexec_img_s']:.1f} img/s; fakedet {e['fakedet_img_s']:.1f} img/s "
                                f"= {e['ratio']:.3f}x trtexec")
    return lines

"""What reading provenance (C2PA, XMP, EXIF/PNG text) costs beside `predict`, on 1 MP JPEGs.

    .venv/bin/python benchmarks/provenance_cost.py [--repeats 30] [--threads 2] [--machine NAME]

A CNNDetection-style ResNet-50 package (torchvision, random init, no download; centre crop
224, fakedet/examples/input_spec.json) runs on ONNX Runtime CPU fp32. Three 1000x1000 JPEGs
(quality 90): plain, with an XMP DigitalSourceType, and C2PA-signed (c2pa-python, a
throwaway certificate; the validation hashes the whole file). Interleaved per repeat: the
runtime's predict of one image (decode, preprocess, inference) and read_provenance of the
same file; medians, and the ratio provenance / predict (target <= 5%).
Writes benchmarks/results/provenance_cost-<machine>.json, .md and .png.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "tests"))


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), platform.processor())


def build_package(work: Path) -> Path:
    import torch
    import torchvision

    from fakedet.cli import main

    out = work / "r50.fdet"
    if out.exists():
        return out
    work.mkdir(parents=True, exist_ok=True)
    model = torchvision.models.resnet50(num_classes=1).eval()
    onnx_path = work / "r50.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(onnx_path), input_names=["image"], output_names=["logit"],
                      dynamic_axes={"image": {0: "batch"}}, dynamo=False)
    assert main(["package", str(onnx_path), "--input-spec", str(REPO / "fakedet/examples/input_spec.json"),
                 "-o", str(out)]) == 0
    return out


def images(work: Path) -> dict[str, Path]:
    import c2pa
    from PIL import Image

    import provenance_helpers as ph

    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8))
    base = base.resize((250, 250)).resize((1000, 1000))  # photo-like smoothness: a typical JPEG size
    plain = ph.jpeg(base)
    chain, key = ph.throwaway_chain()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, key, None))
    manifest = {"claim_generator_info": [{"name": "bench", "version": "1"}], "assertions": [{"label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": ph.IPTC + "trainedAlgorithmicMedia"}]}}]}
    signed = io.BytesIO()
    with c2pa.Builder(manifest) as b:
        b.sign(signer, "image/jpeg", io.BytesIO(plain), signed)
    files = {"plain": plain, "xmp": ph.jpeg(base, xmp=ph.xmp_packet("trainedAlgorithmicMedia")), "c2pa": signed.getvalue()}
    out = {}
    for name, data in files.items():
        out[name] = work / f"{name}.jpg"
        out[name].write_bytes(data)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fakedet-provenance-bench")
    ap.add_argument("--machine", default="amd-epyc-2core")
    args = ap.parse_args()

    from fakedet.runtime import Detector
    from fakedet.runtime.provenance import read_provenance

    pkg = build_package(args.work)
    files = images(args.work)
    det = Detector.open(pkg, backend="ort-cpu", threads=args.threads)
    for p in files.values():  # warm-up: sessions, the C2PA library, page cache
        det.predict([p])
        read_provenance(p)
    t_predict = {k: [] for k in files}
    t_prov = {k: [] for k in files}
    for _ in range(args.repeats):
        for name, p in files.items():
            t0 = time.perf_counter()
            det.predict([p])
            t1 = time.perf_counter()
            rec = read_provenance(p)
            t2 = time.perf_counter()
            assert rec["error"] is None, rec
            t_predict[name].append((t1 - t0) * 1e3)
            t_prov[name].append((t2 - t1) * 1e3)
    det.close()
    rows = {}
    for name in files:
        pm, vm = float(np.median(t_predict[name])), float(np.median(t_prov[name]))
        rows[name] = {"bytes": files[name].stat().st_size, "predict_ms_median": pm, "provenance_ms_median": vm,
                      "provenance_ms_p90": float(np.percentile(t_prov[name], 90)), "ratio": vm / pm,
                      "summary": read_provenance(files[name])["summary"]}
    report = {"cpu": cpu_name(), "load": os.getloadavg(), "threads": args.threads, "repeats": args.repeats,
              "model": "torchvision resnet50 (random init), centre crop 224, ONNX Runtime CPU fp32, batch 1",
              "images": "1000x1000 JPEG quality 90", "target_ratio": 0.05, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"provenance_cost-{args.machine}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Provenance cost beside predict ({report['cpu']}, {args.threads} threads, load "
             f"{', '.join(f'{x:.2f}' for x in report['load'])})", "",
             "| image | bytes | predict ms (median) | provenance ms (median / p90) | ratio | summary |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['bytes']} | {r['predict_ms_median']:.1f} | {r['provenance_ms_median']:.2f} / "
                     f"{r['provenance_ms_p90']:.2f} | {100 * r['ratio']:.1f}% | {r['summary']} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    names = list(rows)
    ax.bar(names, [100 * rows[n]["ratio"] for n in names])
    ax.axhline(5, color="k", ls="--", lw=0.8, label="target 5%")
    ax.set(ylabel="provenance / predict time (%)", title="provenance reading on 1 MP JPEGs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=90)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

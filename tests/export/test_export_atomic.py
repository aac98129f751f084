"""An export killed mid-write (SIGKILL after an ONNX file is in the staging directory)
leaves no partial package, and an existing package exactly as it was."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

from fakedet.package import ModelPackage  # noqa: E402

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import torch
    from torch import nn
    from fakedet.export.pipeline import ExportOptions, export_package
    from fakedet.export.source import ExportSource
    from fakedet.manifest import InputSpec, Preprocess

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 1)
        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    dest, seed, kill_after = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(seed)
    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(16, 16)))
    cfg = {"arch": "tiny", "model_kwargs": {}, "input": spec.to_dict(), "threshold": 0.5, "seed": seed}

    def after_onnx(path):
        if kill_after == "kill" and os.path.getsize(path) > 0:
            print("killing after", path.name, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        if kill_after == "raise":
            raise RuntimeError("injected failure after " + path.name)

    export_package(ExportSource(Tiny().eval(), cfg, None), dest, ExportOptions(precision="both"),
                   echo=lambda m: None, after_onnx=after_onnx)
    print("done", flush=True)
""")


def _run(tmp_path, dest, seed, mode):
    script = tmp_path / "export_script.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), str(dest), str(seed), mode], capture_output=True, text=True,
                          timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_killed_export_leaves_old_package_and_no_partial_one(tmp_path):
    dest = tmp_path / "m.fdet"
    ok = _run(tmp_path, dest, 0, "none")
    assert ok.returncode == 0, ok.stderr
    before = _snapshot(dest)
    assert {"manifest.json", "model.onnx", "model.fp16.onnx", "parity/report.json"} <= set(before)

    killed = _run(tmp_path, dest, 1, "kill")
    assert killed.returncode == -signal.SIGKILL and "killing after model.onnx" in killed.stdout
    assert _snapshot(dest) == before  # the old package, byte for byte
    ModelPackage.open(dest).verify()
    # what the kill leaves is a hidden staging directory, never a second package
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("m.fdet", "export_script.py")]
    assert all(n.startswith(".m.fdet.") and n.endswith(".staging") for n in leftovers)
    assert leftovers  # the kill did happen mid-write

    fresh = tmp_path / "fresh.fdet"
    killed = _run(tmp_path, fresh, 1, "kill")
    assert killed.returncode == -signal.SIGKILL
    assert not fresh.exists()


def test_injected_failure_after_onnx_cleans_up(tmp_path):
    """In-process: an exception after model.onnx is staged discards the staging directory."""
    from torch import nn

    from fakedet.export.pipeline import ExportOptions, export_package
    from fakedet.export.source import ExportSource
    from fakedet.manifest import InputSpec, Preprocess

    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(16, 16)))
    cfg = {"arch": "tiny", "model_kwargs": {}, "input": spec.to_dict(), "threshold": 0.5}
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1)).eval()
    seen = []

    def fail(path):
        seen.append(path.name)
        raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected failure"):
        export_package(ExportSource(model, cfg, None), tmp_path / "x.fdet", ExportOptions(precision="fp32"),
                       echo=lambda m: None, after_onnx=fail)
    assert seen == ["model.onnx"]
    assert list(tmp_path.iterdir()) == []

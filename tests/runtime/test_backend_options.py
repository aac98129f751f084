"""Backend options through the Detector and the bench, and the output check at open."""

import json

import numpy as np
import pytest
from conftest import build_tiny_onnx, write_spec

from fakedet.cli import main
from fakedet.errors import BackendError, PackageError
from fakedet.runtime import Detector
from fakedet.runtime.backends.registry import split_options


def test_an_explicit_backend_refuses_an_option_it_lacks(tiny_package):
    with pytest.raises(BackendError) as e:
        Detector.open(tiny_package[0], backend="ort-cpu", threds=1)
    msg = str(e.value)
    assert msg.startswith("ort-cpu: unknown option threds (known: ") and "threads" in msg and "spin" in msg


def test_auto_passes_what_the_chosen_backend_takes_and_refuses_typos(tiny_package):
    with Detector.open(tiny_package[0], threads=1, spin=False) as det:
        assert det.backend.options["threads"] == 1 and det.backend.options["spin"] is False
    with pytest.raises(BackendError, match="unknown backend option threds .*known: .*contexts.*threads"):
        Detector.open(tiny_package[0], threds=1)


def test_settings_for_any_backend_are_split_by_what_each_takes():
    assert split_options("tensorrt", {"threads": 2, "cuda_graph": True}) == ({"cuda_graph": True}, {"threads": 2})
    assert split_options("ort-cpu", {"threads": 2, "cuda_graph": True}) == ({"threads": 2}, {"cuda_graph": True})
    with pytest.raises(BackendError, match="unknown backend options colour, thread "):
        split_options("ort-cpu", {"thread": 2, "colour": 1})


def test_a_model_whose_output_contradicts_the_manifest_is_refused_at_open(tmp_path):
    onnx_path = tmp_path / "two.onnx"
    build_tiny_onnx(onnx_path, two_class=True)
    spec = write_spec(tmp_path / "spec.json", output={"name": "output", "kind": "two-class-logits", "fake_index": 1})
    pkg = tmp_path / "two.fdet"
    assert main(["package", str(onnx_path), "--input-spec", str(spec), "-o", str(pkg)]) == 0
    with Detector.open(pkg) as det:
        assert det.predict([np.zeros((16, 16, 3), np.uint8)])[0].ok
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["output"] = {"name": "output", "kind": "logit", "fake_index": 1}
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="output 'output' has 2 values per image; the manifest says one logit"):
        Detector.open(pkg)

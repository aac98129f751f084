"""The traps a newcomer met on the training side (issue: the first ten minutes), one test
each: a random CLIP backbone said once and recorded; no open_clip "initialized randomly"
when weights follow; export refusing to drop a calibrated package; progress on train and
export; checkpoint file modes; the import mismatch message."""

from __future__ import annotations

import json
import logging
import os
import re
import stat

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("onnx")

from fakedet.cli import main  # noqa: E402
from test_train_cli import make_dataset  # noqa: E402
from torch_helpers import one_thread, register_clip_config, tiny_clip_config  # noqa: F401,E402  (fixture)

RANDOM_INIT = "initialized randomly"


@pytest.fixture(scope="module")
def clip_name(tmp_path_factory):
    return register_clip_config(tmp_path_factory.mktemp("clipcfg"), "fakedet-newcomer-clip",
                                tiny_clip_config(width=16, image_size=16, patch_size=8))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, clip_name):
    """clip-linear trained as the old README did: --pretrained none (its default), with the
    progress bar on, stderr and log records kept for the tests below."""
    tmp = tmp_path_factory.mktemp("newcomer-train")
    data = make_dataset(tmp / "data", n=4, size=(20, 20))
    old_mask = os.umask(0o022)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(["train", "--arch", "clip-linear", "--model-opt", f"clip_model={clip_name}", "--data",
                       str(data), "--out", str(tmp / "run"), "--epochs", "2", "--batch", "4", "--val-fraction",
                       "0.25", "--cache-dir", str(tmp / "cache")])
    finally:
        logging.getLogger().removeHandler(handler)
        os.umask(old_mask)
    assert rc == 0, err.getvalue()
    return tmp, err.getvalue(), [r.getMessage() for r in records]


def test_a_random_clip_backbone_is_said_once_and_recorded(trained):
    tmp, err, logged = trained
    notes = [line for line in err.splitlines() if "random" in line and "backbone" in line]
    assert len(notes) == 1 and notes[0].startswith("fakedet: WARNING: clip-linear") and "--pretrained" in notes[0]
    assert not any(RANDOM_INIT in m for m in logged) and RANDOM_INIT not in err
    config = json.loads((tmp / "run" / "best" / "config.json").read_text())
    assert config["backbone_weights"] == "none"


def test_train_shows_a_total_and_one_validation_line_per_epoch(trained):
    _, err, _ = trained
    epochs = [line for line in err.splitlines() if re.match(r"epoch \d/2: train loss", line)]
    assert [e.split(":")[0] for e in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("val balanced accuracy" in e for e in epochs)
    assert re.search(r"\| \d+/\d+ \[", err), "the progress bar has no total"  # "| 0/3 [", not "0batch ["


def test_checkpoints_are_readable_like_any_file(trained):
    tmp, _, _ = trained
    for name in ("model.safetensors", "config.json"):
        mode = stat.S_IMODE((tmp / "run" / "best" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))


@pytest.fixture(scope="module")
def exported(trained):
    tmp, _, _ = trained
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["export", str(tmp / "run" / "best"), "-o", str(tmp / "det.fdet"), "--sample-size", "16"])
    assert rc == 0, err.getvalue()
    return tmp / "det.fdet", err.getvalue()


def test_export_of_a_random_backbone_says_so_and_the_manifest_and_info_record_it(exported, capsys):
    pkg, err = exported
    assert sum("random" in line and "backbone" in line for line in err.splitlines()) == 1
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["provenance"]["backbone_weights"] == "none"
    assert main(["info", str(pkg)]) == 0
    out = capsys.readouterr().out
    backbone = [line for line in out.splitlines() if line.startswith("backbone ")]
    assert len(backbone) == 1 and " none " in backbone[0] + " "


def test_info_parity_line_is_whole(exported, capsys):
    pkg, _ = exported
    assert main(["info", str(pkg)]) == 0
    parity = [line for line in capsys.readouterr().out.splitlines() if line.startswith("parity ")]
    assert len(parity) == 1 and "onnx-fp32" in parity[0] and "onnx-fp16" in parity[0]
    assert parity[0].endswith(("ok", "FAILED")), parity[0]


def test_export_says_each_phase_before_it_runs(exported):
    _, err = exported
    lines = err.splitlines()
    order = ["loading ", "PyTorch reference logits", "tracing the model to ONNX", "parity fp32:",
             "converting to fp16", "writing model.onnx"]
    at = [next(i for i, line in enumerate(lines) if want in line) for want in order]
    assert at == sorted(at), lines


def test_export_refuses_to_drop_a_calibrated_package_without_force(exported, tmp_path, capsys):
    pkg, _ = exported
    import shutil

    target = tmp_path / "calibrated.fdet"
    shutil.copytree(pkg, target)
    manifest = json.loads((target / "manifest.json").read_text())
    for kind, file in (("onnx-int8-qdq", "model.int8.onnx"), ("calibration-report", "calibration.json")):
        (target / file).write_bytes(b"x")
        manifest["artifacts"].append({"file": file, "kind": kind, "sha256": "0" * 64, "size": 1})
    (target / "manifest.json").write_text(json.dumps(manifest))
    checkpoint = str(pkg.parent / "run" / "best")
    assert main(["export", checkpoint, "-o", str(target), "--sample-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "model.int8.onnx" in err and "calibration.json" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1 and (target / "model.int8.onnx").exists()
    assert main(["export", checkpoint, "-o", str(target), "--sample-size", "16", "--force"]) == 0
    err = capsys.readouterr().err
    assert "model.int8.onnx, calibration.json will be gone" in err and not (target / "model.int8.onnx").exists()


def test_import_with_backbone_weights_never_claims_a_random_init(tmp_path, clip_name, caplog, capsys):
    from safetensors.torch import save_file

    clip = open_clip.create_model(clip_name, pretrained=None)
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(tmp_path / "clip.safetensors"))
    torch.save({"weight": torch.randn(1, clip.visual.output_dim), "bias": torch.zeros(1)}, tmp_path / "fc.pth")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rc = main(["import", "universal-fake-detect", str(tmp_path / "fc.pth"), "--backbone-weights",
                   str(tmp_path / "clip.safetensors"), "--clip-model", clip_name, "-o", str(tmp_path / "ck")])
        assert rc == 0
        assert main(["export", str(tmp_path / "ck"), "-o", str(tmp_path / "ufd.fdet"), "--precision", "fp32"]) == 0
    err = capsys.readouterr().err
    assert RANDOM_INIT not in caplog.text and RANDOM_INIT not in err
    assert not any("random" in line and "backbone" in line for line in err.splitlines())
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["backbone_weights"] == str(tmp_path / "clip.safetensors")


def test_import_mismatch_names_a_misshapen_tensor_once():
    from fakedet.errors import PackageError
    from fakedet.train.importers.mapping import map_onto

    target = {"head.weight": torch.zeros(1, 8), "head.bias": torch.zeros(1)}
    source = {"head.weight": torch.zeros(1, 9), "head.bias": torch.zeros(1)}
    with pytest.raises(PackageError) as e:
        map_onto(source, target, lambda k: k, "w.pth", "the head")
    message = str(e.value)
    assert "head.weight (1, 9) vs head.weight (1, 8)" in message
    assert "not in the file" not in message and message.count("head.weight") == 2

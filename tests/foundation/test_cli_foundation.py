"""The root CLI: package, info, predict, and their handling of bad input."""

import io
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import REPO, build_tiny_onnx, save_image, write_spec
from fakedet.cli import main

FAKEDET = [sys.executable, "-m", "fakedet"]


def run(args, **kw):
    return subprocess.run(FAKEDET + [str(a) for a in args], capture_output=True, text=True, cwd=REPO, **kw)


def test_predict_must_show_four_lines_one_score_three_errors(tmp_path, tiny_package):
    pkg, _ = tiny_package
    good = save_image(tmp_path / "good.png", seed=2)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buf, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buf.getvalue()[:200])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    r = run(["predict", pkg, good, tmp_path / "truncated.jpg", tmp_path / "empty.jpg", tmp_path / "notes.txt", "--json"])
    assert r.returncode == 1, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4
    rows = [json.loads(line) for line in lines]
    assert [r_["error"] is None for r_ in rows] == [True, False, False, False]
    assert 0.0 <= rows[0]["score"] <= 1.0
    assert "truncated" in rows[1]["error"] and "empty" in rows[2]["error"] and "not an image" in rows[3]["error"]
    assert "1 scored" in r.stderr and "3 failed" in r.stderr
    assert "Traceback" not in r.stderr


def test_predict_directory_table_exit_zero(tmp_path, tiny_package):
    pkg, _ = tiny_package
    for i in range(3):
        save_image(tmp_path / "imgs" / "sub" / f"{i}.png", seed=i)
    (tmp_path / "imgs" / "readme.md").write_text("skipped: not an image extension")
    r = run(["predict", pkg, tmp_path / "imgs"])
    assert r.returncode == 0, r.stderr
    body = r.stdout.strip().splitlines()
    assert body[0].split() == ["P(fake)", "verdict", "path"]
    assert len(body) == 4


def test_usage_errors_exit_two(tmp_path, tiny_package):
    pkg, _ = tiny_package
    r = run(["predict", pkg])
    assert r.returncode == 2
    (tmp_path / "empty-dir").mkdir()
    r = run(["predict", pkg, tmp_path / "empty-dir"])
    assert r.returncode == 2 and "no images found" in r.stderr
    r = run(["predict", pkg, tmp_path / "typo.jpg", "--json"])
    assert r.returncode == 1 and "no such file" in json.loads(r.stdout)["error"]


def test_broken_packages_one_clear_line(tmp_path, tiny_package):
    pkg, _ = tiny_package
    img = save_image(tmp_path / "a.png")
    manifest = json.loads((pkg / "manifest.json").read_text())

    # hash mismatch
    data = (pkg / "model.onnx").read_bytes()
    (pkg / "model.onnx").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    r = run(["predict", pkg, img])
    assert r.returncode == 2 and "does not match its sha256" in r.stderr and "Traceback" not in r.stderr
    assert str(pkg) in r.stderr
    (pkg / "model.onnx").write_bytes(data)

    # unknown schema version
    (pkg / "manifest.json").write_text(json.dumps(dict(manifest, schema_version=99)))
    r = run(["info", pkg])
    assert r.returncode == 2 and "unknown schema_version 99" in r.stderr and "Traceback" not in r.stderr

    # unknown preprocessing policy
    bad = json.loads(json.dumps(manifest))
    bad["input"]["preprocess"]["policy"] = "squash"
    (pkg / "manifest.json").write_text(json.dumps(bad))
    r = run(["predict", pkg, img])
    assert r.returncode == 2 and "unknown preprocessing policy 'squash'" in r.stderr

    # missing artifact
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    (pkg / "model.onnx").rename(tmp_path / "moved.onnx")
    r = run(["predict", pkg, img])
    assert r.returncode == 2 and "artifact 'model.onnx'" in r.stderr and "missing" in r.stderr

    # not JSON
    (pkg / "manifest.json").write_text("{oops")
    r = run(["info", pkg])
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_bare_onnx_is_self_describing(tmp_path, tiny_package):
    pkg, _ = tiny_package
    img = save_image(tmp_path / "a.png")
    a = run(["predict", pkg, img, "--json"])
    b = run(["predict", pkg / "model.onnx", img, "--json"])
    assert a.returncode == b.returncode == 0, b.stderr
    assert json.loads(a.stdout)["score"] == json.loads(b.stdout)["score"]
    # an ONNX without a manifest says how to wrap it
    plain = tmp_path / "plain.onnx"
    build_tiny_onnx(plain)
    r = run(["predict", plain, img])
    assert r.returncode == 2 and "fakedet package" in r.stderr


def test_zipped_package(tmp_path, tiny_package):
    import shutil

    pkg, _ = tiny_package
    img = save_image(tmp_path / "a.png")
    zipped = shutil.make_archive(str(tmp_path / "tiny.fdet"), "zip", root_dir=pkg)
    r = run(["predict", zipped, img, "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["error"] is None


def test_package_rejects_mismatched_spec(tmp_path, tiny_onnx):
    onnx_path, _ = tiny_onnx
    spec = write_spec(tmp_path / "s.json", output={"name": "output", "kind": "two-class-logits"})
    r = run(["package", onnx_path, "--input-spec", spec, "-o", tmp_path / "x.fdet"])
    assert r.returncode == 2 and "1 values per image" in r.stderr
    assert not (tmp_path / "x.fdet").exists()
    spec = write_spec(tmp_path / "s.json", input={"name": "input", "preprocess": {"policy": "center-crop", "size": [32, 32]}})
    r = run(["package", onnx_path, "--input-spec", spec, "-o", tmp_path / "x.fdet"])
    assert r.returncode == 2 and "16x16" in r.stderr
    spec.write_text(json.dumps({"input": {"preprocess": {"policy": "center-crop"}}, "bogus": 1}))
    r = run(["package", onnx_path, "--input-spec", spec, "-o", tmp_path / "x.fdet"])
    assert r.returncode == 2 and "unknown field(s) ['bogus']" in r.stderr


def test_example_spec_packages_a_224_model(tmp_path):
    from fakedet.spec_file import EXAMPLE

    onnx_path = tmp_path / "m.onnx"
    build_tiny_onnx(onnx_path, size=224, input_name="image", output_name="logit")
    assert main(["package", str(onnx_path), "--input-spec", str(EXAMPLE), "-o", str(tmp_path / "m.fdet")]) == 0


def test_info_lists_artifacts_and_backends(tiny_package):
    pkg, _ = tiny_package
    r = run(["info", pkg])
    assert r.returncode == 0, r.stderr
    assert "onnx-fp32" in r.stdout and "ok" in r.stdout
    assert "ort-cpu" in r.stdout and "auto -> ort-cpu" in r.stdout
    j = run(["info", pkg, "--json"])
    data = json.loads(j.stdout)
    assert data["manifest"]["artifacts"][0]["kind"] == "onnx-fp32"
    assert data["verification"] == {"model.onnx": "ok"}


def test_help_and_version():
    r = run(["--help"])
    assert r.returncode == 0
    for cmd in ("package", "info", "predict", "train", "export", "build", "calibrate", "bench", "eval", "align"):
        assert cmd in r.stdout
    r = run(["predict", "--help"])
    assert r.returncode == 0 and "Examples:" in r.stdout
    r = run(["--version"])
    assert r.returncode == 0 and "fakedet, version" in r.stdout


def test_runtime_import_does_not_import_torch():
    code = "import sys, fakedet.runtime, fakedet.runtime.cli; assert 'torch' not in sys.modules, 'torch imported'; assert 'onnx' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

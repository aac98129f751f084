"""Atomic package writes and manifest validation."""

import json

import pytest

from fakedet.atomic import sha256_file
from fakedet.errors import ManifestError, PackageError
from fakedet.manifest import Artifact, Manifest
from fakedet.package import ModelPackage, PackageWriter


def _manifest():
    return Manifest(name="m")


def test_commit_and_reopen(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    dest = tmp_path / "m.fdet"
    with PackageWriter(dest, _manifest()) as w:
        w.add_file(src, "a.json", "calibration-report")
    pkg = ModelPackage.open(dest)
    (art,) = pkg.manifest.artifacts
    assert art.sha256 == sha256_file(src) and art.size == 3
    pkg.verify()


def test_failure_inside_writer_leaves_nothing(tmp_path):
    dest = tmp_path / "m.fdet"
    with pytest.raises(RuntimeError):
        with PackageWriter(dest, _manifest()) as w:
            w.staged_path("a.json").write_bytes(b"half")
            raise RuntimeError("killed")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_update_keeps_old_until_commit_and_links_unchanged(tmp_path):
    dest = tmp_path / "m.fdet"
    src = tmp_path / "a.bin"
    src.write_bytes(b"v1")
    with PackageWriter(dest, _manifest()) as w:
        w.add_file(src, "a.json", "calibration-report")
    old = ModelPackage.open(dest)
    w = PackageWriter(dest, old.manifest, base=old)
    w.staged_path("b.cache").write_text("TRT-100300-EntropyCalibration2\n")
    w.add_file(None, "b.cache", "trt-calibration-cache", method="entropy")
    assert [a.file for a in ModelPackage.open(dest).manifest.artifacts] == ["a.json"]  # not yet
    w.commit()
    new = ModelPackage.open(dest)
    assert sorted(a.file for a in new.manifest.artifacts) == ["a.json", "b.cache"]
    new.verify()
    assert new.manifest.artifact("trt-calibration-cache").attrs == {"method": "entropy"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_manifest_round_trip_and_errors():
    m = Manifest(name="x")
    m.put_artifact(Artifact("plans/p.plan", "trt-plan", "0" * 64, 10, {"trt_version": "10.3.0"}))
    again = Manifest.from_json(m.to_json())
    assert again.to_dict() == m.to_dict()
    d = m.to_dict()
    with pytest.raises(ManifestError, match="unknown artifact kind"):
        Manifest.from_dict(dict(d, artifacts=[dict(d["artifacts"][0], kind="pickle")]))
    with pytest.raises(ManifestError, match="leaves the package"):
        Manifest.from_dict(dict(d, artifacts=[dict(d["artifacts"][0], file="../x")]))
    with pytest.raises(ManifestError, match="missing required field 'input'"):
        Manifest.from_dict({k: v for k, v in d.items() if k != "input"})


def test_not_a_package(tmp_path):
    with pytest.raises(PackageError, match="no manifest.json"):
        ModelPackage.open(tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(PackageError, match="not a model package"):
        ModelPackage.open(tmp_path / "x.txt")
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    with pytest.raises(PackageError, match="not a loadable ONNX"):
        ModelPackage.open(tmp_path / "bad.onnx")
    assert json.loads(json.dumps({"ok": 1}))


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    from fakedet.atomic import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == 0o666 & ~mask

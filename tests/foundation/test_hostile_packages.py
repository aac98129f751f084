"""Hostile model packages: each is one line on stderr and exit 2, with nothing written outside
the temp dir and nothing left in it; FIFOs are refused rather than read forever."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny_onnx, save_image, write_spec
from fakedet.atomic import sha256_file
from fakedet.cli import main
from fakedet.package import ModelPackage
from fakedet.runtime.imageio import walk


def _edit(pkg: Path, change) -> Path:
    m = json.loads((pkg / "manifest.json").read_text())
    change(m)
    (pkg / "manifest.json").write_text(json.dumps(m))
    return pkg


def _set(path: str, value):
    def change(m):
        *head, last = path.split(".")
        d = m
        for k in head:
            d = d[k]
        d[last] = value

    return change


def _deep(n):
    d = {}
    cur = d
    for _ in range(n):
        cur["x"] = {}
        cur = cur["x"]
    return d


def _zip(pkg: Path, out: Path, extra=(), method=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(out, "w", method) as zf:
        for f in sorted(pkg.iterdir()):
            zf.write(f, f.name)
        for name, data in extra:
            zf.writestr(name, data)
    return out


def _patch_zip_member(path: Path, member: bytes, flag_or: int = 0, method: int | None = None) -> Path:
    """Set bits in the general-purpose flag and/or the compression method of `member`, in its
    local header and its central-directory entry (what an encrypted or Deflate64 zip carries)."""
    b = bytearray(path.read_bytes())
    for sig, flag_at, method_at, name_len_at, header in ((b"PK\x03\x04", 6, 8, 26, 30), (b"PK\x01\x02", 8, 10, 28, 46)):
        pos = b.find(sig)
        while pos != -1:
            n = int.from_bytes(b[pos + name_len_at : pos + name_len_at + 2], "little")
            if bytes(b[pos + header : pos + header + n]) == member:
                b[pos + flag_at] |= flag_or
                if method is not None:
                    b[pos + method_at : pos + method_at + 2] = method.to_bytes(2, "little")
            pos = b.find(sig, pos + 4)
    path.write_bytes(bytes(b))
    return path


def _external_data_model(folder: Path, location: str):
    """The tiny model with its tensors moved to `location` (relative to the model's folder)."""
    import onnx

    build_tiny_onnx(folder / "ext-src.onnx")
    m = onnx.load(str(folder / "ext-src.onnx"))
    (folder / "ext-src.onnx").unlink()
    for init in m.graph.initializer:
        data = onnx.numpy_helper.to_array(init).tobytes()
        init.ClearField("float_data")
        init.ClearField("raw_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        offset = _append(folder, location, data)
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(data)))):
            init.external_data.add(key=key, value=value)
    return m


def _save(model, path: Path) -> None:
    path.write_bytes(model.SerializeToString())  # as an attacker would: no checks on the way


def _append(folder: Path, location: str, data: bytes) -> int:
    target = (folder / location)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "ab") as f:
        offset = f.tell()
        pad = (-offset) % 4096
        f.write(b"\x00" * pad)
        f.write(data)
    return offset + pad


def _with_model(pkg: Path, model) -> Path:
    _save(model, pkg / "model.onnx")
    return _edit(pkg, lambda m: m["artifacts"][0].update(sha256=sha256_file(pkg / "model.onnx"),
                                                        size=(pkg / "model.onnx").stat().st_size))


def _unlisted_external(pkg):
    return _with_model(pkg, _external_data_model(pkg, "weights.bin"))


def _escaping_external(pkg):
    return _with_model(pkg, _external_data_model(pkg, "../outside.bin"))


def _outward_symlink(pkg):
    outside = pkg.parent / "elsewhere.onnx"
    shutil.copy(pkg / "model.onnx", outside)
    (pkg / "model.onnx").unlink()
    (pkg / "model.onnx").symlink_to(outside)
    return pkg


def _deep_folder(pkg):
    # on tmpfs where there is one: 1,100 nested folders cost seconds to remove on some disks
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="fakedet-test-deep-", dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else pkg.parent
    top = base / "deep"
    fd = os.open(base, os.O_RDONLY)
    os.mkdir("deep", dir_fd=fd)
    for i in range(1100):
        nfd = os.open("deep" if i == 0 else "d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
        os.mkdir("d", dir_fd=fd)
    os.close(fd)
    return top


def _zip_bomb(pkg):
    (pkg / "model.onnx").write_bytes(b"\x00" * (60 << 20))  # 60 MB of zeros: ~60 KB deflated
    _edit(pkg, lambda m: m["artifacts"][0].update(sha256=sha256_file(pkg / "model.onnx"), size=60 << 20))
    return _zip(pkg, pkg.parent / "bomb.fdet.zip")


def _zip_bad_manifest(pkg):
    _edit(pkg, _set("input.preprocess.size", [10**6, 10**6]))
    return _zip(pkg, pkg.parent / "bad.fdet.zip")


def _zip_missing_member(pkg):
    z = pkg.parent / "missing.fdet.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(pkg / "manifest.json", "manifest.json")
    return z


def _zip_slip(pkg):
    z = pkg.parent / "slip.fdet.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(pkg.iterdir()):
            zf.write(f, f"../{f.name}")
    return z


def _zip_encrypted(pkg):
    return _patch_zip_member(_zip(pkg, pkg.parent / "enc.fdet.zip", method=zipfile.ZIP_STORED), b"model.onnx", flag_or=1)


def _zip_deflate64(pkg):
    return _patch_zip_member(_zip(pkg, pkg.parent / "d64.fdet.zip"), b"model.onnx", method=9)


def _big_manifest(pkg):
    return _edit(pkg, _set("provenance", {"padding": "x" * (50 << 20)}))


def _nan_std(pkg):
    text = (pkg / "manifest.json").read_text()
    m = json.loads(text)
    m["input"]["std"] = ["NAN_HERE", 0.25, 0.25]
    (pkg / "manifest.json").write_text(json.dumps(m).replace('"NAN_HERE"', "NaN"))
    return pkg


CASES = {
    "resize_shorter 10**6": (lambda p: _edit(p, lambda m: m["input"]["preprocess"].update(
        policy="resize-center-crop", resize_shorter=10**6)), "resize_shorter must lie in"),
    "size 10**6": (lambda p: _edit(p, _set("input.preprocess.size", [10**6, 10**6])), "size must lie in"),
    "max_pixels 10**18": (lambda p: _edit(p, _set("input.preprocess.max_pixels", 10**18)), "max_pixels must lie in"),
    "threshold null": (lambda p: _edit(p, _set("threshold.value", None)), "value must be a finite number"),
    "max_pixels '100'": (lambda p: _edit(p, _set("input.preprocess.max_pixels", "100")), "max_pixels must be an integer"),
    "output []": (lambda p: _edit(p, _set("output", [])), "output: expected a JSON object"),
    "dynamic_axes 5": (lambda p: _edit(p, _set("input.dynamic_axes", 5)), "dynamic_axes must be a list"),
    "NaN std": (_nan_std, "NaN is not a JSON number"),
    "600-deep JSON": (lambda p: _edit(p, _set("provenance", _deep(600))), "nested deeper than"),
    "50 MB manifest": (_big_manifest, "more than the"),
    "unlisted ONNX external data": (_unlisted_external, "reads external data 'weights.bin' that the manifest does not list"),
    "ONNX external data outside": (_escaping_external, "reads external data '../outside.bin'"),
    "outward symlink": (_outward_symlink, "link leading outside the package"),
    "1,100-deep folder": (_deep_folder, "no manifest.json"),
    "zip bomb": (_zip_bomb, "a zip bomb?"),
    "zip with an invalid manifest": (_zip_bad_manifest, "size must lie in"),
    "zip missing a listed member": (_zip_missing_member, "missing from the zip"),
    "zip entries leaving the folder": (_zip_slip, "zip holds no manifest.json"),
    "encrypted zip": (_zip_encrypted, "is encrypted"),
    "Deflate64 zip": (_zip_deflate64, "compression method 9"),
    "escape sequence in a field": (lambda p: _edit(p, _set("input.preprocess.policy", "\x1b[2J\x1b]0;pwned\x07")),
                                   "unknown preprocessing policy '\\x1b[2J"),
}  # fmt: skip


def _snapshot(root: Path, tmp_dir: Path) -> dict:
    """Every path below `root` (but the temp dir) with its size and modification time."""
    skip = str(tmp_dir)
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in walk(root)
            if not (str(p) == skip or str(p).startswith(skip + os.sep))}  # fmt: skip


def _remove_deep(top: Path) -> None:
    """Remove the 1,100-deep chain of d/ folders with relative steps (pytest's own recursive
    cleanup would overflow; absolute paths would make each step walk the whole chain)."""
    cwd = os.getcwd()
    try:
        os.chdir(top)
        depth = 0
        while os.path.isdir("d"):
            os.chdir("d")
            depth += 1
        for _ in range(depth):
            os.chdir("..")
            os.rmdir("d")
    finally:
        os.chdir(cwd)
    top.rmdir()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_package_is_one_line_and_exit_2(case, tmp_path, tiny_package, capsys, monkeypatch):
    pkg, _ = tiny_package
    make, expected = CASES[case]
    target = make(pkg)
    img = save_image(tmp_path / "img.png", seed=3)
    tmp_dir = tmp_path / "tmpdir"
    tmp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_dir))
    before = _snapshot(tmp_path, tmp_dir)
    capsys.readouterr()
    try:
        assert main(["predict", str(target), str(img)]) == 2
        assert _snapshot(tmp_path, tmp_dir) == before  # nothing written outside the temp dir
    finally:
        if case == "1,100-deep folder":  # before pytest's own (recursive) cleanup meets it
            _remove_deep(target)
            if target.parent.name.startswith("fakedet-test-deep-"):
                target.parent.rmdir()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fakedet: error: "), err[:500]
    assert expected in lines[0] and "\x1b" not in err
    assert list(tmp_dir.iterdir()) == []  # nothing left in the temp dir


def test_zip_unpacks_only_listed_members(tmp_path, tiny_package, monkeypatch):
    pkg, _ = tiny_package
    z = _zip(pkg, tmp_path / "padded.fdet.zip", extra=[("zeros.bin", b"\x00" * (200 << 20)), ("notes/x.txt", b"hi")])
    assert z.stat().st_size < 1 << 20
    tmp_dir = tmp_path / "tmpdir"
    tmp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_dir))
    with ModelPackage.open(z) as opened:
        unpacked = sorted(p.name for p in walk(tmp_dir))
        assert sum(p.stat().st_size for p in walk(tmp_dir) if p.is_file()) < 1 << 20
        opened.verify()
    assert "zeros.bin" not in unpacked and "notes" not in unpacked and "model.onnx" in unpacked
    assert list(tmp_dir.iterdir()) == []
    img = save_image(tmp_path / "img.png", seed=3)
    assert main(["predict", str(z), str(img), "-q"]) == 0


def test_external_data_listed_by_package_is_hashed(tmp_path):
    """`fakedet package` of a model with external data lists the data file; a rewrite of it
    is caught like any artifact's (it once moved a logit from -2.6 to 47 unnoticed)."""
    _save(_external_data_model(tmp_path, "weights.bin"), tmp_path / "ext.onnx")
    spec = write_spec(tmp_path / "spec.json")
    out = tmp_path / "ext.fdet"
    assert main(["package", str(tmp_path / "ext.onnx"), "--input-spec", str(spec), "-o", str(out)]) == 0
    with ModelPackage.open(out) as p:
        kinds = {a.file: a.kind for a in p.manifest.artifacts}
    assert kinds == {"model.onnx": "onnx-fp32", "model.onnx.data": "onnx-external-data"}
    img = save_image(tmp_path / "img.png", seed=3)
    assert main(["predict", str(out), str(img), "-q"]) == 0
    data = bytearray((out / "model.onnx.data").read_bytes())
    data[-4:] = np.float32(47.0).tobytes()  # the Gemm bias
    (out / "model.onnx.data").write_bytes(bytes(data))
    assert main(["predict", str(out), str(img)]) == 2
    assert main(["info", str(out)]) == 2


def test_bare_onnx_with_external_data_is_refused(tmp_path):
    _save(_external_data_model(tmp_path, "weights.bin"), tmp_path / "ext.onnx")
    with pytest.raises(Exception, match="a bare .onnx cannot hash-check"):
        ModelPackage.open(tmp_path / "ext.onnx")


def test_info_prints_manifest_strings_without_terminal_escapes(tiny_package, capsys):
    pkg, _ = tiny_package
    _edit(pkg, lambda m: m.update(name="evil\x1b[2J\x1b]0;title\x07", architecture="arch\r\x1b[31m"))
    capsys.readouterr()
    assert main(["info", str(pkg), "--no-verify"]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out and "\r" not in out
    assert "evil\\x1b[2J" in out


def _fakedet(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "fakedet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_fifo_as_package_or_input_spec_is_refused(tmp_path, tiny_onnx):
    onnx_path, _ = tiny_onnx
    fifo = tmp_path / "pipe.fdet"
    os.mkfifo(fifo)
    img = save_image(tmp_path / "img.png", seed=3)
    r = _fakedet("predict", fifo, img)
    assert r.returncode == 2 and r.stderr.strip() == f"fakedet: error: {fifo}: not a regular file or directory"
    spec_fifo = tmp_path / "spec.json"
    os.mkfifo(spec_fifo)
    r = _fakedet("package", onnx_path, "--input-spec", spec_fifo, "-o", tmp_path / "x.fdet")
    assert r.returncode == 2 and r.stderr.strip() == f"fakedet: error: {spec_fifo}: not a regular file"
    assert not (tmp_path / "x.fdet").exists()
    r = _fakedet("predict", tmp_path / "nothing.fdet", fifo)  # a FIFO as an image is that item's error
    assert r.returncode == 2

"""Which package a scan ran, and how it reaches Ray workers.

The package's identity is one sha256: of the file's bytes for a zipped package or a bare
.onnx, of manifest.json for a package folder (the manifest lists every artifact's sha256,
which the runtime checks when it opens an artifact). A worker recomputes it and refuses
a package that differs from the driver's.

Shipping: by path (the package lies on storage every node sees at the same path) or as
bytes through Ray's object store (a zipped package or a bare .onnx: one file)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fakedet.atomic import sha256_file
from fakedet.errors import FakedetError
from fakedet.package_zip import MANIFEST_FILE
from fakedet.tempdirs import owned_dir

SHIP_MODES = ("auto", "path", "bytes")


def package_sha256(path) -> str:
    p = Path(path)
    target = p / MANIFEST_FILE if p.is_dir() else p
    try:
        return sha256_file(target)
    except OSError as e:
        raise FakedetError(f"{p}: cannot hash the package ({e.strerror or e})") from None


@dataclass
class ShippedPackage:
    """What the driver hands every scoring actor: a path, or a reference to the bytes."""

    sha256: str
    path: str | None = None
    blob: object = None  # {"ref": ObjectRef} (wrapped so Ray hands the reference, not the bytes)
    suffix: str = ""

    def materialize(self) -> tuple[str, str | None]:
        """On a worker: (a local path to open, a temporary folder to remove afterwards or None),
        after checking the sha256. The folder names its process, so one left by a killed actor
        is removed by the next actor that starts on that node."""
        if self.path is not None:
            got = package_sha256(self.path)
            if got != self.sha256:
                raise FakedetError(f"{self.path}: this worker sees package sha256 {got[:12]}..., the driver "
                                   f"{self.sha256[:12]}...: the nodes do not share the same package")
            return self.path, None
        import ray

        data = ray.get(self.blob["ref"])
        got = hashlib.sha256(data).hexdigest()
        if got != self.sha256:
            raise FakedetError(f"package bytes from the object store have sha256 {got[:12]}..., "
                               f"expected {self.sha256[:12]}...")
        folder = owned_dir("fakedet-scan-pkg-")
        path = folder / f"package{self.suffix}"
        path.write_bytes(data)
        return str(path), str(folder)


def ship(path, mode: str = "auto") -> ShippedPackage:
    """On the driver (Ray initialised): auto sends a package file as bytes and a folder by path."""
    p = Path(path).resolve()
    if mode not in SHIP_MODES:
        raise FakedetError(f"--ship {mode}: expected one of {', '.join(SHIP_MODES)}")
    sha = package_sha256(p)
    if mode == "path" or (mode == "auto" and p.is_dir()):
        return ShippedPackage(sha256=sha, path=str(p))
    if p.is_dir():
        raise FakedetError(f"{p}: a package folder travels by path (--ship path); to send bytes, zip it "
                           "(a zipped package is one file)")
    import ray

    data = p.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise FakedetError(f"{p}: changed while it was read")
    return ShippedPackage(sha256=sha, blob={"ref": ray.put(data)}, suffix=p.suffix)

"""Unpacking a zipped package: the manifest first, then only the artifacts it lists, each
within a size budget, so a zip bomb or a zip of unrelated files costs nothing."""

from __future__ import annotations

import shutil
import zipfile
import zlib
from pathlib import Path

from .errors import ManifestError, PackageError, first_line
from .manifest import Manifest
from .safe_json import MAX_JSON_BYTES

MANIFEST_FILE = "manifest.json"
MAX_UNZIPPED_BYTES = 32 << 30  # all listed artifacts together (a large model with plans and caches)
MAX_RATIO = 200  # uncompressed / compressed size of a member over 1 MB; weights compress ~1.1x
SUPPORTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                     zipfile.ZIP_LZMA: "lzma"}  # fmt: skip


def _member(zf: zipfile.ZipFile, name: str, path: Path, what: str) -> zipfile.ZipInfo:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise PackageError(path, f"{what} '{name}' listed in the manifest is missing from the zip") from None
    if info.is_dir():
        raise PackageError(path, f"zip entry '{name}' is a folder, not a file")
    if info.flag_bits & 0x1:
        raise PackageError(path, f"zip entry '{name}' is encrypted; packages are never encrypted")
    if info.compress_type not in SUPPORTED_METHODS:
        raise PackageError(path, f"zip entry '{name}' uses compression method {info.compress_type}, which fakedet "
                                 f"does not read (use {', '.join(SUPPORTED_METHODS.values())})")  # fmt: skip
    if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise PackageError(path, f"zip entry '{name}' expands {info.file_size // max(info.compress_size, 1)}x "
                                 f"(more than {MAX_RATIO}x: a zip bomb?)")  # fmt: skip
    return info


def _find_manifest(zf: zipfile.ZipFile, path: Path) -> str:
    """'' when manifest.json is at the top, else the one folder that holds it."""
    names = zf.namelist()
    if MANIFEST_FILE in names:
        return ""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    cand = [t for t in tops if f"{t}/{MANIFEST_FILE}" in names and t not in ("", ".", "..") and "\\" not in t]
    if len(cand) != 1:
        raise PackageError(path, f"zip holds no {MANIFEST_FILE}")
    return cand[0] + "/"


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zf.open(info) as src, open(target, "xb") as dst:  # zipfile stops at the declared size
        shutil.copyfileobj(src, dst, 1 << 20)


def unzip_listed(path: Path, dest: Path) -> Path:
    """Extract `path`'s manifest and the artifacts it lists into `dest`; returns the package
    root inside `dest`. Anything wrong is a PackageError; the caller removes `dest`."""
    try:
        with zipfile.ZipFile(path) as zf:
            prefix = _find_manifest(zf, path)
            info = _member(zf, prefix + MANIFEST_FILE, path, "the manifest")
            if info.file_size > MAX_JSON_BYTES:
                raise PackageError(path, f"{MANIFEST_FILE} is {info.file_size} bytes (at most {MAX_JSON_BYTES})")
            try:
                text = zf.read(info).decode("utf-8")
                manifest = Manifest.from_json(text, where=MANIFEST_FILE)
            except UnicodeDecodeError:
                raise PackageError(path, f"{MANIFEST_FILE} is not UTF-8 text") from None
            except ManifestError as e:
                raise PackageError(path, str(e)) from None
            infos = [(a.file, _member(zf, prefix + a.file, path, "artifact")) for a in manifest.artifacts]
            total = sum(i.file_size for _, i in infos)
            if total > MAX_UNZIPPED_BYTES:
                raise PackageError(path, f"its artifacts would unpack to {total} bytes (at most {MAX_UNZIPPED_BYTES})")
            root = dest / prefix if prefix else dest
            (root / MANIFEST_FILE).parent.mkdir(parents=True, exist_ok=True)
            (root / MANIFEST_FILE).write_text(text, encoding="utf-8")
            for file, i in infos:
                if not (root / file).exists():  # two entries may name one file
                    _copy(zf, i, root / file)
            return root
    except PackageError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as e:
        raise PackageError(path, f"damaged zip ({first_line(e)})") from None
    except OSError as e:
        raise PackageError(path, f"cannot unpack ({first_line(e)})") from None

"""`fakedet export -o PKG` over an existing package: what a re-export would drop
(calibration, INT8 files, TensorRT plans: everything `export` does not write itself)."""

from __future__ import annotations

import json
from pathlib import Path

from fakedet import artifact_kinds as ak
from fakedet.errors import DataError

WRITTEN_BY_EXPORT = {ak.ONNX_FP32, ak.ONNX_FP16, ak.ONNX_EXTERNAL_DATA, ak.PARITY_REPORT, ak.TOKENIZER}


def would_lose(dest: Path) -> list[str]:
    """The files in `dest` a fresh export does not write again (from its manifest; every
    file when there is no readable manifest)."""
    try:
        manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
        artifacts = [a for a in manifest.get("artifacts", []) if isinstance(a, dict)]
        return [str(a.get("file")) for a in artifacts if a.get("kind") not in WRITTEN_BY_EXPORT]
    except (OSError, ValueError, AttributeError):
        return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())[:20]


def check_overwrite(dest: Path, force: bool) -> str | None:
    """Refuse to replace an existing `dest` unless `force`; with it, the line to say."""
    dest = Path(dest)
    if not dest.exists():
        return None
    if dest.is_dir() and not any(dest.iterdir()):
        return None
    lost = would_lose(dest) if dest.is_dir() else [dest.name]
    what = f"; it holds {', '.join(lost)}, which a fresh export does not write" if lost else ""
    if not force:
        raise DataError(f"{dest}: already exists{what}. Give --force to replace it, or another -o")
    return f"replacing {dest}" + (f": {', '.join(lost)} will be gone" if lost else "")

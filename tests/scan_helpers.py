"""An archive to scan (good, bad and duplicate images) and readers of scan results (no tests here)."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import save_image

BAD = {
    "bad/truncated.png": "truncated",
    "bad/not-an-image.jpg": "not-an-image",
    "bad/empty.png": "empty",
}


def make_archive(root: Path, good: int = 12) -> dict:
    """root/good/*.png (distinct), root/dup/*.png (byte copies of two good ones), root/bad/*."""
    paths = [save_image(root / "good" / f"g{i:03d}.png", size=(20 + i % 7, 18 + i % 5), seed=i) for i in range(good)]
    (root / "dup").mkdir(parents=True, exist_ok=True)
    shutil.copy(paths[0], root / "dup" / "copy-of-g000.png")
    shutil.copy(paths[1], root / "dup" / "copy-of-g001.png")
    (root / "bad").mkdir(parents=True, exist_ok=True)
    data = paths[2].read_bytes()
    (root / "bad" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "bad" / "not-an-image.jpg").write_bytes(b"plain text, not a JPEG\n" * 4)
    (root / "bad" / "empty.png").write_bytes(b"")
    return {"good": paths, "total": good + 2 + len(BAD)}


def rows_of(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for part in sorted(Path(out).glob("part-*.parquet")):
        rows.extend(pq.read_table(part).to_pylist())
    return rows


def by_path(rows: list[dict]) -> dict:
    return {r["path"]: r for r in rows}

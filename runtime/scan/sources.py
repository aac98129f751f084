"""What a scan reads: a folder (walked), a CSV or text list of paths, or a Parquet file
with a path column. Paths come back as strings, each once, in the source's order."""

from __future__ import annotations

import csv
from pathlib import Path

from fakedet.errors import FakedetError

from ..imageio import expand_paths

PATH_COLUMNS = ("path", "file", "filename", "image")
LIST_SUFFIXES = (".csv", ".txt", ".lst", ".list")


def read_source(source, path_column: str | None = None) -> list[str]:
    """The image paths named by `source`; relative paths in a list are read against the
    list's folder. Duplicate paths are kept once (the first)."""
    src = Path(source)
    if src.is_dir():
        paths = [str(p) for p in expand_paths([src])]
    elif not src.is_file():
        raise FakedetError(f"{src}: no such file or folder")
    elif src.suffix.lower() == ".parquet":
        paths = _resolve(src, _parquet_paths(src, path_column))
    elif src.suffix.lower() in LIST_SUFFIXES:
        paths = _resolve(src, _list_paths(src, path_column))
    else:
        raise FakedetError(f"{src}: not a folder, a path list (.csv, .txt) or a Parquet file (.parquet)")
    return list(dict.fromkeys(paths))


def _resolve(listing: Path, names: list[str]) -> list[str]:
    base = listing.parent
    return [n if Path(n).is_absolute() else str(base / n) for n in names]


def _list_paths(src: Path, column: str | None) -> list[str]:
    try:
        text = src.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise FakedetError(f"{src}: cannot read the path list ({e})") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    if src.suffix.lower() != ".csv":
        return [ln.strip() for ln in lines]
    rows = list(csv.reader(lines))
    header = [h.strip().lower() for h in rows[0]]
    col = _pick_column(header, column, src)
    if col is None:  # no header naming a path column: one path per line, first column
        return [r[0].strip() for r in rows if r and r[0].strip()]
    return [r[col].strip() for r in rows[1:] if len(r) > col and r[col].strip()]


def _pick_column(header: list[str], column: str | None, src: Path) -> int | None:
    if column is not None:
        if column.lower() not in header:
            raise FakedetError(f"{src}: no column '{column}' (columns: {', '.join(header)})")
        return header.index(column.lower())
    for name in PATH_COLUMNS:
        if name in header:
            return header.index(name)
    return None


def _parquet_paths(src: Path, column: str | None) -> list[str]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(src)
    except Exception as e:
        raise FakedetError(f"{src}: not a readable Parquet file ({e})") from None
    names = list(schema.names)
    wanted = [column] if column else list(PATH_COLUMNS)
    found = next((n for n in wanted if n in names), None)
    if found is None:
        raise FakedetError(f"{src}: no path column ({' or '.join(wanted)}); columns: {', '.join(names)}"
                           + ("" if column else "; name one with --path-column"))
    values = pq.read_table(src, columns=[found]).column(found).to_pylist()
    return [str(v) for v in values if v]

"""The result folder of a scan: Parquet shards written atomically, and a manifest of the
shards that are done. A shard is listed only after its file is whole on disk, so a scan
killed at any moment leaves done shards (kept) and at most one unlisted file (removed
when the next run opens the folder). The paths of the listed shards are the images a re-run skips.

    RESULTS/scan-manifest.json   {"format", "model", "package_sha256", "shards": [{file, rows, sha256}]}
    RESULTS/part-000000.parquet  ...
    RESULTS/summary.json         written when a scan ends
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from fakedet.atomic import atomic_write_bytes, atomic_write_text, sha256_file
from fakedet.errors import FakedetError

from .rows import COLUMNS, to_table

MANIFEST = "scan-manifest.json"
SUMMARY = "summary.json"
FORMAT = "fakedet-scan/1"
SHARD_PATTERN = "part-{:06d}.parquet"


class ResultStore:
    def __init__(self, out: Path, model: str, package_sha256: str, rescore: bool = False):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model, self.package_sha256 = model, package_sha256
        self.shards: list[dict] = []
        found = self._read_manifest()
        if found is not None:
            if rescore:
                self._remove(found["shards"])
            elif found.get("package_sha256") != package_sha256:
                raise FakedetError(
                    f"{self.out}: holds the scores of model '{found.get('model')}' (package sha256 "
                    f"{str(found.get('package_sha256'))[:12]}...), not of this package ({package_sha256[:12]}...); "
                    "use --rescore to replace them, or another --out")
            else:
                self.shards = list(found["shards"])
        self._next = 1 + max((int(s["file"][5:11]) for s in self.shards), default=-1)
        self._drop_unlisted()

    def _drop_unlisted(self) -> None:
        """A shard file a killed scan wrote but never listed is not done: it goes now, so that the
        folder holds exactly the listed rows and its images are scored again."""
        listed = {s["file"] for s in self.shards}
        for part in self.out.glob("part-*.parquet"):
            if part.name not in listed:
                part.unlink(missing_ok=True)

    # ---- reading -----------------------------------------------------------
    def _read_manifest(self) -> dict | None:
        path = self.out / MANIFEST
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT or not isinstance(data.get("shards"), list):
                raise ValueError(f"not a {FORMAT} manifest")
            return data
        except (OSError, ValueError) as e:
            raise FakedetError(f"{path}: unreadable scan manifest ({e}); use another --out") from None

    def done_paths(self) -> set[str]:
        import pyarrow.parquet as pq

        done: set[str] = set()
        for s in self.shards:
            done.update(pq.read_table(self.out / s["file"], columns=["path"]).column("path").to_pylist())
        return done

    def table(self, columns=COLUMNS):
        """Every done row (for the summary and for tests)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .rows import schema

        parts = [pq.read_table(self.out / s["file"], columns=list(columns)) for s in self.shards]
        if not parts:
            return schema().empty_table().select(list(columns))
        return pa.concat_tables(parts)

    # ---- writing -----------------------------------------------------------
    def write_shard(self, rows: list[dict]) -> str:
        """Write `rows` as the next shard (atomically), then list it as done."""
        import pyarrow.parquet as pq

        name = SHARD_PATTERN.format(self._next)
        buf = io.BytesIO()
        pq.write_table(to_table(rows), buf, compression="zstd")
        atomic_write_bytes(self.out / name, buf.getvalue())
        self.shards.append({"file": name, "rows": len(rows), "sha256": sha256_file(self.out / name)})
        self._next += 1
        self._write_manifest()
        return name

    def _write_manifest(self) -> None:
        doc = {"format": FORMAT, "model": self.model, "package_sha256": self.package_sha256, "shards": self.shards}
        atomic_write_text(self.out / MANIFEST, json.dumps(doc, indent=1) + "\n")

    def write_summary(self, summary: dict) -> Path:
        path = self.out / SUMMARY
        atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
        return path

    def _remove(self, shards: list[dict]) -> None:
        """--rescore: the listed shards, the manifest and the summary go (nothing else)."""
        for s in shards:
            name = str(s.get("file", ""))
            if name.startswith("part-") and name.endswith(".parquet") and "/" not in name:
                (self.out / name).unlink(missing_ok=True)
        (self.out / SUMMARY).unlink(missing_ok=True)
        (self.out / MANIFEST).unlink(missing_ok=True)

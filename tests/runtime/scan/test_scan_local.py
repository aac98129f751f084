"""`fakedet scan --engine local`: one row per image (good, bad, duplicate), the Parquet
schema, resumption after SIGKILL, sources (folder, CSV, text list, Parquet)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from conftest import reference_forward  # noqa: E402
from scan_helpers import BAD, by_path, make_archive, rows_of  # noqa: E402

from fakedet.cli import main  # noqa: E402


def scan(*args) -> int:
    return main(["scan", *map(str, args), "-q"])


def test_one_row_per_image_with_scores_errors_and_hashes(tmp_path, tiny_package):
    from fakedet.runtime.detector import Detector
    from fakedet.runtime.imageio import load_image
    from fakedet.runtime.preprocess import preprocess_image
    from fakedet.runtime.scan.package_ship import package_sha256

    pkg, w = tiny_package
    arch = make_archive(tmp_path / "archive")
    out = tmp_path / "results"
    assert scan(tmp_path / "archive", "--package", pkg, "--out", out, "--workers", "2", "--shard-size", "5") == 1
    rows = rows_of(out)
    assert len(rows) == arch["total"] == len({r["path"] for r in rows})
    got = by_path(rows)
    with Detector.open(pkg) as det:
        spec = det.manifest.input
    for p in arch["good"]:  # scores against the numpy forward pass, hashes against hashlib
        r = got[str(p)]
        x = preprocess_image(load_image(p), spec)[None]
        want = 1 / (1 + np.exp(-reference_forward(x, w)[0, 0]))
        assert r["error"] is None and r["p_fake"] == pytest.approx(float(want), abs=1e-5)
        assert r["decision"] == ("fake" if r["p_fake"] >= 0.5 else "real") and r["threshold"] == 0.5
        assert r["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest() and r["size"] == p.stat().st_size
        assert r["model"] == "tiny" and r["package_sha256"] == package_sha256(pkg)
        assert r["backend"] == "ort-cpu" and r["precision"] == "fp32" and r["seconds"] > 0
    dup = got[str(tmp_path / "archive" / "dup" / "copy-of-g000.png")]
    assert dup["sha256"] == got[str(arch["good"][0])]["sha256"] and dup["p_fake"] == got[str(arch["good"][0])]["p_fake"]
    for rel, kind in BAD.items():
        r = got[str(tmp_path / "archive" / rel)]
        assert r["p_fake"] is None and r["decision"] is None and r["error"], rel
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"] == {"rows": arch["total"], "scored": arch["total"] - 3, "failed": 3,
                                 "fake": sum(r["decision"] == "fake" for r in rows),
                                 "real": sum(r["decision"] == "real" for r in rows), "shards": 4}
    assert summary["failures_by_kind"] == {"empty": 1, "not-an-image": 1, "truncated": 1}
    assert summary["images_per_second"] > 0


def test_parquet_schema(tmp_path, tiny_package):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pkg, _ = tiny_package
    make_archive(tmp_path / "a", good=3)
    scan(tmp_path / "a", "--package", pkg, "--out", tmp_path / "r", "--workers", "0")
    schema = pq.read_schema(next((tmp_path / "r").glob("part-*.parquet")))
    assert [(f.name, f.type) for f in schema] == [
        ("path", pa.string()), ("size", pa.int64()), ("sha256", pa.string()), ("p_fake", pa.float64()),
        ("decision", pa.string()), ("threshold", pa.float64()), ("error", pa.string()), ("model", pa.string()),
        ("package_sha256", pa.string()), ("backend", pa.string()), ("precision", pa.string()),
        ("seconds", pa.float64())]


def test_rerun_skips_done_images_and_rescore_forces(tmp_path, tiny_package):
    pkg, _ = tiny_package
    make_archive(tmp_path / "a", good=6)
    out = tmp_path / "r"
    scan(tmp_path / "a", "--package", pkg, "--out", out, "--workers", "0", "--shard-size", "4")
    first = rows_of(out)
    save_new = tmp_path / "a" / "good" / "later.png"
    from conftest import save_image

    save_image(save_new, seed=99)
    scan(tmp_path / "a", "--package", pkg, "--out", out, "--workers", "0", "--shard-size", "4")
    s = json.loads((out / "summary.json").read_text())
    assert s["skipped_already_done"] == len(first) and s["this_run"]["rows"] == 1
    assert sorted(r["path"] for r in rows_of(out)) == sorted([r["path"] for r in first] + [str(save_new)])
    scan(tmp_path / "a", "--package", pkg, "--out", out, "--workers", "0", "--rescore")
    s = json.loads((out / "summary.json").read_text())
    assert s["skipped_already_done"] == 0 and s["this_run"]["rows"] == len(first) + 1 == len(rows_of(out))


def test_a_results_folder_of_another_model_is_refused(tmp_path, tiny_package):
    from conftest import build_tiny_onnx, write_spec

    pkg, _ = tiny_package
    make_archive(tmp_path / "a", good=3)
    out = tmp_path / "r"
    scan(tmp_path / "a", "--package", pkg, "--out", out, "--workers", "0")
    build_tiny_onnx(tmp_path / "other.onnx", seed=3)
    other = tmp_path / "other.fdet"
    assert main(["package", str(tmp_path / "other.onnx"), "--input-spec", str(write_spec(tmp_path / "s.json")),
                 "-o", str(other)]) == 0
    assert scan(tmp_path / "a", "--package", other, "--out", out) == 2


def test_sources_csv_text_and_parquet_name_the_same_rows(tmp_path, tiny_package):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pkg, _ = tiny_package
    arch = make_archive(tmp_path / "a", good=4)
    names = [str(p.relative_to(tmp_path)) for p in arch["good"]] + ["a/bad/empty.png", "missing.png"]
    (tmp_path / "list.csv").write_text("id,path\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    (tmp_path / "list.txt").write_text("\n".join(names + names[:1]) + "\n")  # a repeated path: one row
    pq.write_table(pa.table({"uri": [str(tmp_path / n) for n in names]}), tmp_path / "list.parquet")
    results = {}
    for src, extra in (("list.csv", []), ("list.txt", []), ("list.parquet", ["--path-column", "uri"])):
        out = tmp_path / f"r-{src}"
        assert scan(tmp_path / src, "--package", pkg, "--out", out, "--workers", "0", *extra) == 1
        results[src] = {r["path"]: (r["p_fake"], r["error"]) for r in rows_of(out)}
    assert results["list.csv"] == results["list.txt"] == results["list.parquet"]
    assert len(results["list.csv"]) == len(names)
    assert results["list.csv"][str(tmp_path / "missing.png")] == (None, "no such file")


def _children(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):  # a child belongs to the thread that forked it
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_scan_resumes_to_the_rows_of_one_uninterrupted_scan(tmp_path, tiny_package):
    pkg, _ = tiny_package
    make_archive(tmp_path / "a", good=300)
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    args = [sys.executable, "-m", "fakedet", "scan", str(tmp_path / "a"), "--package", str(pkg),
            "--workers", "1", "--batch", "2", "--shard-size", "2", "-q"]
    proc = subprocess.Popen(args + ["--out", str(resumed)])
    manifest = resumed / "scan-manifest.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 3:
            break
        time.sleep(0.005)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: what is on disk must be whole
    proc.wait()
    assert workers, "the scan had a decode worker"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a decode worker outlived its killed scan"
    listed = json.loads(manifest.read_text())["shards"]
    done_before = sum(s["rows"] for s in listed)  # a shard written but not yet listed is not done
    assert len(rows_of(resumed)) - done_before in (0, 2), "at most one unlisted shard (of 2 rows) on disk"
    assert 0 < done_before < 305 and not (resumed / "summary.json").exists(), "the kill must land mid-scan"
    assert subprocess.run(args + ["--out", str(resumed), "--workers", "0", "--shard-size", "64"]).returncode == 1
    assert subprocess.run(args + ["--out", str(whole), "--workers", "0", "--shard-size", "64"]).returncode == 1
    s = json.loads((resumed / "summary.json").read_text())
    assert s["skipped_already_done"] >= done_before and s["this_run"]["rows"] == 305 - s["skipped_already_done"]
    got, want = rows_of(resumed), rows_of(whole)
    assert len(got) == len({r["path"] for r in got}) == 305
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert {r["path"]: strip(r) for r in got} == {r["path"]: strip(r) for r in want}


def test_the_runtime_and_the_cli_do_not_import_pyarrow_or_ray():
    code = ("import sys, fakedet.runtime, fakedet.runtime.detector, fakedet.cli; "
            "from fakedet.cli import LazyGroup; "
            "print(sorted(m for m in ('pyarrow', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_worker_refuses_a_package_that_differs_from_the_drivers(tmp_path, tiny_package):
    from fakedet.errors import FakedetError
    from fakedet.runtime.scan.package_ship import ShippedPackage, package_sha256

    pkg, _ = tiny_package
    good = ShippedPackage(sha256=package_sha256(pkg), path=str(pkg))
    assert good.materialize() == (str(pkg), None)
    with pytest.raises(FakedetError, match="do not share the same package"):
        ShippedPackage(sha256="0" * 64, path=str(pkg)).materialize()


def test_source_and_package_errors_are_one_line_and_exit_2(tmp_path, tiny_package, capsys):
    pkg, _ = tiny_package
    assert scan(tmp_path / "nowhere", "--package", pkg, "--out", tmp_path / "r") == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err
    (tmp_path / "list.csv").write_text("id,uri\n1,a.png\n")
    assert scan(tmp_path / "list.csv", "--package", pkg, "--out", tmp_path / "r", "--path-column", "path") == 2
    assert "no column 'path'" in capsys.readouterr().err
    make_archive(tmp_path / "a", good=3)
    assert scan(tmp_path / "a", "--package", tmp_path / "missing.fdet", "--out", tmp_path / "r") == 2
    assert "missing.fdet: no such file or directory" in capsys.readouterr().err


def test_a_shard_left_unlisted_by_a_kill_is_rewritten_not_read(tmp_path, tiny_package):
    """A kill between a shard's rename and the manifest's update leaves a whole file that
    the manifest does not list: the next run neither skips its images nor keeps its rows."""
    import pyarrow.parquet as pq

    pkg, _ = tiny_package
    make_archive(tmp_path / "a", good=5)
    out = tmp_path / "r"
    scan(tmp_path / "a", "--package", pkg, "--out", out, "--workers", "0", "--shard-size", "4")
    manifest = json.loads((out / "scan-manifest.json").read_text())
    last = manifest["shards"].pop()
    (out / "scan-manifest.json").write_text(json.dumps(manifest))
    listed = {p for s in manifest["shards"] for p in pq.read_table(out / s["file"]).column("path").to_pylist()}
    (out / last["file"]).write_bytes(b"not parquet: what a kill mid-write would never leave, yet it is ignored")
    scan(tmp_path / "a", "--package", pkg, "--out", out, "--workers", "0", "--shard-size", "4")
    s = json.loads((out / "summary.json").read_text())
    assert s["skipped_already_done"] == len(listed) and s["totals"]["rows"] == 10
    rows = rows_of(out)
    assert len(rows) == len({r["path"] for r in rows}) == 10


@pytest.mark.parametrize("error, kind", [
    ("no such file", "missing"), ("is a directory, not an image", "not-a-file"),
    ("empty input (0 bytes)", "empty"), ("cannot decode: truncated file (image file is truncated)", "truncated"),
    ("not an image in an accepted format (JPEG, PNG)", "not-an-image"),
    ("9000x9000 = 81000000 pixels exceeds the limit of 89478485 (decompression-bomb guard)", "too-many-pixels"),
    ("progressive JPEG with 300 scans, limit 100 (a decode-cost bomb)", "too-many-scans"),
    ("decode took longer than 10 s", "decode-budget"), ("inference failed: bad shape", "inference"),
    ("cannot decode: broken data stream", "decode")])
def test_failure_kinds_in_the_summary(error, kind):
    from fakedet.runtime.scan.rows import failure_kind

    assert failure_kind(error) == kind


def test_a_shard_written_but_never_listed_is_removed_and_rescored(tmp_path, tiny_package):
    """The kill can land between a shard's write and its listing: that shard is not done."""
    pkg, _ = tiny_package
    make_archive(tmp_path / "a", good=6)
    out = tmp_path / "r"
    args = ["--package", pkg, "--out", out, "--workers", "0", "--shard-size", "2", "-q"]
    assert scan(tmp_path / "a", *args) in (0, 1)
    manifest = json.loads((out / "scan-manifest.json").read_text())
    last = manifest["shards"].pop()  # as if the kill came just before this shard was listed
    (out / "scan-manifest.json").write_text(json.dumps(manifest))
    (out / "summary.json").unlink()
    from fakedet.runtime.scan.store import ResultStore

    ResultStore(out, manifest["model"], manifest["package_sha256"])  # opening the folder drops it
    assert not (out / last["file"]).exists()
    assert scan(tmp_path / "a", *args) in (0, 1)
    rows = rows_of(out)
    assert len(rows) == len({r["path"] for r in rows}) == sum(s["rows"] for s in manifest["shards"]) + last["rows"]


def test_a_slow_to_decode_image_fails_its_row_and_the_scan_finishes(tmp_path, tiny_package):
    """The scan's decodes run under the runtime's per-image budget (runtime.decode_pool):
    an image decoding for ~4x the budget has its decode process killed and gets a row
    with the reason; the images after it are scored."""
    from decode_bombs import slow_bomb

    pkg, _ = tiny_package
    arch = make_archive(tmp_path / "archive")
    bomb, bomb_s = slow_bomb(3.0, max_side=4096)
    budget = round(max(0.1, bomb_s / 6), 2)  # pinned to the bomb's cost here, not the machine's speed
    (tmp_path / "archive" / "slow.jpg").write_bytes(bomb)
    out = tmp_path / "results"
    t0 = time.perf_counter()
    assert scan(tmp_path / "archive", "--package", pkg, "--out", out, "--workers", "2",
                "--decode-timeout-s", budget) == 1
    took = time.perf_counter() - t0
    got = by_path(rows_of(out))
    slow = got[str(tmp_path / "archive" / "slow.jpg")]
    assert slow["p_fake"] is None and slow["error"] == f"decode took longer than {budget:g} s", slow
    assert slow["sha256"] == hashlib.sha256(bomb).hexdigest()
    assert all(got[str(p)]["error"] is None for p in arch["good"])
    assert len(got) == arch["total"] + 1
    assert took < 60, took

"""`fakedet scan --engine ray` on a real local Ray runtime (127.0.0.1, 2 CPUs, no
dashboard): the same rows as the local engine; a scoring actor killed mid-scan and every
row still written once. ray[data] is in the dev extra; where it is not installed these
tests skip, saying so."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray", reason="Ray Data is not installed: pip install 'fakedet[ray]'")

from scan_helpers import by_path, make_archive, rows_of  # noqa: E402

from fakedet.runtime.scan.ray_engine import connect  # noqa: E402
from fakedet.runtime.scan.runner import ScanOptions, run_scan  # noqa: E402

ACTOR_TITLE = b"MapBatches(ScoreBatch)"


@pytest.fixture(scope="module")
def ray_runtime():
    undo = connect(None, num_cpus=2)  # the engine's own local runtime, which the scans then join
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    yield
    undo()


def _zip(pkg: Path, dest: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(pkg.rglob("*")):
            zf.write(f, f.relative_to(pkg))
    return dest


def test_ray_rows_equal_the_local_engine_rows(tmp_path, tiny_package, ray_runtime):
    pkg, _ = tiny_package
    arch = make_archive(tmp_path / "a", good=40)
    local = run_scan(ScanOptions(tmp_path / "a", pkg, tmp_path / "local", workers=0, progress=False))
    zipped = _zip(pkg, tmp_path / "tiny.fdet.zip")  # travels as bytes through the object store
    for name, package, ship in (("by-path", pkg, "path"), ("as-bytes", zipped, "bytes")):
        out = tmp_path / name
        s = run_scan(ScanOptions(tmp_path / "a", package, out, engine="ray", ship=ship, batch_size=8,
                                 decode_batch=16, shard_size=16, progress=False))
        assert s["totals"]["rows"] == arch["total"] and s["this_run"]["duplicate_rows_dropped"] == 0
        assert s["failures_by_kind"] == local["failures_by_kind"]
        got, want = by_path(rows_of(out)), by_path(rows_of(tmp_path / "local"))
        assert got.keys() == want.keys() and len(rows_of(out)) == arch["total"]
        for path, w in want.items():
            g = got[path]
            for key in ("size", "sha256", "decision", "threshold", "error", "model", "backend", "precision"):
                assert g[key] == w[key], (name, path, key)
            assert (g["p_fake"] is None) == (w["p_fake"] is None)
            if w["p_fake"] is not None:
                assert abs(g["p_fake"] - w["p_fake"]) <= 1e-6
        if ship == "path":
            assert {r["package_sha256"] for r in got.values()} == {s["package_sha256"]} == {local["package_sha256"]}


def _actor_pids() -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if ACTOR_TITLE in f.read():
                        pids.append(int(d))
            except OSError:
                continue
    return pids


def test_a_scoring_actor_killed_mid_scan_costs_no_row(tmp_path, tiny_package, ray_runtime):
    pkg, _ = tiny_package
    arch = make_archive(tmp_path / "a", good=400)
    out = tmp_path / "r"
    killed: list = []

    def kill_one_actor_after_the_first_shard():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            if (out / "scan-manifest.json").exists():
                pids = _actor_pids()
                if pids:
                    rows_before = len(rows_of(out))
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append((pids[0], rows_before))
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_actor_after_the_first_shard, daemon=True)
    killer.start()
    s = run_scan(ScanOptions(tmp_path / "a", pkg, out, engine="ray", batch_size=4, decode_batch=8,
                             shard_size=8, progress=False))
    killer.join(5)
    assert killed, "no scoring actor was found to kill"
    assert killed[0][1] < arch["total"], "the kill must land mid-scan"
    rows = rows_of(out)
    assert len(rows) == len({r["path"] for r in rows}) == arch["total"] == s["totals"]["rows"]
    assert s["totals"]["failed"] == 3  # the three bad images, nothing lost to the kill


@pytest.mark.slow
def test_a_scan_joins_a_cluster_started_with_ray_start(tmp_path, tiny_package):
    """`ray start --head` on 127.0.0.1 (a one-node cluster), then `fakedet scan --address`:
    the rows of the local engine. Slow: a second Ray runtime starts and stops."""
    import json
    import socket
    import subprocess
    import sys

    pkg, _ = tiny_package
    arch = make_archive(tmp_path / "a", good=10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen([ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "2",
                             "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                             "--disable-usage-stats", "--block"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        local = run_scan(ScanOptions(tmp_path / "a", pkg, tmp_path / "local", workers=0, progress=False))
        cmd = [sys.executable, "-m", "fakedet", "scan", str(tmp_path / "a"), "--package", str(pkg),
               "--out", str(tmp_path / "cluster"), "--engine", "ray", "--address", f"127.0.0.1:{port}", "-q"]
        deadline = time.monotonic() + 120
        while True:  # the head takes a while to accept drivers
            done = subprocess.run(cmd, env=dict(env, RAY_AUTH_MODE="token"), capture_output=True, text=True,
                                  timeout=150)
            if done.returncode == 1 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert done.returncode == 1, done.stderr[-2000:]  # 1: the three bad images
        s = json.loads((tmp_path / "cluster" / "summary.json").read_text())
        assert s["engine"] == "ray" and s["totals"]["rows"] == arch["total"] == local["totals"]["rows"]
        got, want = by_path(rows_of(tmp_path / "cluster")), by_path(rows_of(tmp_path / "local"))
        assert got.keys() == want.keys()
        for path, w in want.items():
            assert got[path]["error"] == w["error"]
            assert (w["p_fake"] is None) == (got[path]["p_fake"] is None)
            assert w["p_fake"] is None or abs(got[path]["p_fake"] - w["p_fake"]) <= 1e-6
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head and the processes it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        address_file = Path("/tmp/ray/ray_current_cluster")  # what `ray start` leaves behind
        if address_file.is_file() and address_file.read_text().strip() == f"127.0.0.1:{port}":
            address_file.unlink()

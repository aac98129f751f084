"""`fakedet align` split over processes: 2 torchrun ranks, or `--shard 0/2` and `--shard 1/2`
launched separately, give the bytes of a single-process run, each image written once; a
shard killed with SIGKILL resumes where it stopped.

--batch 1 throughout: a reconstruction is byte-identical whatever the shard only when every
image runs through the autoencoder alone (a batched convolution may move a pixel by one level,
test_align.py::test_batching_does_not_change_the_result)."""

import json
import signal
import subprocess

import pytest

from fakedet.cli import main
from test_align import SIZES, _write_images, tiny_vae  # noqa: F401  (pytest fixture)
from torch_helpers import one_thread  # noqa: F401  (pytest fixture)
from torchrun_helpers import child_env, command, hidden_leftovers, run, run_and_kill

pytestmark = pytest.mark.slow

IMAGES = (SIZES + [(40, 40), (36, 44)]) * 4  # 24 images, padded and unpadded sides


def _args(vae, src, dst, *extra):
    return ["align", "--quiet", "--device", "cpu", "--batch", "1", "--vae", vae, "--src", src, "--dst", dst, *extra]


def _tree(dst):
    """Every output file's bytes by relative path (the per-shard summaries aside)."""
    return {p.relative_to(dst).as_posix(): p.read_bytes() for p in sorted(dst.rglob("*"))
            if p.is_file() and not p.name.startswith("align_summary")}


def _summaries(dst, n=2):
    return [json.loads((dst / f"align_summary.shard-{i}-of-{n}.json").read_text()) for i in range(n)]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("align_src") / "src"
    _write_images(root / "gen_a" / "0_real", IMAGES, "png")
    return root


@pytest.fixture(scope="module")
def single(tiny_vae, src):
    dst = src.parent / "single"
    assert main(_args(tiny_vae, src, dst)) == 0
    tree = _tree(dst)
    assert len([k for k in tree if "/1_fake/" in k]) == len(IMAGES)
    return tree


def _check_shards(dst, single):
    assert _tree(dst) == single  # byte for byte, reconstructions and copied reals
    shards = _summaries(dst)
    assert all(s["failed_count"] == 0 and s["skipped"] == 0 for s in shards)
    assert all(s["done"] > 0 for s in shards)  # both shards had work
    # every image is on disk and the shards' counts add up to it: each was written exactly once
    assert sum(s["done"] for s in shards) == sum(s["shard_images"] for s in shards) == len(IMAGES)
    assert hidden_leftovers(dst) == []


def test_torchrun_ranks_give_the_single_process_bytes(tiny_vae, src, single, tmp_path):
    dst = tmp_path / "torchrun"
    done = run(_args(tiny_vae, src, dst), torchrun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [s["shard"] for s in _summaries(dst)] == ["0/2", "1/2"]
    _check_shards(dst, single)


def test_separately_launched_shards_give_the_single_process_bytes(tiny_vae, src, single, tmp_path):
    dst = tmp_path / "shards"
    procs = [subprocess.Popen(command(_args(tiny_vae, src, dst, "--shard", f"{i}/2"), torchrun=False),
                              env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]  # at the same time, into the same folder
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    _check_shards(dst, single)


def test_killed_shard_resumes(tiny_vae, src, single, tmp_path):
    dst = tmp_path / "killed"
    fakes = dst / "gen_a" / "1_fake"
    count = lambda: len(list(fakes.glob("*.png"))) if fakes.is_dir() else 0  # noqa: E731
    rc = run_and_kill(_args(tiny_vae, src, dst, "--shard", "0/2"), lambda: count() >= 2, sig=signal.SIGKILL)
    assert rc == -signal.SIGKILL, "the shard ended before it could be killed"
    before = count()
    # what a kill during a write leaves: a hidden temporary beside a shard-0 output, and one
    # beside a shard-1 output (shard 1 may be writing it now: shard 0 must not touch it)
    from fakedet.train.align import in_shard, plan_jobs

    jobs = plan_jobs(src)
    mine = next(j for j in jobs if in_shard(j, 0, 2) and not (dst / j.rel).exists())
    theirs = next(j for j in jobs if in_shard(j, 1, 2))
    stale_mine = fakes / f".{(dst / mine.rel).name}.k1ll3d.tmp"
    stale_theirs = fakes / f".{(dst / theirs.rel).name}.wr1t1n.tmp"
    for p in (stale_mine, stale_theirs):
        p.write_bytes(b"half a png")

    shard_size = sum(in_shard(j, 0, 2) for j in jobs)
    assert 2 <= before < shard_size
    assert main(_args(tiny_vae, src, dst, "--shard", "0/2")) == 0
    resumed = json.loads((dst / "align_summary.shard-0-of-2.json").read_text())
    assert (resumed["skipped"], resumed["done"]) == (before, shard_size - before)  # kept, then finished
    assert not stale_mine.exists() and stale_theirs.exists()

    assert main(_args(tiny_vae, src, dst, "--shard", "1/2")) == 0
    assert not stale_theirs.exists()
    assert _tree(dst) == single
    assert hidden_leftovers(dst) == []

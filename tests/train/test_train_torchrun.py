"""`torchrun --nproc_per_node 2 -m fakedet train` on the CPU (gloo), as a user launches it.

The model is clip-linear on a one-layer 16 px CLIP (given inline with --model-opt, no
weights): a frozen backbone whose cached features train a linear head, with no BatchNorm
and no Dropout, so one process and two must agree up to float32 summation order (two ranks
sum their halves of the gradient, then all-reduce). Measured largest weight difference
(AMD EPYC, AVX-512): 6e-8 here after 30 epochs, 1.5e-7 for the CNN below; tolerance 1e-6. The loss is CVaR + pairwise AUC under SAM: batch-level terms that are wrong
under naive DDP (each rank's half-batch loss) and right only if the global batch is gathered."""

import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fakedet.cli import main
from test_train_trainer import make_dataset
from torch_helpers import one_thread, tiny_clip_config  # noqa: F401  (pytest fixture)
from tiny_cnn_train import register as register_tiny_cnns
from torchrun_helpers import hidden_leftovers, run, run_and_kill

pytestmark = pytest.mark.slow

EPOCHS = 30
ATOL = 1e-6


def _args(data, out, **over):
    opts = {"--arch": "clip-linear", "--data": data, "--out": out, "--epochs": EPOCHS, "--batch": 4,
            "--val-fraction": 0.2, "--seed": 3, "--lr": 0.02, "--optimizer": "adamw", "--loss": "cvar-auc",
            "--sam-rho": 0.05, "--schedule": "none", **over}
    clip = json.dumps(tiny_clip_config(width=16, image_size=16, patch_size=8))
    return ["train", "--no-progress", "--model-opt", "clip_model=fakedet-ddp-micro",
            "--model-opt", f"clip_config={clip}", *[str(v) for kv in opts.items() for v in kv]]


def _metrics(out):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(out, sub="last", name="model.safetensors"):
    return load_file(str(out / sub / name))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 10 pairs: 2 held out, 8 train = 16 images = 4 global batches of 4 (2 per rank)
    return make_dataset(tmp_path_factory.mktemp("ddp") / "data", n=10, size=16)


@pytest.fixture(scope="module")
def two_ranks(data):
    out = data.parent / "two"
    done = run(_args(data, out), torchrun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_two_processes_write_once_and_match_one(data, two_ranks, tmp_path):
    out, done = two_ranks
    # printed, logged and written once: by rank 0
    assert done.stdout.count('"epochs_done"') == 1
    assert done.stderr.count("train features:") == 1
    assert sorted(p.name for p in out.iterdir()) == ["best", "feature_cache", "last", "metrics.jsonl",
                                                     "summary.json"]
    assert len(list((out / "feature_cache").iterdir())) == 2  # train + val, extracted by rank 0 only
    assert hidden_leftovers(out) == []
    history = _metrics(out)
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))

    one = tmp_path / "one"
    assert main(_args(data, one)) == 0
    a, b = _weights(one), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=ATOL), (k, (a[k] - b[k]).abs().max())
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # it did train: not two untouched inits
    s_one, s_two = _weights(one, name="training_state.safetensors"), _weights(out, name="training_state.safetensors")
    assert all(torch.allclose(s_one[k], s_two[k], rtol=1e-5, atol=ATOL) for k in s_one)
    for h1, h2 in zip(_metrics(one), history):
        assert h1.keys() == h2.keys()
        for k in h1:
            assert h1[k] == pytest.approx(h2[k], rel=1e-5, abs=ATOL), k


def test_killed_two_process_run_resumes_to_the_same_result(data, two_ranks, tmp_path):
    out = tmp_path / "killed"
    metrics = out / "metrics.jsonl"
    rc = run_and_kill(_args(data, out), lambda: metrics.is_file(), torchrun=True, sig=signal.SIGKILL)
    assert rc == -signal.SIGKILL, "the run ended before it could be killed"
    epochs_before = len(metrics.read_text().splitlines())
    assert 1 <= epochs_before < EPOCHS

    done = run(_args(data, out), torchrun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from {out / 'last'} at epoch {epochs_before}" in done.stderr  # 1-based: the last epoch on disk
    full = two_ranks[0]
    for sub in ("last", "best"):
        a, b = _weights(full, sub), _weights(out, sub)
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    assert _metrics(full) == _metrics(out)
    assert hidden_leftovers(out) == []  # a half-built checkpoint of the killed run is swept on resume


TINY_CNN_SCRIPT = Path(__file__).parents[1] / "tiny_cnn_train.py"  # a shared helper script


def _image_args(data, out, arch, batch=8):
    # paired batches (a real and its fake), the augmentation chain with a 16 px crop, SAM:
    # 8 train pairs = 2 steps of 4 pairs, 2 pairs per rank
    return ["train", "--no-progress", "--arch", arch, "--data", data, "--out", out, "--epochs", 3,
            "--batch", batch, "--val-fraction", 0.2, "--seed", 5, "--lr", 0.01, "--sam-rho", 0.05,
            "--augment", "crop_size=16", "--schedule", "none"]


def test_paired_augmented_image_training_matches_one_process(tmp_path):
    """The image path (DataLoader, paired batches, augmentation) with a CNN without BatchNorm or
    Dropout: same tolerance as above. Two unreadable pairs leave some ranks' shares short (the
    gathered batch is uneven) and are counted over both ranks, as one process counts them."""
    register_tiny_cnns()
    data = make_dataset(tmp_path / "data", n=12, size=16)  # 10 train pairs (seed 5 holds out 7 and 9): 4+4+2
    for i in (0, 1):
        (data / "0_real" / f"{i}.png").write_bytes(b"not a png")
    done = run(_image_args(data, tmp_path / "two", "tiny-cnn-nobn"), torchrun=True, script=TINY_CNN_SCRIPT)
    assert done.returncode == 1, done.stderr[-3000:]  # some images were skipped
    assert main(_image_args(data, tmp_path / "one", "tiny-cnn-nobn")) == 1
    s_one, s_two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert s_one["skipped_images"]["skipped"] == s_two["skipped_images"]["skipped"] == 2 * 3  # 2 pairs, 3 epochs
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=ATOL), (k, (a[k] - b[k]).abs().max())
    for h1, h2 in zip(_metrics(tmp_path / "one"), _metrics(tmp_path / "two")):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-5)


def test_batchnorm_on_cpu_is_per_process_and_said_so(data, tmp_path):
    """torch's SyncBatchNorm needs GPUs; on the CPU the run completes and says its BatchNorm
    statistics are per process (so it is close to, not equal to, one process)."""
    done = run(_image_args(data, tmp_path / "bn", "tiny-cnn-bn"), torchrun=True, script=TINY_CNN_SCRIPT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("BatchNorm statistics are per process") == 1


def test_a_batch_that_does_not_split_stops_every_rank(data, tmp_path):
    done = run(_image_args(data, tmp_path / "odd", "tiny-cnn-nobn", batch=6), torchrun=True,
               script=TINY_CNN_SCRIPT, timeout=120)
    assert done.returncode != 0
    assert "--batch 6 is the global batch (3 pairs)" in done.stderr
    assert not (tmp_path / "odd" / "last").exists()

"""What a killed or offline run leaves behind: temp and staging folders of dead processes are
swept, SIGTERM cleans up, a training run names its checkpoints, an unreachable hub is one line."""

import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import save_image
from fakedet.cli import main
from fakedet.package import PackageWriter
from fakedet.manifest import Manifest
from fakedet.tempdirs import owned_tempdir


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_staging_folders_of_dead_processes_are_swept(tmp_path):
    dead = tmp_path / f".m.fdet.{_dead_pid()}-abc12345.staging"
    live = tmp_path / f".m.fdet.{os.getppid()}-def67890.staging"  # a process that is alive
    legacy_old, legacy_new = tmp_path / ".m.fdet.k3j4h5g6.staging", tmp_path / ".m.fdet.a1b2c3d4.staging"
    other = tmp_path / f".m.fdet.x.{_dead_pid()}-abc12345.staging"  # another package's
    for d in (dead, live, legacy_old, legacy_new, other):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"half")
    two_days_ago = time.time() - 2 * 86400
    os.utime(legacy_old, (two_days_ago, two_days_ago))
    src = tmp_path / "a.json"
    src.write_text("{}")
    with PackageWriter(tmp_path / "m.fdet", Manifest(name="m")) as w:
        w.add_file(src, "a.json", "calibration-report")
    left = {p.name for p in tmp_path.iterdir() if p.name.endswith(".staging")}
    assert left == {live.name, legacy_new.name, other.name}


def test_stale_calibration_temp_folders_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = tmp_path / f"fakedet-calibrate-{_dead_pid()}-q1w2e3r4"
    live = tmp_path / f"fakedet-calibrate-{os.getppid()}-q1w2e3r4"
    stale.mkdir()
    live.mkdir()
    with owned_tempdir("fakedet-calibrate-") as mine:
        assert mine.name.startswith(f"fakedet-calibrate-{os.getpid()}-")
        assert not stale.exists() and live.exists()
    assert not mine.exists()


def _calibrate(pkg, data, tmp):
    env = dict(os.environ, TMPDIR=str(tmp))
    return subprocess.Popen([sys.executable, "-m", "fakedet", "calibrate", str(pkg), "--data", str(data), "-q",
                             "--method", "entropy", "--force"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _ours(tmp):
    return [p for p in tmp.iterdir() if p.name.startswith("fakedet-")]  # libraries may leave their own notes


def _wait_for(tmp, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if any(p.name.startswith("fakedet-calib-") for p in tmp.iterdir()):  # ranges under way
            return True
        time.sleep(0.01)
    return False


def _interrupted_calibrate(pkg, data, tmp, sig, tries=5):
    """A calibrate run sent `sig` while its ranges are under way. A tiny model can finish
    between the check and the signal; such a run is started again (never more than `tries`)."""
    for _ in range(tries):
        proc = _calibrate(pkg, data, tmp)
        assert _wait_for(tmp, proc), proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:  # the signal found it running
            return proc, err
    raise AssertionError(f"calibrate finished before the signal {tries} times")


def test_sigterm_during_calibrate_removes_its_folders_and_kill_9_leftovers_are_swept(tmp_path, tiny_package):
    pkg, _ = tiny_package
    for i in range(8):
        save_image(tmp_path / "calib" / f"{i}.png", size=(20, 20), seed=i)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, err = _interrupted_calibrate(pkg, tmp_path / "calib", tmp, signal.SIGTERM)
    assert proc.returncode == 143 and err.strip().endswith("fakedet: terminated"), err[-500:]
    assert _ours(tmp) == []
    assert not [p for p in pkg.parent.iterdir() if p.name.endswith(".staging")]

    proc, _ = _interrupted_calibrate(pkg, tmp_path / "calib", tmp, signal.SIGKILL)  # kill -9: no cleanup runs
    assert proc.returncode == -signal.SIGKILL
    assert [p for p in _ours(tmp) if p.name.startswith("fakedet-calibrate-")]
    proc = _calibrate(pkg, tmp_path / "calib", tmp)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-1000:]
    assert _ours(tmp) == []  # the killed run's folders went with this one's


def test_a_training_run_names_its_checkpoints(tmp_path, capsys):
    from fakedet.train.checkpoint import CONFIG, WEIGHTS

    run = tmp_path / "run"
    for ckpt in ("best", "last"):
        (run / ckpt).mkdir(parents=True)
        (run / ckpt / WEIGHTS).write_bytes(b"")
        (run / ckpt / CONFIG).write_text("{}")
    (run / "metrics.jsonl").write_text("")
    for cls in ("0_real", "1_fake"):
        save_image(tmp_path / "data" / cls / "a.png", seed=1)
    for argv in (["export", str(run), "-o", str(tmp_path / "x.fdet")], ["eval", str(run), "--data", str(tmp_path / "data")]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "a training run" in err and f"{run / 'best'}, {run / 'last'}" in err, err


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No hub and an empty cache: nothing here may reach the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def test_open_clip_tag_offline_is_one_line_at_once(offline):
    pytest.importorskip("open_clip")
    from fakedet.errors import DataError
    from fakedet.train.models.clip import build_clip

    t = time.time()
    with pytest.raises(DataError, match=r"--pretrained openai \(ViT-B-32\): the weights could not be fetched: the "
                                        r"model hub is unreachable \(HF_HUB_OFFLINE is set\).*--pretrained PATH"):
        build_clip("ViT-B-32", "openai")
    assert time.time() - t < 10


def test_vae_hub_id_offline_says_the_hub_is_unreachable(offline):
    pytest.importorskip("diffusers")
    from fakedet.errors import DataError
    from fakedet.train.autoencoder import load_autoencoder

    with pytest.raises(DataError, match="the model hub is unreachable .*--vae PATH/TO/FOLDER") as e:
        load_autoencoder("CompVis/ldm-text2im-large-256", "vqvae")
    assert "config.json" not in str(e.value)


def test_hub_probe_fails_fast_on_an_unreachable_endpoint(monkeypatch):
    from fakedet.train import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # loopback: nothing leaves the machine
    t = time.time()
    assert "cannot connect to 127.0.0.1:9" in hub.hub_unreachable()
    assert time.time() - t < hub.PROBE_TIMEOUT_S + 1

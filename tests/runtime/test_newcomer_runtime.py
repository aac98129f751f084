"""The traps a newcomer met on the runtime side and around it (issue: the first ten
minutes), one test each: missing extras in one line, watch failing at once on a source
that was never up, serve's access log, busy port, ?url= and batch_size, TensorRT versions
that do not exist, the demo's training progress, diffusers' accelerate warning."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys

import pytest

from appliance_helpers import REPO, build_brightness_package, flat_png, free_port, request
from conftest import save_image
from fakedet.cli import main

BLOCKER = """
import sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from fakedet.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_brightness_package(tmp_path_factory.mktemp("newcomer-pkg"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("newcomer-inputs")
    for cls in ("0_real", "1_fake"):
        for i in range(2):
            save_image(tmp / "data" / cls / f"{i}.png", seed=i)
    (tmp / "ck").mkdir()
    (tmp / "ck" / "config.json").write_text(json.dumps({"arch": "resnet-tiny-nodown", "model_kwargs": {},
                                                        "input": {}, "threshold": 0.5}))
    (tmp / "ck" / "model.safetensors").write_bytes(b"")
    (tmp / "w.pth").write_bytes(b"PK\x03\x04")
    return tmp


# command, the modules taken away, the extra the line must name
MISSING = [
    ("train --arch resnet-tiny-nodown --data {t}/data --out {t}/run", "torch", "train"),
    ("eval {t}/ck --data {t}/data", "torch", "train"),
    ("import cnndetection {t}/w.pth -o {t}/imported", "torch", "train"),
    ("align --vae {t}/vae --src {t}/data --dst {t}/aligned", "torch,diffusers", "train"),
    ("calibrate {pkg} --data {t}/data", "onnx", "calibrate"),
    ("export {t}/ck -o {t}/x.fdet", "onnx,torch", "export"),
    ("serve {pkg}", "starlette,uvicorn", "serve"),
    ("watch {pkg} --source {t}/clip.avi", "cv2", "watch"),
    ("demo --out {t}/demo", "skimage,sklearn", "demo"),
]


@pytest.mark.parametrize("command,blocked,extra", MISSING, ids=[m[0].split()[0] for m in MISSING])
def test_a_missing_extra_is_one_line_naming_it(command, blocked, extra, inputs, package):
    args = command.format(t=inputs, pkg=package).split()
    r = subprocess.run([sys.executable, "-c", BLOCKER, blocked, *args], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("fakedet: error:") and f"pip install 'fakedet[{extra}]'" in lines[0], lines[0]


# ---- watch -------------------------------------------------------------------------------
def test_watch_fails_at_once_on_a_missing_file_or_camera_with_the_reason(package, tmp_path, capsys):
    pytest.importorskip("cv2")
    rc = main(["watch", str(package), "--source", str(tmp_path / "nothing.avi"), "--reconnects", "2",
               "--reconnect-delay", "0.01"])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing.avi: cannot open this video source: No such file or directory" in err
    assert "retrying" not in err
    rc = main(["watch", str(package), "--source", "97", "--reconnects", "2", "--reconnect-delay", "0.01"])
    err = capsys.readouterr().err
    assert rc == 2 and "retrying" not in err
    if sys.platform.startswith("linux"):
        assert "97: cannot open this video source: /dev/video97: No such file or directory" in err


def test_watch_a_stream_nobody_serves_names_the_refusal(package, capsys):
    pytest.importorskip("cv2")
    port = free_port()  # bound and released: nothing listens there
    rc = main(["watch", str(package), "--source", f"http://127.0.0.1:{port}/cam.mjpg", "--reconnects", "2",
               "--reconnect-delay", "0.01"])
    err = capsys.readouterr().err
    assert rc == 2 and "Connection refused" in err and "retrying" not in err


# ---- serve -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(package, tmp_path_factory):
    pytest.importorskip("uvicorn")
    from appliance_helpers import wait_until

    tmp = tmp_path_factory.mktemp("newcomer-serve")
    port = free_port()
    out, err = open(tmp / "stdout", "wb"), open(tmp / "stderr", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "fakedet", "serve", str(package), "--port", str(port),
                             "--threads", "1", "--access-log"], stdout=out, stderr=err, cwd=REPO)

    def ready():
        try:
            return request(port, "GET", "/readyz", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_until(ready, 60, "serve ready")
        yield port, tmp
    finally:
        proc.terminate()
        proc.wait(30)
        out.close()
        err.close()


def test_access_log_goes_to_stderr(served):
    port, tmp = served
    assert request(port, "POST", "/v1/detect", flat_png(200), {"Content-Type": "image/png"}).status == 200
    from appliance_helpers import wait_until

    wait_until(lambda: b"POST /v1/detect" in (tmp / "stderr").read_bytes(), 10, "the access line")
    assert b"/v1/detect" not in (tmp / "stdout").read_bytes()


def test_url_query_is_refused_by_name_and_batch_size_is_a_count(served):
    port, _ = served
    r = request(port, "POST", "/v1/detect?url=http://example.com/a.jpg", b"", {"Content-Type": "image/png"})
    assert r.status == 400 and "?url= is not supported" in r.json()["error"]["message"]
    r = request(port, "POST", "/v1/detect", flat_png(30), {"Content-Type": "image/png"})
    timings = r.json()["results"][0]["timings_ms"]
    assert timings["batch_size"] == 1 and timings["batch"] == timings["batch_size"]  # old key, one more release


def test_a_busy_port_is_one_line_and_exit_3(package):
    pytest.importorskip("uvicorn")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "fakedet", "serve", str(package), "--port", str(port)],
                           capture_output=True, text=True, timeout=60, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], r.stderr


# ---- smaller ones --------------------------------------------------------------------------
def test_trt_version_must_be_a_tensorrt_release(package, capsys):
    from fakedet.runtime.tensorrt_version import known_cache_tag_number

    assert known_cache_tag_number("8.6.1") == 8601 and known_cache_tag_number("10.3") == 100300
    rc = main(["calibrate", str(package), "--data", str(package), "--trt-version", "9.9"])
    err = capsys.readouterr().err
    assert rc == 2 and "TensorRT 9.9 is not a TensorRT release" in err


def test_the_demo_shows_training_progress_on_the_console(tmp_path):
    from fakedet.demo.stages import Runner

    console = io.StringIO()
    runner = Runner(tmp_path, total=1, console=console)

    def train():
        for epoch in (1, 2):
            print(f"epoch {epoch}/2: train loss 0.5, val balanced accuracy 0.9 (1.0 s)")
            print("chatter that stays in the log")

    with runner.installed():
        runner.stage("train", train, progress=r"^epoch \d+/\d+:")
    shown = console.getvalue()
    assert "epoch 1/2: train loss" in shown and "epoch 2/2" in shown and "chatter" not in shown
    assert "chatter" in (tmp_path / "logs" / "01-train.log").read_text()


def test_loading_an_autoencoder_prints_no_accelerate_advice(capfd):
    pytest.importorskip("diffusers")
    from fakedet.train.autoencoder import load_autoencoder

    load_autoencoder(str(REPO / "demo" / "autoencoder"))
    captured = capfd.readouterr()
    assert "accelerate" not in captured.err + captured.out


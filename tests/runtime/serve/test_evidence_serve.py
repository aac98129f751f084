"""`POST /v1/detect?explain=1`: the evidence grid and the partial verdict from a real server."""

import io
import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("torch")

from appliance_helpers import ServerProcess, build_brightness_package, request  # noqa: E402


def _png(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, evidence_packages):
    tmp = tmp_path_factory.mktemp("evserve")
    pkg = evidence_packages[0]
    plain = build_brightness_package(tmp / "bright")
    a = ServerProcess(pkg, tmp / "a.log", "--max-batch", 4).start()
    b = ServerProcess(plain, tmp / "b.log").start()
    yield pkg, a, b
    a.kill()
    b.kill()


def _detect(port, body, query=""):
    r = request(port, "POST", "/v1/detect" + query, body, {"Content-Type": "image/png"})
    assert r.status == 200, r.body
    return json.loads(r.body)["results"][0]


def test_explain_returns_the_grid_of_the_runtimes_map(servers):
    from fakedet.runtime.detector import Detector

    pkg, a, _ = servers
    body = _png(3)
    plain = _detect(a.port, body)
    assert "evidence" not in plain and "partial" not in plain
    got = _detect(a.port, body, "?explain=1")
    with Detector.open(pkg, backend="ort-cpu") as det:
        (ref,) = det.predict([body], explain=True)
    want = ref.evidence.summary()
    assert got["score"] == pytest.approx(plain["score"], abs=1e-6)
    assert np.allclose(got["evidence"]["grid"], want["grid"], atol=1e-3)
    assert got["evidence"]["area_over_threshold"] == pytest.approx(want["area_over_threshold"])
    assert got["partial"] == ref.partial and got["evidence"]["source"] == "exported"


def test_a_model_without_the_output_says_so(servers):
    _, _, b = servers
    got = _detect(b.port, _png(1), "?explain=1")
    assert got["evidence"] is None and "predict --explain" in got["evidence_note"]

"""`fakedet serve` with a caption-aware package (issue 15): a real server on a free
loopback port scoring a random-weight clip-mlp that reads each image with its caption.

The server batches within a 250 ms window, so concurrent requests provably share a
batch; every score is held against `Detector.predict(images, captions=...)` in-process."""

from __future__ import annotations

import io
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytest.importorskip("tokenizers")
pytest.importorskip("ftfy")

from appliance_helpers import ServerProcess, metric_value, multipart, request, wait_until  # noqa: E402
from caption_helpers import caption_package, export_caption_package, micro_clip  # noqa: E402,F401  (fixtures)

MAX_CAPTION_BYTES = 2000
CAPTIONS = ["a dog running on a beach at sunset", "Café crème — 東京 ☕️🚀", "&lt;b&gt;breaking&lt;/b&gt; news",
            "a red bus", "two cats asleep on a sofa", "THE QUICK brown fox!!!"]


def noise_png(seed: int, size=(24, 20)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(caption_package, tmp_path_factory):  # noqa: F811
    pkg, _ = caption_package
    tmp = tmp_path_factory.mktemp("serve-captions")
    proc = ServerProcess(pkg, tmp / "server.log", "--max-batch", 8, "--max-delay-ms", 250, "--max-queue", 64,
                         "--max-caption-bytes", MAX_CAPTION_BYTES).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def reference(caption_package):  # noqa: F811
    from fakedet.runtime import Detector

    det = Detector.open(caption_package[0], backend="ort-cpu", threads=1)
    yield det
    det.close()


def detect(port, body, ctype="image/png", query=""):
    return request(port, "POST", "/v1/detect" + query, body, {"Content-Type": ctype})


def scores_of(reply) -> list:
    return [r["score"] for r in reply.json()["results"]]


def metrics(port) -> str:
    return request(port, "GET", "/metrics").body.decode()


# ---- scores ----------------------------------------------------------------------------------
def test_captions_reach_the_model_and_scores_equal_detector_predict(server, reference):
    images = [noise_png(i) for i in range(3)]
    want = reference.predict(images, captions=CAPTIONS[:3])
    assert all(p.ok for p in want)
    # The captions matter to this model: a different caption moves the score.
    other = reference.predict(images[:1], captions=[CAPTIONS[3]])[0]
    assert abs(other.score - want[0].score) > 1e-5

    # One caption per image, in the images' order.
    body, ctype = multipart([(f"im{i}.png", d) for i, d in enumerate(images)], caption=CAPTIONS[:3])
    r = detect(server.port, body, ctype)
    assert r.status == 200, r
    assert scores_of(r) == pytest.approx([p.score for p in want], abs=1e-6)
    assert r.json()["caption"] == {"received": True, "used": True, "count": 3}

    # One caption for all the images.
    body, ctype = multipart([(f"im{i}.png", d) for i, d in enumerate(images[:2])], caption=CAPTIONS[4])
    r = detect(server.port, body, ctype)
    assert r.status == 200, r
    same = reference.predict(images[:2], captions=[CAPTIONS[4]] * 2)
    assert scores_of(r) == pytest.approx([p.score for p in same], abs=1e-6)

    # A raw body with ?caption= (percent-encoded UTF-8).
    r = detect(server.port, images[0], query="?caption=" + urllib.parse.quote(CAPTIONS[1]))
    assert r.status == 200, r
    (res,) = r.json()["results"]
    assert res["score"] == pytest.approx(reference.predict(images[:1], captions=[CAPTIONS[1]])[0].score, abs=1e-6)
    assert res["decision"] in ("fake", "real") and res["error"] is None


def test_concurrent_requests_with_different_captions_share_a_batch_and_keep_their_own(server, reference):
    images = [noise_png(10 + i) for i in range(len(CAPTIONS))]
    want = [p.score for p in reference.predict(images, captions=CAPTIONS)]
    img = noise_png(99)  # the same image under every caption too: only the caption tells them apart
    want_same = [p.score for p in reference.predict([img] * len(CAPTIONS), captions=CAPTIONS)]
    assert len({round(s, 6) for s in want_same}) > 1

    def one(i, image):
        return detect(server.port, image, query="?caption=" + urllib.parse.quote(CAPTIONS[i]))

    largest = 0
    for attempt in range(4):  # bounded: the 250 ms window batches them on any sane machine
        for data, expect in ((images, want), ([img] * len(CAPTIONS), want_same)):
            with ThreadPoolExecutor(len(CAPTIONS)) as pool:
                replies = list(pool.map(one, range(len(CAPTIONS)), data))
            assert all(r.status == 200 for r in replies), replies
            got = [r.json()["results"][0] for r in replies]
            assert [g["score"] for g in got] == pytest.approx(expect, abs=1e-6)
            largest = max(largest, *(g["timings_ms"]["batch"] for g in got))
        if largest >= 3:
            break
    assert largest >= 3, "concurrent requests were never batched together"


# ---- missing and bad captions -----------------------------------------------------------------
def test_missing_caption_fails_that_image_only_and_is_counted(server, reference):
    before = metrics(server.port)
    images = [noise_png(20), noise_png(21)]
    # No caption at all: each image gets its error; nothing scored -> 422, as for bad images.
    body, ctype = multipart([("a.png", images[0]), ("b.png", images[1])])
    r = detect(server.port, body, ctype)
    assert r.status == 422, r
    for res in r.json()["results"]:
        assert res["decision"] == "error" and res["score"] is None and "no caption" in res["error"]
    note = r.json()["caption"]
    assert note["received"] is False and note["used"] is False and "needs one per image" in note["reason"]
    # A blank caption for one image: that image fails, the other is scored.
    body, ctype = multipart([("a.png", images[0]), ("b.png", images[1])], caption=[CAPTIONS[0], "   "])
    r = detect(server.port, body, ctype)
    assert r.status == 200, r
    a, b = r.json()["results"]
    assert a["score"] == pytest.approx(reference.predict(images[:1], captions=[CAPTIONS[0]])[0].score, abs=1e-6)
    assert b["decision"] == "error" and "no caption" in b["error"]

    def delta(name, labels):
        return metric_value(metrics(server.port), name, labels) - metric_value(before, name, labels)

    # The request counters move once the answer has gone out: wait for them (bounded).
    wait_until(lambda: delta("fakedet_requests_total", {"code": "200", "endpoint": "/v1/detect"}) >= 1,
               10, "the request counter")
    assert delta("fakedet_requests_total", {"code": "422", "endpoint": "/v1/detect"}) == 1
    assert delta("fakedet_requests_total", {"code": "200", "endpoint": "/v1/detect"}) == 1
    assert delta("fakedet_images_total", {"outcome": "failed"}) == 3
    assert delta("fakedet_images_total", {"outcome": "scored"}) == 1
    assert delta("fakedet_errors_total", {"kind": "bad_caption"}) == 3


def test_bad_captions_are_clear_4xx(server):
    png = noise_png(30)
    cases = {
        "not UTF-8 in a form part": (multipart([("a.png", png)], caption=b"caf\xe9 latin-1"), "", 400, "not UTF-8"),
        "not UTF-8 in the query": ((png, "image/png"), "?caption=caf%E9", 400, "not UTF-8"),
        "too long": (multipart([("a.png", png)], caption="x" * (MAX_CAPTION_BYTES + 1)), "", 413,
                     "--max-caption-bytes"),
        "two captions for three images": (multipart([("a.png", png)] * 3, caption=["one", "two"]), "", 400,
                                          "one per image"),
        "both in the query and the form": (multipart([("a.png", png)], caption="one"), "?caption=two", 400,
                                           "one way"),
    }
    for what, ((body, ctype), query, status, text) in cases.items():
        r = detect(server.port, body, ctype, query)
        assert r.status == status, (what, r)
        assert text in r.json()["error"]["message"], (what, r)
    assert detect(server.port, png, query="?caption=fine").status == 200  # still serving


# ---- what the service says about captions -----------------------------------------------------
def test_model_summary_and_openapi_describe_the_caption_input(server, caption_package):  # noqa: F811
    from fakedet.package import ModelPackage

    with ModelPackage.open(caption_package[0]) as pkg:
        spec = pkg.manifest.text_input
    m = request(server.port, "GET", "/v1/model").json()
    assert m["caption_input"] is True
    caps = m["captions"]
    assert caps["context_length"] == spec.context_length and caps["input"] == spec.name
    assert caps["empty_caption"] == "refuse" and caps["tokenizer"] == "clip-bpe"
    assert caps["max_caption_bytes"] == MAX_CAPTION_BYTES and "one per image" in caps["per_request"]
    detect_doc = request(server.port, "GET", "/openapi.json").json()["paths"]["/v1/detect"]["post"]
    assert "caption" in [p["name"] for p in detect_doc["parameters"]]
    form = detect_doc["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["caption"]
    assert form["type"] == "array" and "one per image" in form["description"]
    assert f"{spec.context_length} tokens" in detect_doc["description"]


def test_a_package_that_scores_empty_captions_serves_images_without_one(caption_package, tmp_path):  # noqa: F811
    from fakedet.runtime import Detector

    pkg = export_caption_package(caption_package[1], tmp_path / "empty-ok.fdet", empty_caption="score")
    png = noise_png(40)
    with Detector.open(pkg, backend="ort-cpu", threads=1) as det:
        want = det.predict([png])[0]
    assert want.ok
    with ServerProcess(pkg, tmp_path / "server.log", "--max-delay-ms", 0) as proc:
        assert request(proc.port, "GET", "/v1/model").json()["captions"]["empty_caption"] == "score"
        r = detect(proc.port, png)
        assert r.status == 200, r
        assert r.json()["results"][0]["score"] == pytest.approx(want.score, abs=1e-6)
        assert "empty caption" in r.json()["caption"]["reason"]

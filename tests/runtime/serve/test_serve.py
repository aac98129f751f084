"""`fakedet serve` as a real process on a free loopback port: every endpoint and limit,
batching across concurrent requests, hostile uploads. Two servers per module:

- `server`: a bearer token, a 200 kB body limit, small batches (5 ms window);
- `slow`: a 1.5 s batching window and a queue of 4 images, so requests provably wait
  together (batching, 503 when the queue is full, 504 past a request's timeout).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from appliance_helpers import (  # noqa: E402
    ServerProcess,
    build_brightness_package,
    flat_png,
    metric_value,
    multipart,
    request,
    wait_until,
)

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BYTES = 200_000


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_brightness_package(tmp_path_factory.mktemp("serve-pkg"))


@pytest.fixture(scope="module")
def server(package, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    token = tmp / "token"
    token.write_text(TOKEN + "\n")
    spool = tmp / "tmpdir"  # TMPDIR of the server: uploads must never land there
    spool.mkdir()
    import os

    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(spool)
    try:
        proc = ServerProcess(package, tmp / "server.log", "--token-file", token, "--max-bytes", MAX_BYTES,
                             "--max-batch", 8, "--max-queue", 64).start()
    finally:
        if old is None:
            os.environ.pop("TMPDIR")
        else:
            os.environ["TMPDIR"] = old
    proc.spool = spool
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def slow(package, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve-slow")
    proc = ServerProcess(package, tmp / "server.log", "--max-delay-ms", 1500, "--max-batch", 64,
                         "--max-queue", 4).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def reference(package):
    """The same package scored in-process by the embedding API: the server must agree."""
    from fakedet.runtime import Detector

    det = Detector.open(package, backend="ort-cpu")
    yield det
    det.close()


def detect(port, body, ctype="image/png", headers=AUTH, query=""):
    return request(port, "POST", "/v1/detect" + query, body, {"Content-Type": ctype, **headers})


def metrics(port) -> str:
    r = request(port, "GET", "/metrics", headers=AUTH)
    assert r.status == 200
    return r.body.decode()


# ---- scoring -----------------------------------------------------------------------------
def test_one_image_as_the_body_is_scored_like_the_runtime(server, reference):
    png = flat_png(230)
    r = detect(server.port, png)
    assert r.status == 200, r
    (res,) = r.json()["results"]
    want = reference.predict([png])[0]
    assert res["score"] == pytest.approx(want.score, abs=1e-6)
    assert res["decision"] == ("fake" if want.is_fake else "real") == "fake"
    assert res["threshold"] == 0.5 and res["error"] is None and res["name"] == "body"
    assert res["model"]["name"] == "bright" and len(res["model"]["sha256"]) == 64
    assert res["backend"] == "ort-cpu"
    assert set(res["timings_ms"]) >= {"queue", "decode", "infer"}
    assert all(res["timings_ms"][k] >= 0 for k in ("queue", "decode", "infer"))


def test_multipart_parts_are_named_and_each_scored_or_failed(server, reference):
    parts = [("dark.png", flat_png(20)), ("broken.jpg", b"\xff\xd8\xff\xe0 not really"), ("light.png", flat_png(240))]
    body, ctype = multipart(parts, caption="a cat on a sofa")
    r = detect(server.port, body, ctype)
    assert r.status == 200, r
    got = {x["name"]: x for x in r.json()["results"]}
    assert list(got) == ["dark.png", "broken.jpg", "light.png"]
    assert got["dark.png"]["decision"] == "real" and got["light.png"]["decision"] == "fake"
    assert got["dark.png"]["score"] == pytest.approx(reference.predict([parts[0][1]])[0].score, abs=1e-6)
    assert got["broken.jpg"]["decision"] == "error" and got["broken.jpg"]["score"] is None
    assert got["broken.jpg"]["error"]
    assert r.json()["caption"] == {"received": True, "used": False, "reason": "this model has no caption input"}


def test_an_image_only_model_takes_any_captions_but_not_undecodable_ones(server):
    body, ctype = multipart([("a.png", flat_png(30))], caption=["one", "two", "three"])
    r = detect(server.port, body, ctype)
    assert r.status == 200 and r.json()["caption"]["used"] is False, r
    assert detect(server.port, flat_png(30), query="?caption=caf%C3%A9").json()["caption"]["received"] is True
    body, ctype = multipart([("a.png", flat_png(30))], caption=b"\xff\xfe not UTF-8")
    r = detect(server.port, body, ctype)
    assert r.status == 400 and "caption part 1 is not UTF-8" in r.json()["error"]["message"], r
    m = request(server.port, "GET", "/v1/model", headers=AUTH).json()
    assert m["caption_input"] is False and m["captions"] is None


def test_no_image_or_bad_requests_are_400_and_a_lone_bad_image_422(server):
    body, ctype = multipart([], caption="only a caption")
    assert detect(server.port, body, ctype).status == 400
    assert detect(server.port, b"--x\r\ngarbage", "multipart/form-data; boundary=x").status == 400
    assert detect(server.port, flat_png(9), query="?timeout_s=abc").status == 400
    r = detect(server.port, b"definitely not an image")
    assert r.status == 422 and r.json()["results"][0]["error"]


# ---- hostile uploads -----------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def own_hostile_inputs() -> list[tuple[str, bytes]]:
    """A handful of hostile uploads: (name, bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    bomb = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + _png_chunk(b"IEND", b"")
    return [
        ("truncated.jpg", jpeg[: len(jpeg) // 2]),
        ("not-an-image.png", b"MZ\x90\x00 this is an executable, not a picture" * 4),
        ("empty.png", b""),
        ("bomb-header.png", bomb),
        ("header-only.png", b"\x89PNG\r\n\x1a\n"),
        ("text.jpg", "ÿØÿ <html> \u2603".encode()),
    ]


# The corpora: our own few, and the trust-boundary issue's hostile corpus
# (tests/hostile_corpus.py, every format Pillow opens); sent in requests and item by item.
def trust_boundary_corpus():
    from hostile_corpus import hostile_images

    return hostile_images()


# corpus -> (builder, every item must be an error: False where some crafted files are valid images)
HOSTILE_CORPORA = {"own": (own_hostile_inputs, True), "trust-boundary": (trust_boundary_corpus, False)}


def _requests_of(items, max_items=32, max_bytes=150_000):
    """Split a corpus into multipart requests within the test server's body and queue limits."""
    out, cur, size = [], [], 0
    for name, data in items:
        if cur and (len(cur) == max_items or size + len(data) > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append((name, data))
        size += len(data)
    return out + ([cur] if cur else [])


@pytest.mark.parametrize("corpus", list(HOSTILE_CORPORA))
def test_hostile_corpus_each_part_gets_its_error_and_the_server_keeps_serving(server, corpus):
    build, all_errors = HOSTILE_CORPORA[corpus]
    items = build()
    good = ("good.png", flat_png(200))
    for part in _requests_of(items):
        body, ctype = multipart(part + [good])
        r = detect(server.port, body, ctype)
        assert r.status == 200, r
        results = r.json()["results"]
        assert [x["name"] for x in results] == [n for n, _ in part] + ["good.png"]
        for res in results[:-1]:
            if all_errors or res["error"]:
                assert res["decision"] == "error" and res["error"], res
            else:
                assert res["score"] is not None and 0 <= res["score"] <= 1, res
        assert results[-1]["error"] is None and results[-1]["score"] is not None
    for name, data in items:  # one by one as raw bodies: an error each, never a 5xx
        r = detect(server.port, data)
        assert r.status in (200, 422), (name, r)
        assert r.status == 200 or r.json()["results"][0]["error"], (name, r)
    assert request(server.port, "GET", "/healthz").status == 200
    assert detect(server.port, flat_png(128)).status == 200
    assert metric_value(metrics(server.port), "fakedet_errors_total", {"kind": "internal"}) == 0


# ---- limits --------------------------------------------------------------------------------
def test_token_is_required_on_the_api_and_not_on_probes(server):
    png = flat_png(100)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        r = detect(server.port, png, headers=headers)
        assert r.status == 401 and r.headers["www-authenticate"].startswith("Bearer"), headers
    assert request(server.port, "GET", "/v1/model").status == 401
    assert request(server.port, "GET", "/metrics").status == 401
    for path in ("/healthz", "/readyz", "/", "/openapi.json", "/docs"):
        assert request(server.port, "GET", path).status == 200, path
    assert metric_value(metrics(server.port), "fakedet_errors_total", {"kind": "unauthorized"}) >= 6


def _raw(port, head: bytes, body_chunks=(), read_timeout=10.0) -> bytes:
    """Send raw HTTP and return whatever the server answers before it closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:
                break
        data = b""
        while b"\r\n\r\n" not in data:
            part = s.recv(65536)
            if not part:
                break
            data += part
        return data
    finally:
        s.close()


def test_413_from_the_declared_length_before_any_body_is_sent(server):
    t0 = time.perf_counter()
    head = (f"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {MAX_BYTES * 50}\r\nExpect: 100-continue\r\n\r\n").encode()
    answer = _raw(server.port, head)  # as curl does: no body until "100 Continue", which never comes
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert time.perf_counter() - t0 < 1.5  # refused at once, not after waiting for a body
    head = head.replace(b"Expect: 100-continue\r\n", b"")
    assert _raw(server.port, head).startswith(b"HTTP/1.1 413")  # no body sent, none awaited for long


def test_413_while_a_chunked_body_streams_in_never_finished(server):
    head = (f"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"%x\r\n%s\r\n" % (50_000, b"\0" * 50_000)
    answer = _raw(server.port, head, [chunk] * 6)  # 300 kB > 200 kB, and no terminating chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # An ordinary client that sends its whole (oversized) body first still reads the 413.
    body, ctype = multipart([("big.bin", b"\1" * (MAX_BYTES + 1))])
    assert detect(server.port, body, ctype).status == 413
    assert detect(server.port, flat_png(50)).status == 200


def test_more_images_than_the_queue_holds_is_413(server):
    body, ctype = multipart([(f"{i}.png", flat_png(i)) for i in range(65)])
    r = detect(server.port, body, ctype)
    assert r.status == 413 and "max-queue" in r.json()["error"]["message"]


def test_uploads_never_touch_the_disk(server):
    before = set(server.spool.iterdir())  # (other tools may keep a file there from start-up)
    body, ctype = multipart([("a.png", flat_png(90, size=(300, 200))), ("pad.bin", b"\7" * 150_000)])
    assert detect(server.port, body, ctype).status == 200
    assert set(server.spool.iterdir()) == before


def test_full_queue_is_503_with_retry_after_and_concurrent_requests_share_one_batch(slow):
    before = metrics_open(slow.port)
    pngs = [flat_png(40 * i + 30) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(detect, slow.port, png, "image/png", {}) for png in pngs]
        wait_until(lambda: metric_value(metrics_open(slow.port), "fakedet_queue_depth") == 4)
        r = detect(slow.port, flat_png(1), headers={})
        assert r.status == 503 and int(r.headers["retry-after"]) >= 1, r
        replies = [f.result() for f in futures]
    assert [x.status for x in replies] == [200] * 4
    assert [x.json()["results"][0]["timings_ms"]["batch"] for x in replies] == [4] * 4
    after = metrics_open(slow.port)
    grew = {le: metric_value(after, "fakedet_batch_size_bucket", {"le": le})
            - metric_value(before, "fakedet_batch_size_bucket", {"le": le}) for le in ("2.0", "4.0", "+Inf")}
    assert grew == {"2.0": 0, "4.0": 1, "+Inf": 1}, grew  # one batch of 4, and nothing else
    assert metric_value(after, "fakedet_errors_total", {"kind": "overloaded"}) >= 1


def test_request_past_its_timeout_is_504_and_the_server_recovers(slow):
    t0 = time.perf_counter()
    r = detect(slow.port, flat_png(77), headers={}, query="?timeout_s=0.3")
    assert r.status == 504, r
    assert time.perf_counter() - t0 < 1.4  # answered at the deadline, not when the batch ran
    wait_until(lambda: metric_value(metrics_open(slow.port), "fakedet_queue_depth") == 0)
    assert detect(slow.port, flat_png(77), headers={}).status == 200


def metrics_open(port) -> str:
    return request(port, "GET", "/metrics").body.decode()



# ---- descriptive endpoints ----------------------------------------------------------------
def test_model_summary_health_and_readiness(server, package):
    m = request(server.port, "GET", "/v1/model", headers=AUTH).json()
    assert m["name"] == "bright" and m["input"]["size"] == [16, 16] and m["threshold"]["value"] == 0.5
    assert m["artifact"]["file"] == "model.onnx" and len(m["artifact"]["sha256"]) == 64
    assert m["backend"]["name"] == "ort-cpu" and m["service"]["max_bytes"] == MAX_BYTES
    assert request(server.port, "GET", "/healthz").json() == {"status": "alive"}
    ready = request(server.port, "GET", "/readyz").json()
    assert ready["ready"] is True and ready["warmup_s"] >= 0


def test_openapi_describes_exactly_the_routes_and_docs_render_offline(server):
    doc = request(server.port, "GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/", "/healthz", "/readyz", "/metrics", "/v1/model", "/v1/detect",
                                 "/openapi.json", "/docs"}
    codes = set(doc["paths"]["/v1/detect"]["post"]["responses"])
    assert {"200", "401", "413", "503", "504"} <= codes
    assert "url" not in json.dumps(doc["paths"]["/v1/detect"]["post"]["parameters"])
    html = request(server.port, "GET", "/docs").body.decode()
    assert "POST /v1/detect" in html and "http://" not in html and "https://" not in html
    for path in doc["paths"]:
        if path not in ("/v1/detect",):
            assert request(server.port, "GET", path, headers=AUTH).status == 200, path


def test_console_page_is_one_static_file_without_external_resources(server):
    r = request(server.port, "GET", "/")
    page = r.body.decode()
    assert r.status == 200 and r.headers["content-type"].startswith("text/html")
    assert "/v1/detect" in page and 'id="drop"' in page
    assert "http://" not in page and "https://" not in page  # no CDN: works on an offline appliance


def test_metrics_count_requests_errors_images_and_stage_latency(server):
    text = metrics(server.port)
    assert metric_value(text, "fakedet_requests_total", {"code": "200", "endpoint": "/v1/detect"}) >= 1
    assert metric_value(text, "fakedet_images_total", {"outcome": "scored"}) >= 1
    for stage in ("queue", "decode", "infer", "request"):
        assert metric_value(text, "fakedet_stage_seconds_count", {"stage": stage}) >= 1, stage
    assert metric_value(text, "fakedet_batch_size_count") >= 1
    assert "fakedet_queue_depth 0.0" in text


def test_concurrent_clients_all_get_their_own_answers(server, reference):
    values = [int(v) for v in np.linspace(0, 255, 24)]

    def one(v):
        return v, detect(server.port, flat_png(v))

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(one, values))
    want = {v: p.score for v, p in zip(values, reference.predict([flat_png(v) for v in values]))}
    for v, r in replies:
        assert r.status == 200
        assert r.json()["results"][0]["score"] == pytest.approx(want[v], abs=1e-6)


def test_binding_wider_than_loopback_without_a_token_warns(tmp_path, capsys):
    from fakedet.cli import main

    rc = main(["serve", str(tmp_path / "missing.fdet"), "--host", "0.0.0.0"])  # fails before binding
    err = capsys.readouterr().err
    assert rc == 2 and "WARNING: listening on 0.0.0.0 without --token-file" in err
    token = tmp_path / "t"
    token.write_text("abc")
    main(["serve", str(tmp_path / "missing.fdet"), "--host", "0.0.0.0", "--token-file", str(token)])
    assert "WARNING" not in capsys.readouterr().err
    main(["serve", str(tmp_path / "missing.fdet")])
    assert "WARNING" not in capsys.readouterr().err


def test_server_log_has_no_tracebacks(server):
    assert "Traceback" not in server.log()




def test_without_the_serve_extra_the_command_says_what_to_install(monkeypatch, tmp_path, capsys):
    import fakedet.runtime.serve.cli as serve_cli
    from fakedet.cli import main

    monkeypatch.setattr(serve_cli, "SERVE_MODULES", serve_cli.SERVE_MODULES + ("no_such_module_xyz",))
    assert main(["serve", str(tmp_path / "m.fdet")]) == 2
    assert "pip install 'fakedet[serve]'" in capsys.readouterr().err


def test_sizes_and_token_files_are_read_strictly(tmp_path):
    from fakedet.errors import FakedetError
    from fakedet.runtime.serve.config import is_loopback, parse_size, read_token

    assert [parse_size(v) for v in ("20MB", "512KiB", "1000", "1.5mb", "2 GiB")] == \
        [20_000_000, 524_288, 1000, 1_500_000, 2 * 2**30]
    for bad in ("", "MB", "-3MB", "12 parsecs", "0"):
        with pytest.raises(FakedetError):
            parse_size(bad)
    tok = tmp_path / "t"
    tok.write_text("  abc123\n")
    assert read_token(tok) == "abc123"
    for content in ("", "\n  \n", "two words"):
        tok.write_text(content)
        with pytest.raises(FakedetError, match=str(tok)):
            read_token(tok)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("myhost")

"""Provenance beside the score: each declaration read correctly through the runtime API,
`predict --json` and `POST /v1/detect`; hostile metadata costs only the provenance record,
within the time bound, and the score is always the one without provenance."""

import json
import time

import pytest

import provenance_helpers as ph
from appliance_helpers import ServerProcess, build_brightness_package, request
from fakedet.cli import main
from fakedet.runtime import Detector
from fakedet.runtime import provenance_c2pa
from fakedet.runtime.provenance import ProvenanceLimits, read_provenance

c2pa = pytest.importorskip("c2pa")

BOUND_S = 2.5  # the reader's time bound (2 s for C2PA) plus slack for a loaded machine


@pytest.fixture(scope="module")
def corpus():
    """name -> (bytes, expected summary, verified, basis, C2PA status)."""
    signed = ph.c2pa_signed_jpeg()
    return {
        "xmp-generated.jpg": (ph.jpeg_with_xmp("trainedAlgorithmicMedia"), "declared-generated", False, "xmp", "absent"),
        "xmp-composite.jpg": (ph.jpeg_with_xmp("compositeWithTrainedAlgorithmicMedia", as_element=True),
                              "declared-composite", False, "xmp", "absent"),
        "xmp-capture.png": (ph.png_with_text(**{"XML:com.adobe.xmp": ph.xmp_packet("digitalCapture").decode()}),
                            "declared-capture", False, "xmp", "absent"),
        "a1111.png": (ph.png_with_text(parameters="a cat on a sofa\nSteps: 20, Sampler: Euler a"),
                      "declared-generated", False, "PNG text parameters", "absent"),
        "firefly.jpg": (ph.jpeg_with_software("Adobe Firefly 3"), "declared-generated", False, "EXIF Software", "absent"),
        "editor.jpg": (ph.jpeg_with_software("GIMP 2.10"), "none", False, None, "absent"),
        "plain.jpg": (ph.jpeg(), "none", False, None, "absent"),
        "c2pa-signed.jpg": (signed, "declared-generated", True, "c2pa", "valid"),
        "c2pa-tampered.jpg": (ph.tampered(signed), "declared-generated", False, "c2pa (invalid)", "invalid"),
    }


def check(record, expected, name):
    _, summary, verified, basis, status = expected
    assert (record["summary"], record["verified"], record["basis"], record["c2pa"]["status"]) == \
        (summary, verified, basis, status), (name, record)


def test_each_declaration_is_read_as_made(corpus):
    for name, expected in corpus.items():
        check(read_provenance(expected[0]), expected, name)
    signed = read_provenance(corpus["c2pa-signed.jpg"][0])["c2pa"]
    assert signed["claim_generator"] == "fakedet-test-generator 1.0" and signed["failures"] == []
    assert signed["signer"]["common_name"] == "fakedet test signer" and signed["signer_trusted"] is False
    assert signed["actions"] == [{"action": "c2pa.created", "digitalSourceType": ph.IPTC + "trainedAlgorithmicMedia"}]
    bad = read_provenance(corpus["c2pa-tampered.jpg"][0])["c2pa"]
    assert bad["validation_state"] == "Invalid" and "assertion.dataHash.mismatch" in bad["failures"]


def test_without_the_c2pa_library_the_rest_still_reads(corpus, monkeypatch):
    def missing():
        raise ImportError("No module named 'c2pa'")

    monkeypatch.setattr(provenance_c2pa, "_library", missing)
    rec = read_provenance(corpus["c2pa-signed.jpg"][0])
    assert rec["c2pa"]["status"] == "not installed" and rec["summary"] == "none" and rec["error"] is None
    check(read_provenance(corpus["xmp-generated.jpg"][0]), corpus["xmp-generated.jpg"], "xmp without c2pa")


def test_runtime_api_and_predict_json_report_provenance_and_the_same_score(corpus, tmp_path, capsys):
    pkg = build_brightness_package(tmp_path / "pkg")
    paths = []
    for name, (data, *_rest) in corpus.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    with Detector.open(pkg, backend="ort-cpu") as det:
        plain = det.predict(paths)
        with_prov = det.predict(paths, provenance=True)
        from_bytes = det.predict([corpus[p.name][0] for p in paths], provenance=True)
    for p, a, b, c in zip(paths, plain, with_prov, from_bytes):
        assert a.provenance is None and a.score == b.score == c.score and a.error is None
        check(b.provenance, corpus[p.name], p.name)
        check(c.provenance, corpus[p.name], p.name)
    capsys.readouterr()
    assert main(["predict", str(pkg), *map(str, paths), "--json", "-q", "--backend", "ort-cpu"]) == 0
    lines = {d["path"]: d for d in map(json.loads, capsys.readouterr().out.splitlines())}
    for p, a in zip(paths, plain):
        assert lines[str(p)]["score"] == a.score
        check(lines[str(p)]["provenance"], corpus[p.name], p.name)
    assert main(["predict", str(pkg), str(paths[0]), "--json", "-q", "--no-provenance"]) == 0
    assert json.loads(capsys.readouterr().out)["provenance"] is None


def test_hostile_metadata_is_a_provenance_error_within_the_bound_and_the_score_stays(tmp_path):
    hostile = {"huge-xmp.png": ph.huge_xmp_png(3), "malformed-c2pa.jpg": ph.malformed_c2pa_jpeg(),
               "deep-xmp.jpg": ph.deeply_nested_xmp_jpeg()}
    pkg = build_brightness_package(tmp_path / "pkg")
    with Detector.open(pkg, backend="ort-cpu") as det:
        for name, data in hostile.items():
            t0 = time.perf_counter()
            (p,) = det.predict([data], provenance=True)
            assert time.perf_counter() - t0 < BOUND_S, name
            assert p.ok and p.score == det.predict([data])[0].score, name
            rec = p.provenance
            if name == "deep-xmp.jpg":  # nesting is no problem for a reader that never recurses
                assert rec["summary"] == "declared-capture" and rec["error"] is None
            else:
                assert rec["error"] and rec["summary"] == "none", (name, rec)
    assert "over the 1048576-byte limit" in read_provenance(hostile["huge-xmp.png"])["error"]
    assert read_provenance(hostile["malformed-c2pa.jpg"])["error"].startswith("C2PA: ")
    small = read_provenance(hostile["huge-xmp.png"], ProvenanceLimits(max_bytes=1 << 20))
    assert "over the 1048576-byte provenance limit" in small["error"]


def test_a_c2pa_read_past_its_time_bound_is_an_error(corpus, monkeypatch):
    def slow(data):
        time.sleep(0.5)
        return {"status": "valid"}

    monkeypatch.setattr("fakedet.runtime.provenance.read_c2pa", slow)
    t0 = time.perf_counter()
    rec = read_provenance(corpus["plain.jpg"][0], ProvenanceLimits(timeout_s=0.05))
    assert time.perf_counter() - t0 < 0.4
    assert rec["c2pa"]["status"] == "error" and "longer than 0.05 s" in rec["error"]


def test_serve_returns_provenance_beside_the_score(corpus, tmp_path):
    pkg = build_brightness_package(tmp_path / "pkg")
    names = ["c2pa-signed.jpg", "c2pa-tampered.jpg", "xmp-composite.jpg", "plain.jpg"]
    with Detector.open(pkg, backend="ort-cpu") as det:
        want = {n: det.predict([corpus[n][0]])[0].score for n in names}
    with ServerProcess(pkg, tmp_path / "serve.log") as server:
        replies = {n: request(server.port, "POST", "/v1/detect?name=" + n, corpus[n][0],
                              {"Content-Type": "image/jpeg"}) for n in names}
        hostile = request(server.port, "POST", "/v1/detect", ph.malformed_c2pa_jpeg(), {"Content-Type": "image/jpeg"})
    for n, r in replies.items():
        assert r.status == 200, r
        (res,) = r.json()["results"]
        assert res["score"] == pytest.approx(want[n], abs=1e-6)
        check(res["provenance"], corpus[n], n)
    (res,) = hostile.json()["results"]
    assert res["score"] is not None and res["provenance"]["error"].startswith("C2PA: ")


def test_a_bomb_header_is_never_decoded_for_its_metadata():
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)) + \
        chunk(b"tEXt", b"Software\x00Midjourney") + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b"")
    t0 = time.perf_counter()
    rec = read_provenance(bomb)  # Pillow's getexif() on this PNG would decode 30 GB of pixels
    assert time.perf_counter() - t0 < BOUND_S
    assert rec["error"] is None and rec["summary"] == "declared-generated" and rec["basis"] == "PNG text Software"

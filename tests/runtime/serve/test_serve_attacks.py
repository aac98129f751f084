"""`fakedet serve` under a hostile client (findings 1, 2 of the hostile-client review):
decode-cost bombs and requests that time out must not keep the service busy after their
504, and good requests sent meanwhile are answered."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from appliance_helpers import ServerProcess, build_brightness_package, flat_png, request  # noqa: E402
from decode_bombs import scan_bomb, slow_bomb  # noqa: E402

JPEG = {"Content-Type": "image/jpeg"}


def _post(port, body, query="", timeout=30):
    return request(port, "POST", "/v1/detect" + query, body, JPEG, timeout=timeout)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build_brightness_package(tmp_path_factory.mktemp("attack") / "pkg")


def test_504_stops_the_decodes_and_good_requests_after_it_are_answered(package, tmp_path):
    """Slow-to-decode images (under the scan limit) fill both decode workers and time out;
    after their 504 the workers are killed, so a good request is answered long before those
    decodes would have ended. The costs are pinned to the deadline, not the machine: the
    bomb's decode is timed here and the deadline is at most a sixth of it (the estimate
    from a smaller bomb may be ~30% high)."""
    slow, bomb_s = slow_bomb(6.0)
    deadline = round(min(1.0, bomb_s / 6), 2)
    with ServerProcess(package, tmp_path / "log", "--decode-workers", 2, "--decode-timeout-s", 60) as srv:
        with ThreadPoolExecutor(2) as pool:
            bombs = [pool.submit(_post, srv.port, slow, f"?timeout_s={deadline:g}") for _ in range(2)]
            statuses = [f.result().status for f in bombs]
        t1 = time.perf_counter()
        good = _post(srv.port, flat_png(200), "?timeout_s=30")
        waited = time.perf_counter() - t1
    assert statuses == [504, 504], statuses
    assert good.status == 200, good
    # the old service decoded on: the good request waited ~bomb_s - deadline
    assert waited < 0.5 * (bomb_s - deadline), (waited, bomb_s, deadline)


def test_scan_bomb_is_a_422_with_the_reason(package, tmp_path):
    with ServerProcess(package, tmp_path / "log") as srv:
        t0 = time.perf_counter()
        r = _post(srv.port, scan_bomb(1000))
        assert time.perf_counter() - t0 < 2.0
        assert r.status == 422
        assert "progressive JPEG with 1010 scans, limit 100" in r.json()["results"][0]["error"]


@pytest.fixture(scope="module")
def server(package, tmp_path_factory):
    with ServerProcess(package, tmp_path_factory.mktemp("srv") / "log") as srv:
        yield srv


@pytest.mark.parametrize("boundary", ['"aaaa', "a" * 257, "a" * 71, "ab cd "])
def test_malformed_multipart_boundary_is_a_400_with_one_line(server, boundary):
    body = f"--{boundary}\r\nContent-Disposition: form-data; name=a; filename=a.png\r\n\r\n".encode()
    body += flat_png(100) + f"\r\n--{boundary}--\r\n".encode()
    r = request(server.port, "POST", "/v1/detect", body,
                {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status == 400, r
    msg = r.json()["error"]["message"]
    assert "boundary" in msg and "\n" not in msg


def test_foreign_host_and_origin_are_refused_and_the_console_works(server):
    png = {"Content-Type": "image/png"}
    r = request(server.port, "POST", "/v1/detect", flat_png(100), {**png, "Host": "attacker.example"})
    assert r.status == 400 and "attacker.example" in r.json()["error"]["message"]
    assert request(server.port, "GET", "/", headers={"Host": "rebind.attacker.example:8000"}).status == 400
    r = request(server.port, "POST", "/v1/detect", flat_png(100), {**png, "Origin": "https://evil.example"})
    assert r.status == 403
    # the probes answer whatever Host a kubelet sends
    assert request(server.port, "GET", "/healthz", headers={"Host": "10.1.2.3:8000"}).status == 200
    # the console, as a browser loads and uses it: same-origin, Host localhost or 127.0.0.1
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
        page = request(server.port, "GET", "/", headers={"Host": host})
        assert page.status == 200 and b"<html" in page.body.lower()
        r = request(server.port, "POST", "/v1/detect", flat_png(100),
                    {**png, "Host": host, "Origin": f"http://{host}"})
        assert r.status == 200 and "access-control-allow-origin" not in r.headers


def test_cors_only_for_the_origins_asked(package, tmp_path):
    origin = "https://moderation.example"
    with ServerProcess(package, tmp_path / "log", "--cors-origin", origin) as srv:
        pre = request(srv.port, "OPTIONS", "/v1/detect", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert pre.status == 200 and pre.headers["access-control-allow-origin"] == origin
        r = request(srv.port, "POST", "/v1/detect", flat_png(100), {"Content-Type": "image/png", "Origin": origin})
        assert r.status == 200 and r.headers["access-control-allow-origin"] == origin
        other = request(srv.port, "POST", "/v1/detect", flat_png(100),
                        {"Content-Type": "image/png", "Origin": "https://other.example"})
        assert other.status == 403 and "access-control-allow-origin" not in other.headers


def _idle_connections(port, n):
    import socket

    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def _closed_by_server(sock, within_s) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def test_connection_flood_leaves_the_probes_answering_and_idle_connections_closed(package, tmp_path):
    """600 connections that send nothing (more than the 2 x 16 + 32 = 64 requests this
    service holds at once): /healthz and /readyz answer 200 throughout, a detect request
    is still served, and the idle connections are closed after --header-timeout-s."""
    args = ("--max-queue", 16, "--header-timeout-s", 3, "--keep-alive-s", 1)
    with ServerProcess(package, tmp_path / "log", *args) as srv:
        socks = _idle_connections(srv.port, 600)
        try:
            latencies = []
            t_end = time.monotonic() + 2.0
            while time.monotonic() < t_end:
                for path in ("/healthz", "/readyz"):
                    t0 = time.perf_counter()
                    r = request(srv.port, "GET", path, timeout=5)
                    latencies.append(time.perf_counter() - t0)
                    assert r.status == 200, (path, r)
            assert _post(srv.port, flat_png(200)).status == 200
            assert max(latencies) < 1.0, max(latencies)  # the figure (< 100 ms) is in the benchmark note
            closed = sum(_closed_by_server(s, 4.0) for s in socks[:20])
            assert closed == 20
        finally:
            for s in socks:
                s.close()
        trickle = _idle_connections(srv.port, 1)[0]
        try:
            t0 = time.monotonic()
            trickle.sendall(b"GET /healthz HTTP/1.1\r\n")
            while time.monotonic() - t0 < 6.0:
                try:
                    trickle.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    break
                time.sleep(0.5)
            assert time.monotonic() - t0 < 5.0  # closed at ~3 s, headers never complete
        finally:
            trickle.close()

"""The HTTP face of a Service (Starlette): routes, limits, authentication, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import threading
import time
from importlib import resources

from .body import BadBody, BodyTooLarge, CaptionTooLarge, read_upload
from .hosts import PROBES, HostPolicy
from .openapi import docs_html, openapi_document
from .service import Service

PROTECTED = {"/v1/detect", "/v1/model", "/metrics"}
# After a body overflows, keep reading (and dropping) this much more before answering,
# so a client that sends its whole body before reading can still see the 413.
DISCARD_FACTOR, DISCARD_S = 4, 2.0
log = logging.getLogger("fakedet.serve")


def _json(data, status: int = 200, headers: dict | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status, headers=headers)


class Handlers:
    def __init__(self, service: Service):
        self.s = service
        self.cfg = service.config
        self._token = service.config.token.encode() if service.config.token else None

    def error(self, status: int, kind: str, message: str, headers: dict | None = None):
        self.s.metrics.errors.labels(kind).inc()
        return _json({"error": {"kind": kind, "message": message}}, status, headers)

    def _retry(self) -> dict:
        return {"Retry-After": str(self.cfg.retry_after_s)}

    def authorized(self, request) -> bool:
        if self._token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    # ---- endpoints ---------------------------------------------------------------
    async def console(self, request):
        from starlette.responses import HTMLResponse

        return HTMLResponse(resources.files(__package__).joinpath("console.html").read_text(encoding="utf-8"))

    async def healthz(self, request):
        return _json({"status": "alive"})

    async def readyz(self, request):
        reason = self.s.not_ready_reason()
        if reason:
            return _json({"ready": False, "reason": reason}, 503, self._retry())
        return _json({"ready": True, "warmup_s": self.s.warmup_s})

    async def metrics(self, request):
        from starlette.responses import Response

        body, ctype = self.s.metrics.render()
        return Response(body, media_type=ctype)

    async def model(self, request):
        return _json(self.s.model_summary())

    async def openapi(self, request):
        return _json(openapi_document(self.s))

    async def docs(self, request):
        from starlette.responses import HTMLResponse

        return HTMLResponse(docs_html(openapi_document(self.s)))

    async def detect(self, request):
        t0 = time.perf_counter()
        reason = self.s.not_ready_reason()
        if reason:
            return self.error(503, "not_ready", f"not ready: {reason}", self._retry())
        try:
            timeout = self._timeout(request.query_params.get("timeout_s"))
        except ValueError as e:
            return self.error(400, "bad_request", str(e))
        try:
            upload = await asyncio.wait_for(read_upload(request, self.cfg.max_bytes,
                                                        request.query_params.get("name", "body"),
                                                        self.cfg.max_caption_bytes), timeout)
        except asyncio.TimeoutError:
            return self.error(408, "timeout", f"the request body did not arrive within {timeout:g} s",
                              {"Connection": "close"})
        except BodyTooLarge as e:
            # A client waiting for "100 Continue" has sent nothing: reading now would invite
            # the body. Any other may be mid-send: drop some more so it can read the 413.
            if not (e.declared and request.headers.get("expect", "").lower() == "100-continue"):
                await self._discard(request)
            return self.error(413, "too_large", str(e), {"Connection": "close"})
        except CaptionTooLarge as e:
            return self.error(413, "too_large", str(e))
        except BadBody as e:
            return self.error(400, "bad_request", str(e))
        n = len(upload.images)
        if n == 0:
            return self.error(400, "bad_request", "no image in the request (send one image as the body, or "
                                                  "multipart/form-data with one part per image)")
        if n > self.cfg.max_queue:
            return self.error(413, "too_large", f"{n} images in one request; this service takes at most "
                                                f"{self.cfg.max_queue} (--max-queue)")
        try:
            captions = self._captions_per_image(upload.captions, n)
        except ValueError as e:
            return self.error(400, "bad_request", str(e))
        try:
            self.s.batcher.admit(n)
        except Exception as e:
            return self.error(503, "overloaded", f"overloaded: {e}; retry later", self._retry())
        # A 504 sets `cancelled`: the request's running decodes are killed, queued ones and
        # its images still waiting for a batch never reach the model.
        cancelled = threading.Event()
        remaining = timeout - (time.perf_counter() - t0)
        deadline = time.monotonic() + max(remaining, 0.0)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(self.s.score_one(p.name, p.data, c, deadline, cancelled)
                                 for p, c in zip(upload.images, captions))),
                max(remaining, 0.0))
        except asyncio.TimeoutError:
            return self.error(504, "timeout", f"not answered within {timeout:g} s (--timeout-s or ?timeout_s=)")
        finally:
            cancelled.set()
            self.s.batcher.release(n)
        body = {"results": results, "model": self.s.model, "backend": self.s.backend}
        note = self._caption_note(len(upload.captions))
        if note is not None:
            body["caption"] = note
        ok = any(r["error"] is None for r in results)
        return _json(body, 200 if ok else 422)

    # ---- helpers -------------------------------------------------------------------
    def _captions_per_image(self, captions: list[str], n: int) -> list:
        """One caption (or None) per image: none, one for all, or one each in order. An
        image-only model ignores them, so any number is accepted there."""
        if not captions or not self.s.takes_captions:
            return [None] * n
        if len(captions) == 1:
            return captions * n
        if len(captions) == n:
            return list(captions)
        raise ValueError(f"{len(captions)} captions for {n} images: send one caption for all the images, "
                         "or one per image (in the images' order)")

    def _caption_note(self, received: int) -> dict | None:
        """The response's word on captions: whether the model read them."""
        if not self.s.takes_captions:
            return {"received": True, "used": False, "reason": "this model has no caption input"} if received \
                else None
        if received:
            return {"received": True, "used": True, "count": received}
        why = ("no caption in the request: each image was scored with an empty caption, as the package allows"
               if self.s.detector.captions.empty_is_valid else
               "no caption in the request: this model needs one per image ('caption' form parts or ?caption=)")
        return {"received": False, "used": False, "count": 0, "reason": why}

    def _timeout(self, asked) -> float:
        if asked is None:
            return self.cfg.timeout_s
        try:
            t = float(asked)
        except ValueError:
            raise ValueError(f"timeout_s '{asked}' is not a number") from None
        if not (t > 0 and math.isfinite(t)):
            raise ValueError("timeout_s must be a positive number of seconds")
        return min(t, self.cfg.timeout_s)

    async def _discard(self, request) -> None:
        budget = DISCARD_FACTOR * self.cfg.max_bytes
        deadline = time.perf_counter() + DISCARD_S
        with contextlib.suppress(Exception):
            while budget > 0:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return
                msg = await asyncio.wait_for(request.receive(), left)
                if msg.get("type") != "http.request":
                    return
                budget -= len(msg.get("body", b""))
                if not msg.get("more_body", False):
                    return


class Observe:
    """ASGI middleware: 401 for protected paths without the token, and per-endpoint
    request counts and latency for everything."""

    def __init__(self, app, handlers: Handlers, known_paths, hosts: HostPolicy):
        self.app, self.h, self.known, self.hosts = app, handlers, set(known_paths), hosts
        self.in_progress = 0  # requests other than the probes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in self.known else "other"
        status = {"code": 500, "started": False}
        counted = False
        t0 = time.perf_counter()

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            from starlette.datastructures import Headers

            refused = self.hosts.refusal(path, Headers(scope=scope))
            if refused:
                return await self.h.error(refused[0], "bad_host", refused[1],
                                          {"Connection": "close"})(scope, receive, send_wrapper)
            if path not in PROBES:
                if self.in_progress >= self.h.cfg.max_requests:
                    return await self.h.error(503, "overloaded", f"overloaded: {self.in_progress} requests in "
                                              "progress; retry later", self.h._retry())(scope, receive, send_wrapper)
                self.in_progress += 1
                counted = True
            if path in PROTECTED:
                from starlette.requests import Request

                if not self.h.authorized(Request(scope)):
                    resp = self.h.error(401, "unauthorized", "missing or wrong bearer token",
                                        {"WWW-Authenticate": 'Bearer realm="fakedet"'})
                    return await resp(scope, receive, send_wrapper)
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as e:  # never a bare traceback to the client: one JSON line, counted
                log.exception("internal error on %s", path)
                if status["started"]:
                    self.h.s.metrics.errors.labels("internal").inc()
                else:
                    resp = self.h.error(500, "internal", f"internal error: {type(e).__name__}")
                    await resp(scope, receive, send_wrapper)
        finally:
            if counted:
                self.in_progress -= 1
            m = self.h.s.metrics
            m.requests.labels(endpoint, str(status["code"])).inc()
            if endpoint == "/v1/detect":
                m.latency.labels("request").observe(time.perf_counter() - t0)


def create_app(service: Service):
    from starlette.applications import Starlette
    from starlette.routing import Route

    h = Handlers(service)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.startup()
        try:
            yield
        finally:
            await service.shutdown()

    routes = [
        Route("/", h.console, methods=["GET"]),
        Route("/healthz", h.healthz, methods=["GET"]),
        Route("/readyz", h.readyz, methods=["GET"]),
        Route("/metrics", h.metrics, methods=["GET"]),
        Route("/v1/model", h.model, methods=["GET"]),
        Route("/v1/detect", h.detect, methods=["POST"]),
        Route("/openapi.json", h.openapi, methods=["GET"]),
        Route("/docs", h.docs, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = service
    cfg = service.config
    inner = app
    if cfg.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        inner = CORSMiddleware(app, allow_origins=list(cfg.cors_origins), allow_methods=["GET", "POST"],
                               allow_headers=["Authorization", "Content-Type"])
    return Observe(inner, h, [r.path for r in routes], HostPolicy(cfg.host, cfg.allowed_hosts, cfg.cors_origins))

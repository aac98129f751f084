"""Run a Service under uvicorn, with a graceful SIGTERM: new work is refused (readyz and
detect answer 503, the listening socket closes), requests in flight are finished, then
the model is closed."""

from __future__ import annotations

import logging
import signal
import threading

from fakedet.errors import FakedetError

from ..stoppable import terminate_all
from .app import create_app
from .config import ServeConfig
from .connections import guarded_h11_protocol
from .service import Service


def _draining_server_class():
    import uvicorn

    class DrainingServer(uvicorn.Server):
        service: Service | None = None

        def handle_exit(self, sig, frame):
            if self.service is not None and not self.service.draining:
                self.service.begin_drain()
                # Requests in flight get drain_s to finish; a model run still going then (one
                # that may never end) is stopped, so the process exits within seconds.
                stopper = threading.Timer(self.service.config.drain_s, terminate_all)
                stopper.daemon = True
                stopper.start()
            super().handle_exit(sig, frame)

    return DrainingServer


def run(detector, config: ServeConfig, announce=print, infer_executor=None) -> None:
    """Serve `detector` until SIGTERM / Ctrl-C; `infer_executor` is the one-thread pool it
    was opened on (batcher.inference_thread()), if any."""
    import uvicorn

    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # the *_created series only add noise to a scrape
    service = Service(detector, config, infer_executor)
    app = create_app(service)
    logging.getLogger("fakedet.serve").setLevel(logging.INFO)
    ucfg = uvicorn.Config(
        app, host=config.host, port=config.port, lifespan="on", log_level="info",
        access_log=config.access_log, server_header=False, proxy_headers=False,
        timeout_graceful_shutdown=int(config.timeout_s) + 5,
        # Idle connections are closed (keep-alive, headers); requests in progress are bounded
        # by the app (app.Observe), where /healthz and /readyz are exempt: uvicorn's own
        # limit_concurrency counts idle connections too, and answered probes 503 under a flood.
        http=guarded_h11_protocol(config.header_timeout_s), timeout_keep_alive=config.keep_alive_s,
    )
    server = _draining_server_class()(ucfg)
    server.service = service
    fatal: list[str] = []

    def stop_for(reason: str) -> None:
        fatal.append(reason)
        server.should_exit = True

    service.on_fatal = stop_for
    # uvicorn re-raises the signal it stopped on once it has shut down; after a graceful
    # SIGTERM that re-raise lands here, so the process exits 0 rather than dying of it.
    signal.signal(signal.SIGTERM, lambda *_: None)
    announce(f"fakedet serve: {detector.describe()}")
    announce(f"fakedet serve: http://{config.host}:{config.port}/ (console), /docs (API), "
             f"batch <= {config.max_batch} within {config.max_delay_ms:g} ms, queue {config.max_queue}, "
             f"body <= {config.max_bytes} bytes, timeout {config.timeout_s:g} s, "
             f"{'bearer token required' if config.token else 'no token'}")
    server.run()
    if fatal:
        raise FakedetError(f"serve: {fatal[0]}")
    if service.draining:
        announce("fakedet serve: stopped (requests in flight were finished)")

"""`fakedet serve`: the HTTP moderation service."""

from __future__ import annotations

from pathlib import Path

import click

from fakedet.click_params import parsed_by
from fakedet.errors import FakedetError

from ..selection import BACKENDS, PRECISIONS
from ..verdict_cli import operating_point_option
from .config import parse_size

SERVE_MODULES = ("starlette", "uvicorn", "prometheus_client", "python_multipart")


def require_serve_extra() -> None:
    import importlib.util

    missing = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise FakedetError(f"'fakedet serve' needs {', '.join(missing)}: pip install 'fakedet[serve]'")


_size = parsed_by(parse_size, FakedetError)


@click.command(
    "serve",
    epilog="""\b
Examples:
  fakedet serve model.fdet
  fakedet serve model.fdet --port 9000 --max-batch 16 --max-delay-ms 10
  fakedet serve model.fdet --host 0.0.0.0 --token-file /etc/fakedet/token
\b
  curl --data-binary @photo.jpg http://127.0.0.1:8000/v1/detect
  curl -F a.jpg=@a.jpg -F b.png=@b.png http://127.0.0.1:8000/v1/detect
  curl -H "Authorization: Bearer $(cat token)" --data-binary @photo.jpg ...
\b
Caption-aware packages (image + caption):
  curl -F a.jpg=@a.jpg -F caption="a dog on a beach" http://127.0.0.1:8000/v1/detect
  curl -F a.jpg=@a.jpg -F b.jpg=@b.jpg -F caption="first" -F caption="second" ...
  curl --data-binary @a.jpg "http://127.0.0.1:8000/v1/detect?caption=a%20dog"
\b
Endpoints: POST /v1/detect (one image as the body, or multipart with one part per
image), GET /v1/model, /healthz (alive), /readyz (loaded and warmed), /metrics
(Prometheus), /docs and /openapi.json, and a moderation console at /.
Limits: 413 over --max-bytes (checked while the body streams in), 503 with
Retry-After when --max-queue images are waiting, 504 after --timeout-s (a request
may ask for less with ?timeout_s=), 401 without the token when --token-file is
given. Uploads stay in memory. SIGTERM finishes the requests in flight, refuses new
ones, then exits. Listens on 127.0.0.1 unless told otherwise, and warns when bound
wider without a token.
Captions ('caption' form parts or ?caption=): one for all the request's images,
or one per image in their order; UTF-8, at most --max-caption-bytes each. An
image-only model ignores them; a caption-aware one fails an image that has none
(unless its package scores empty captions). GET /v1/model says which it is.""",
)
@click.argument("package", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(("auto",) + BACKENDS),
              help="Inference backend; auto picks the fastest that can run here.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(("auto",) + PRECISIONS),
              help="Which artifact precision to run.")
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1, 4096),
              help="Most images per inference call, across requests.")
@click.option("--max-delay-ms", default=5.0, show_default=True, type=click.FloatRange(0, 60_000),
              help="Longest wait for a batch to fill after its first image.")
@click.option("--max-queue", default=256, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Images admitted and not yet answered; beyond it requests get 503.")
@click.option("--max-bytes", default="20MB", show_default=True, callback=_size,
              help="Largest request body (20MB, 512KiB, ...).")
@click.option("--max-caption-bytes", default="16KiB", show_default=True, callback=_size,
              help="Longest caption, in UTF-8 bytes (413 beyond it).")
@click.option("--timeout-s", default=10.0, show_default=True, type=click.FloatRange(0.001, 3600),
              help="Per-request time limit, body included (504 / 408 past it).")
@click.option("--decode-timeout-s", default=5.0, show_default=True, type=click.FloatRange(0.001, 3600),
              help="Per-image decode budget: the decoding process is killed past it and the image fails.")
@click.option("--header-timeout-s", default=10.0, show_default=True, type=click.FloatRange(0.001, 3600),
              help="A connection whose request headers are not complete within this is closed.")
@click.option("--keep-alive-s", default=5.0, show_default=True, type=click.FloatRange(0.001, 3600),
              help="An idle kept-alive connection is closed after this.")
@click.option("--warmup-timeout-s", default=120.0, show_default=True, type=click.FloatRange(0.001, 86400),
              help="A model whose warm-up takes longer fails the service (exit 2, with the reason).")
@click.option("--max-memory", default="4GB", show_default=True, callback=_size,
              help="Memory the service may use: images larger than it allows the model get 422, one by one.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Require 'Authorization: Bearer TOKEN' with the token in this file.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Decision threshold on P(fake) (default: the package's).")
@operating_point_option
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="CPU threads for ONNX Runtime.")
@click.option("--decode-workers", type=click.IntRange(0, 1024), default=0, show_default=True,
              help="Images decoded at once, each in a worker process of its own (0: one per core).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host name this service answers (repeatable); default: the --host address and "
                   "localhost (any name when bound to 0.0.0.0 or ::). Others get 400: no DNS rebinding.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="An origin (https://app.example) whose pages may call this service and read the "
                   "answers (repeatable); default: none, no CORS headers.")
@click.option("--access-log", is_flag=True, help="Log every request on stderr.")
def serve(package, host, port, backend, precision, max_batch, max_delay_ms, max_queue, max_bytes,
          max_caption_bytes, timeout_s, decode_timeout_s, header_timeout_s, keep_alive_s, warmup_timeout_s,
          max_memory, token_file, threshold, operating_point, threads, decode_workers, allowed_hosts, cors_origins,
          access_log) -> int:
    """Serve PACKAGE over HTTP: P(fake) per image, batched across concurrent requests."""
    require_serve_extra()
    from ..detector import Detector
    from .batcher import inference_thread
    from .config import ServeConfig, read_token
    from .server import run

    config = ServeConfig(host=host, port=port, max_batch=max_batch, max_delay_ms=max_delay_ms,
                         max_queue=max_queue, max_bytes=max_bytes, max_caption_bytes=max_caption_bytes,
                         timeout_s=timeout_s, decode_timeout_s=decode_timeout_s,
                         header_timeout_s=header_timeout_s, keep_alive_s=keep_alive_s,
                         warmup_timeout_s=warmup_timeout_s,
                         token=read_token(token_file) if token_file else None, decode_workers=decode_workers,
                         access_log=access_log, allowed_hosts=tuple(allowed_hosts),
                         cors_origins=tuple(cors_origins))
    warning = config.exposure_warning()
    if warning:
        click.echo(f"fakedet serve: WARNING: {warning}", err=True)
    options = {"threads": threads} if threads else {}
    infer = inference_thread()  # the model is opened, run and closed on this one thread
    det = infer.submit(Detector.open, package, backend=backend, precision=precision, batch_size=max_batch,
                       threshold=threshold, operating_point=operating_point, **options).result()
    infer.submit(det.set_memory_budget, max_memory, "--max-memory").result()
    run(det, config, announce=lambda msg: click.echo(msg, err=True), infer_executor=infer)
    return 0

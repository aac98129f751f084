"""The service's state and its one real job: images in, scores out, through the batcher.

Decoding and preprocessing run in a worker pool sized to the cores; inference runs in
the batcher's single thread; the event loop only moves bytes and futures."""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

from fakedet.errors import FakedetError, ImageError, first_line

from ..captions import CaptionRefused
from ..provenance import read_provenance
from ..stoppable import terminate_all
from ..verdict import verdict_summary
from .batcher import Batcher, Scored
from .config import ServeConfig
from .decode_order import CheapestFirst, decode_cost
from .metrics import ServiceMetrics


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buf, "PNG")
    return buf.getvalue()


CAPTIONS_PER_REQUEST = ("one caption for every image of the request, or one per image in the images' order "
                        "('caption' form parts, or ?caption=)")
EMPTY_CAPTION_MEANS = {
    "refuse": "an image without a caption (or with a blank one) fails with an error; the others are scored",
    "score": "an image without a caption is scored with an empty caption, as the package allows",
}


class Service:
    def __init__(self, detector, config: ServeConfig, infer_executor=None):
        self.detector = detector
        self.config = config
        self.ready = False
        self.draining = False
        self.warmup_s: float | None = None
        self.startup_error: str | None = None
        self.batcher = Batcher(detector.predict_prepared, config.max_batch, config.max_delay_ms / 1e3,
                               config.max_queue, on_batch=self._on_batch, executor=infer_executor,
                               on_abandoned=terminate_all)
        self.metrics = ServiceMetrics(lambda: self.batcher.pending)
        self.decode_pool = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="fakedet-decode")
        self.decode_order = CheapestFirst(config.decode_workers)
        # each decode thread hands its image to a worker process that a deadline can kill
        detector.set_decode_budget(config.decode_timeout_s, config.decode_workers)
        art = detector.choice.artifact
        m = detector.manifest
        self.model = {"name": m.name, "sha256": art.sha256, "artifact": art.file}
        self.backend = detector.choice.backend
        self._warm_task: asyncio.Task | None = None
        self.on_fatal = lambda reason: None  # the server stops and reports `reason` (server.py)

    # ---- lifecycle -------------------------------------------------------------
    async def startup(self) -> None:
        self.detector.decoder.prestart()
        self.batcher.start()
        self._warm_task = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        loop = asyncio.get_running_loop()
        sizes = (1, self.config.max_batch)
        try:
            t0 = time.perf_counter()
            # Decode one small image too: Pillow loads its format plugins on first use.
            await loop.run_in_executor(self.decode_pool, self.detector.prepare, _tiny_png())
            warm = loop.run_in_executor(self.batcher.executor, functools.partial(self.detector.warmup, sizes))
            await asyncio.wait_for(asyncio.shield(warm), self.config.warmup_timeout_s)
            self.warmup_s = time.perf_counter() - t0
            self.ready = True
        except asyncio.TimeoutError:  # a model that may never finish: stop it, and the service
            terminate_all()
            self.startup_error = (f"warm-up did not finish within {self.config.warmup_timeout_s:g} s "
                                  "(--warmup-timeout-s): the model runs too long or never ends")
            self.on_fatal(self.startup_error)
        except Exception as e:  # the service stays alive (healthz) and says why it is not ready
            self.startup_error = f"warm-up failed: {type(e).__name__}: {first_line(e, 300)}"

    def begin_drain(self) -> None:
        """SIGTERM: stop taking work (readyz and detect answer 503), flush the queue."""
        self.draining = True
        self.batcher.drain()

    async def shutdown(self) -> None:
        if self._warm_task is not None and not self._warm_task.done():
            self._warm_task.cancel()
            terminate_all()  # a warm-up still running would hold the inference thread
        await self.batcher.stop()
        self.decode_pool.shutdown(wait=True)
        # Closed on the thread that ran it (and, from the CLI, opened it).
        await asyncio.get_running_loop().run_in_executor(self.batcher.executor, self.detector.close)
        self.batcher.executor.shutdown(wait=True)

    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "shutting down"
        if self.startup_error:
            return self.startup_error
        if not self.ready:
            return "warming up"
        return None

    # ---- scoring ---------------------------------------------------------------
    def _on_batch(self, size: int, infer_s: float) -> None:
        self.metrics.batch.observe(size)
        self.metrics.latency.labels("infer").observe(infer_s)

    def _prepare_timed(self, data: bytes, caption=None, deadline: float | None = None, cancelled=None):
        """(tensor, error, seconds, token ids) in a decode worker: the image decoded and, for a
        caption-aware model, its (checked) caption tokenized, off the inference thread. The
        decode ends at `deadline` (time.monotonic()) or when `cancelled` is set."""
        t0 = time.perf_counter()
        if (cancelled is not None and cancelled.is_set()) or (deadline is not None and time.monotonic() > deadline):
            return None, "not decoded: the request was answered or timed out first", 0.0, None
        try:
            tensor = self.detector.prepare(data, deadline, cancelled)
            ids = self.detector.captions.prepare(caption)  # None for an image-only model
            return tensor, None, time.perf_counter() - t0, ids
        except ImageError as e:
            return None, e.problem, time.perf_counter() - t0, None
        except FakedetError as e:
            return None, str(e), time.perf_counter() - t0, None
        except Exception as e:  # a decoder bug on hostile bytes costs this image only
            return None, f"cannot decode: {type(e).__name__}: {first_line(e)}", time.perf_counter() - t0, None

    @property
    def takes_captions(self) -> bool:
        return self.detector.takes_captions

    def _caption_refused(self, caption) -> str | None:
        """Why this image cannot be scored with `caption` (a caption-aware model only):
        known before decoding, so a refused image costs no decode and no queue slot."""
        return self.detector.captions.problem(caption)

    async def score_one(self, name: str, data: bytes, caption: str | None = None, deadline: float | None = None,
                        cancelled=None) -> dict:
        """One image (and, for a caption-aware model, its caption; an image-only model
        ignores it) -> its result. Past `deadline` (time.monotonic()) or once `cancelled`
        (a threading.Event) is set, its decode stops and it never reaches the model."""
        timings = {"queue": None, "decode": None, "infer": None}
        out = {"name": name, "score": None, "logit": None, "decision": "error",
               "threshold": self.detector.threshold, "operating_point": self.detector.operating_point,
               "error": None, "model": self.model,
               "backend": self.backend, "timings_ms": timings}
        refused = self._caption_refused(caption)
        if refused is not None:
            out["error"] = refused
            self.metrics.images.labels("failed").inc()
            self.metrics.errors.labels("bad_caption").inc()
            return out
        loop = asyncio.get_running_loop()
        declared = loop.run_in_executor(None, read_provenance, data)  # beside the score, bounded; a thread
        async with self.decode_order.slot(decode_cost(data)):  # cheap images first: see decode_order
            tensor, error, decode_s, ids = await loop.run_in_executor(self.decode_pool, self._prepare_timed, data,
                                                                      caption, deadline, cancelled)
        if tensor is not None and ((cancelled is not None and cancelled.is_set())
                                   or (deadline is not None and time.monotonic() > deadline)):
            tensor, error = None, "not scored: the request timed out before its turn"
        out["provenance"] = await declared
        self.metrics.latency.labels("decode").observe(decode_s)
        timings["decode"] = round(decode_s * 1e3, 3)
        out["error"] = error
        if tensor is not None:
            done: Scored = await self.batcher.infer(tensor, ids)
            self.metrics.latency.labels("queue").observe(done.queue_s)
            timings.update(queue=round(done.queue_s * 1e3, 3), infer=round(done.infer_s * 1e3, 3))
            timings["batch"] = done.batch_size
            pred = done.result
            if isinstance(pred, Exception):
                out["error"] = f"inference failed: {type(pred).__name__}"
            elif pred.error is not None:
                out["error"] = pred.error
            else:
                out.update(score=pred.score, logit=pred.logit, decision="fake" if pred.is_fake else "real")
        if out["error"] is None:
            self.metrics.images.labels("scored").inc()
        else:
            self.metrics.images.labels("failed").inc()
            self.metrics.errors.labels("inference" if tensor is not None else "bad_image").inc()
        return out

    def model_summary(self) -> dict:
        det, m = self.detector, self.detector.manifest
        pre = m.input.preprocess
        return {
            "name": m.name,
            "architecture": m.architecture,
            "schema_version": m.schema_version,
            "input": {"name": m.input.name, "layout": m.input.layout, "channel_order": m.input.channel_order,
                      "policy": pre.policy, "size": list(pre.size) if pre.size else None,
                      "max_pixels": pre.max_pixels},
            "output": {"name": m.output.name, "kind": m.output.kind},
            "threshold": {"value": det.threshold, "method": m.threshold.method, "operating_point": det.operating_point},
            "verdict": verdict_summary(m),
            "artifact": {"file": det.choice.artifact.file, "kind": det.choice.artifact.kind,
                         "sha256": det.choice.artifact.sha256, "precision": det.choice.precision},
            "backend": {"name": det.choice.backend, "device": det.backend.describe(), "reason": det.choice.reason},
            "caption_input": self.takes_captions,
            "captions": self.caption_summary(),
            "service": {"max_batch": self.config.max_batch, "max_delay_ms": self.config.max_delay_ms,
                        "max_queue": self.config.max_queue, "max_bytes": self.config.max_bytes,
                        "max_caption_bytes": self.config.max_caption_bytes,
                        "timeout_s": self.config.timeout_s, "decode_timeout_s": self.config.decode_timeout_s,
                        "decode_workers": self.config.decode_workers,
                        "warmup_s": self.warmup_s},
        }

    def caption_summary(self) -> dict | None:
        """What a client must know to send captions; None for an image-only model."""
        if not self.takes_captions:
            return None
        spec = self.detector.captions.spec
        return {"input": spec.name, "context_length": spec.context_length, "tokenizer": spec.tokenizer_kind,
                "truncation": spec.truncation, "empty_caption": spec.empty_caption,
                "empty_caption_means": EMPTY_CAPTION_MEANS[spec.empty_caption],
                "per_request": CAPTIONS_PER_REQUEST, "max_caption_bytes": self.config.max_caption_bytes}

"""Prometheus metrics of one service (its own registry, so two services in one process,
as in tests, never share counters)."""

from __future__ import annotations

STAGES = ("queue", "decode", "infer", "request")
ERROR_KINDS = ("unauthorized", "too_large", "overloaded", "timeout", "bad_request", "bad_image", "bad_caption",
               "inference", "not_ready", "internal")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    def __init__(self, queue_depth):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("fakedet_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "code"], registry=r)
        self.errors = Counter("fakedet_errors", "Failed requests and images by kind", ["kind"], registry=r)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)
        self.images = Counter("fakedet_images", "Images answered, by outcome", ["outcome"], registry=r)
        self.queue = Gauge("fakedet_queue_depth", "Images admitted and not yet answered", registry=r)
        self.queue.set_function(queue_depth)
        self.batch = Histogram("fakedet_batch_size", "Images per inference call",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.latency = Histogram("fakedet_stage_seconds", "Latency per stage (queue wait, decode + "
                                 "preprocess, inference, whole request)", ["stage"], buckets=_LATENCY_BUCKETS,
                                 registry=r)
        for stage in STAGES:
            self.latency.labels(stage)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

"""The service's settings, and parsing of the values people type for them."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fakedet.errors import FakedetError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30}


def parse_size(text) -> int:
    """'20MB' -> 20_000_000, '512KiB' -> 524_288, '1000' -> 1000 (bytes)."""
    m = _SIZE.match(str(text))
    unit = (m.group(2) or "").lower() if m else None
    if not m or unit not in _UNITS:
        raise FakedetError(f"cannot read '{text}' as a size (examples: 20MB, 512KiB, 1000000)")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n < 1:
        raise FakedetError(f"size '{text}' must be at least 1 byte")
    return n


def read_token(path) -> str:
    """The bearer token from a file (surrounding whitespace ignored); refuses an empty one."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise FakedetError(f"{p}: cannot read the token file ({e})") from None
    if not token:
        raise FakedetError(f"{p}: the token file is empty")
    if any(c.isspace() for c in token):
        raise FakedetError(f"{p}: the token must be one word (no spaces or newlines inside)")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 256  # images admitted and not yet answered
    max_bytes: int = 20_000_000  # per request body
    max_caption_bytes: int = 16_384  # per caption (UTF-8 bytes): the model reads ~75 tokens of it, and
    # each caption is tokenized on the inference thread (about 20 ms for 16 KiB on one core)
    timeout_s: float = 10.0  # per request, body included
    decode_timeout_s: float = 5.0  # per image, in a worker process killed past it
    header_timeout_s: float = 10.0  # a request's headers, from its connection's opening or first byte
    keep_alive_s: float = 5.0  # an idle kept-alive connection is closed after it
    warmup_timeout_s: float = 120.0  # a model whose warm-up outlasts it fails the service
    drain_s: float = 3.0  # after SIGTERM, model runs still going this much later are stopped
    token: str | None = None
    decode_workers: int = 0  # 0: one per core
    retry_after_s: int = 1
    access_log: bool = False
    allowed_hosts: tuple = ()  # Host names answered; empty: the bound address and localhost
    cors_origins: tuple = ()  # origins whose pages may read the answers; empty: no CORS

    def __post_init__(self):
        if self.max_batch < 1 or self.max_queue < 1:
            raise FakedetError("--max-batch and --max-queue must be at least 1")
        if self.max_delay_ms < 0 or min(self.timeout_s, self.decode_timeout_s, self.header_timeout_s,
                                        self.keep_alive_s, self.warmup_timeout_s) <= 0:
            raise FakedetError("--max-delay-ms must be >= 0; --timeout-s, --decode-timeout-s, --header-timeout-s "
                               "--keep-alive-s and --warmup-timeout-s > 0")
        if self.decode_workers <= 0:
            self.decode_workers = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                      else (os.cpu_count() or 1))

    @property
    def max_requests(self) -> int:
        """Requests in progress at once (each may hold up to --max-bytes); probes not counted."""
        return 2 * self.max_queue + 32

    def exposure_warning(self) -> str | None:
        """The warning to print when the service listens beyond this machine with no token."""
        if self.token or is_loopback(self.host):
            return None
        return (f"listening on {self.host} without --token-file: anyone who can reach port {self.port} "
                f"can use this service (give --token-file, or bind 127.0.0.1 behind a proxy)")

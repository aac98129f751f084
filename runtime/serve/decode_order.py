"""Cheap images first: the order in which the service hands images to its decode workers.

Decode slots are few (one per core). Served first come, first served, a client posting
images that take seconds each (large progressive JPEGs under the scan limit) keeps every
slot busy and every ordinary photo waits behind it. Each image's decode cost is estimated
from its header (pixels, times 10 for a progressive JPEG: libjpeg's usual scan count), and
a free slot goes to the cheapest image waiting; equal costs keep their arrival order."""

from __future__ import annotations

import asyncio
import heapq
import io
import itertools

PROGRESSIVE_FACTOR = 10


def decode_cost(data: bytes) -> float:
    """Pixels to decode, from the header alone (Pillow reads no pixel data to open). Bytes
    that do not open cost nothing: their decode fails at once."""
    from PIL import Image

    from ..imageio import accepted_formats

    try:
        with Image.open(io.BytesIO(data), formats=accepted_formats()) as img:
            w, h = img.size
            progressive = img.format == "JPEG" and bool(img.info.get("progressive"))
    except Exception:
        return 0.0
    return float(w) * float(h) * (PROGRESSIVE_FACTOR if progressive else 1)


class CheapestFirst:
    """`slots` permits handed out by lowest cost, then arrival: `async with order.slot(cost)`."""

    def __init__(self, slots: int):
        self.free = max(1, int(slots))
        self._waiting: list = []  # (cost, ticket, future)
        self._tickets = itertools.count()

    async def acquire(self, cost: float) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (cost, next(self._tickets), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted just as it was cancelled: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1

    def slot(self, cost: float):
        order = self

        class _Slot:
            async def __aenter__(self):
                await order.acquire(cost)

            async def __aexit__(self, *exc):
                order.release()

        return _Slot()

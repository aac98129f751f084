"""Cheap images first (decode_order): a free decode slot goes to the cheapest image waiting,
so a client posting seconds-long decodes cannot make ordinary photos queue behind it."""

from __future__ import annotations

import asyncio

from decode_bombs import progressive_jpeg, scan_bomb
from fakedet.runtime.serve.decode_order import PROGRESSIVE_FACTOR, CheapestFirst, decode_cost
from hostile_corpus import encode


def test_cost_from_the_header():
    assert decode_cost(encode("PNG", size=(24, 20))) == 24 * 20
    assert decode_cost(progressive_jpeg((256, 128))) == 256 * 128 * PROGRESSIVE_FACTOR
    assert decode_cost(scan_bomb(90, (4096, 4096))) > 500 * decode_cost(encode("JPEG", size=(640, 480)))
    assert decode_cost(b"not an image") == 0.0


def test_a_free_slot_goes_to_the_cheapest_waiting_and_cancelled_waiters_pass():
    async def scenario():
        order = CheapestFirst(1)
        served = []

        async def job(name, cost, hold=0.01):
            async with order.slot(cost):
                served.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(job("first", 5e8, hold=0.05))  # takes the only slot
        await asyncio.sleep(0)
        bombs = [asyncio.create_task(job(f"bomb{i}", 1.6e8)) for i in range(3)]
        gone = asyncio.create_task(job("cancelled", 1.0))
        photo = asyncio.create_task(job("photo", 5e4))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.gather(first, photo, *bombs, return_exceptions=True)
        assert order.free == 1
        return served

    served = asyncio.run(scenario())
    assert served == ["first", "photo", "bomb0", "bomb1", "bomb2"]

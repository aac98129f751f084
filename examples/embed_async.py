"""Score from async code: `await det.apredict(...)` keeps the event loop serving.

    python examples/embed_async.py MODEL.fdet a.jpg b.png ...

Each image is scored by its own task, concurrently; apredict runs the work in the
loop's thread pool, so other coroutines (an HTTP server's, say) keep running.
"""

import asyncio
import sys
from pathlib import Path

from fakedet.runtime import Detector


async def main(package: str, paths: list[str]) -> None:
    det = Detector.open(package)
    try:
        det.warmup()
        preds = await asyncio.gather(*(det.apredict([Path(p).read_bytes()]) for p in paths))
        for path, (p,) in zip(paths, preds):
            print(f"{path}\t{p.score:.4f}\t{'FAKE' if p.is_fake else 'real'}" if p.ok else f"{path}\t-\tERROR {p.error}")
    finally:
        det.close()  # after every call has returned


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2:]))

"""Share one Detector between threads: open once, score encoded images from a pool.

    python examples/embed_threads.py MODEL.fdet a.jpg b.png c.webp ...

Decoding runs in each calling thread (in parallel); inference runs as concurrently as the
backend allows (ONNX Runtime: at once; TensorRT: up to its `contexts`), so any number of
threads may call predict on the same object.
"""

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fakedet.runtime import Detector


def main(package: str, paths: list[str]) -> None:
    with Detector.open(package) as det:  # once, at start-up
        det.warmup(batch_sizes=(1,))
        print(det.describe(), file=sys.stderr)

        def score(path: str):
            data = Path(path).read_bytes()  # e.g. an upload held in memory
            return path, det.predict([data])[0]

        with ThreadPoolExecutor(max_workers=4) as pool:
            for path, p in pool.map(score, paths):
                print(f"{path}\t{p.score:.4f}\t{'FAKE' if p.is_fake else 'real'}" if p.ok else f"{path}\t-\tERROR {p.error}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])

"""Score OpenCV frames (BGR) from a video, a stream URL or a camera index.

    python examples/embed_opencv.py MODEL.fdet VIDEO_OR_URL_OR_INDEX [EVERY_NTH]

OpenCV gives BGR frames: say so with channels="BGR" (RGB arrays from Pillow or PyAV
take channels="RGB"); the order is never guessed. `fakedet watch` does this with
sampling, alerts and reconnects built in.
"""

import sys

import cv2

from fakedet.runtime import Detector


def main(package: str, source: str, every: int = 1) -> None:
    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        sys.exit(f"cannot open {source}")
    with Detector.open(package) as det:
        det.warmup(batch_sizes=(1, 8))
        index, batch = 0, []
        while True:
            ok, frame = cap.read()
            if ok and index % every == 0:
                batch.append((index, frame))
            if batch and (len(batch) == 8 or not ok):
                preds = det.predict_frames([f for _, f in batch], channels="BGR")
                for (i, _), p in zip(batch, preds):
                    print(f"frame {i}\t{p.score:.4f}\t{'FAKE' if p.is_fake else 'real'}")
                batch = []
            if not ok:
                break
            index += 1
    cap.release()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)

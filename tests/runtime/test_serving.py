"""score_blobs: the rows a server returns for encoded images, one bad image among them."""

import io

import numpy as np
from PIL import Image

from fakedet.runtime.detector import Detector
from fakedet.runtime.serving import score_blobs


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_rows_match_the_detector_and_a_bad_image_costs_only_its_row(tiny_package):
    from conftest import reference_forward
    from fakedet.runtime.preprocess import preprocess_image

    path, w = tiny_package
    blobs = [_png(1), b"\x89PNG truncated", _png(2), b""]
    with Detector.open(path, backend="ort-cpu") as det:
        scores, fake, errors = score_blobs(det, blobs)
        spec = det.manifest.input
        threshold = det.threshold
    assert scores.shape == fake.shape == errors.shape == (4, 1)
    assert scores.dtype == np.float32 and fake.dtype == bool and errors.dtype == object
    # independent reference: the numpy forward pass of the tiny net on the same preprocessing
    x = np.stack([preprocess_image(Image.open(io.BytesIO(blobs[i])).convert("RGB"), spec) for i in (0, 2)])
    want = 1 / (1 + np.exp(-reference_forward(x, w)[:, 0]))
    np.testing.assert_allclose(scores[[0, 2], 0], want, rtol=1e-4, atol=1e-5)
    assert list(fake[[0, 2], 0]) == [bool(p >= threshold) for p in want]
    assert np.isnan(scores[1, 0]) and np.isnan(scores[3, 0]) and not fake[1, 0] and not fake[3, 0]
    assert errors[0, 0] == b"" and errors[2, 0] == b""
    assert b"cannot" in errors[1, 0] or b"not an image" in errors[1, 0]
    assert errors[3, 0] == b"empty input (0 bytes)"

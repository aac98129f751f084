"""The runtime's decoding and preprocessing against independent references:
per-mode decoding rules written out with numpy, geometry and normalisation by
torchvision's transforms (a separate implementation of the same policies)."""

import io

import numpy as np
import pytest
from PIL import Image

from fakedet.errors import ImageError
from fakedet.manifest import InputSpec, Preprocess
from fakedet.runtime.imageio import load_image
from fakedet.runtime.preprocess import preprocess

torch = pytest.importorskip("torch")
T = pytest.importorskip("torchvision.transforms")

RNG = np.random.default_rng(7)
BASE = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd sizes exercise rounding


def _muldiv255(a, b):
    tmp = a.astype(np.int64) * b + 128
    return ((tmp >> 8) + tmp) >> 8


def make_images(tmp_path):
    """(path, reference RGB uint8 array) for every mode the runtime must read."""
    out = []
    rgb = Image.fromarray(BASE, "RGB")

    p = tmp_path / "rgb.png"
    rgb.save(p)
    out.append((p, BASE))

    gray = BASE[..., 0]
    p = tmp_path / "l.png"
    Image.fromarray(gray, "L").save(p)
    out.append((p, np.stack([gray] * 3, -1)))

    p = tmp_path / "la.png"
    Image.fromarray(np.stack([gray, BASE[..., 1]], -1), "LA").save(p)
    out.append((p, np.stack([gray] * 3, -1)))

    p = tmp_path / "rgba.png"
    Image.fromarray(np.concatenate([BASE, BASE[..., :1]], -1), "RGBA").save(p)
    out.append((p, BASE))

    pal_img = rgb.quantize(colors=16)
    palette = np.array(pal_img.getpalette()[: 16 * 3], dtype=np.uint8).reshape(-1, 3)
    idx = np.asarray(pal_img)
    p = tmp_path / "p.png"
    pal_img.save(p)
    out.append((p, palette[idx]))

    p = tmp_path / "p_transparent.png"
    pal_img.save(p, transparency=3)
    out.append((p, palette[idx]))

    cmyk = RNG.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    p = tmp_path / "cmyk.tiff"
    Image.fromarray(cmyk, "CMYK").save(p)
    nk = 255 - cmyk[..., 3:4].astype(np.int64)
    ref = np.clip(nk - _muldiv255(cmyk[..., :3], nk), 0, 255).astype(np.uint8)
    out.append((p, ref))

    g16 = RNG.integers(0, 65536, (37, 53), dtype=np.uint16)
    p = tmp_path / "i16.png"
    Image.fromarray(g16).save(p)
    out.append((p, np.stack([(g16 >> 8).astype(np.uint8)] * 3, -1)))

    # EXIF orientation 6: stored landscape, displayed rotated 90 degrees clockwise
    p = tmp_path / "exif6.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(p, exif=exif.tobytes())
    out.append((p, np.rot90(BASE, k=-1)))
    return out


SPECS = {
    "center-crop": Preprocess(policy="center-crop", size=(24, 32)),
    "center-crop-pad": Preprocess(policy="center-crop", size=(48, 60)),
    "resize-bilinear": Preprocess(policy="resize", size=(20, 30), interpolation="bilinear"),
    "resize-bicubic": Preprocess(policy="resize", size=(64, 64), interpolation="bicubic"),
    "resize-center-crop": Preprocess(policy="resize-center-crop", resize_shorter=28, size=(24, 24), interpolation="bicubic"),
    "whole-image": Preprocess(policy="whole-image", size=None),
}
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def torchvision_reference(ref_rgb: np.ndarray, pre: Preprocess) -> np.ndarray:
    ops = []
    if pre.policy == "center-crop":
        ops.append(T.CenterCrop(pre.size))
    elif pre.policy == "resize":
        ops.append(T.Resize(pre.size, interpolation=INTERP[pre.interpolation]))
    elif pre.policy == "resize-center-crop":
        ops += [T.Resize(pre.resize_shorter, interpolation=INTERP[pre.interpolation]), T.CenterCrop(pre.size)]
    ops += [T.ToTensor(), T.Normalize(MEAN, STD)]
    return T.Compose(ops)(Image.fromarray(ref_rgb, "RGB")).numpy()


@pytest.mark.parametrize("policy", list(SPECS))
def test_preprocess_bit_identical_to_reference_for_every_mode(tmp_path, policy):
    spec = InputSpec(mean=MEAN, std=STD, preprocess=SPECS[policy]).validate()
    for path, ref_rgb in make_images(tmp_path):
        decoded = np.asarray(load_image(path))
        assert decoded.dtype == np.uint8 and decoded.shape[2] == 3
        np.testing.assert_array_equal(decoded, ref_rgb, err_msg=f"decode {path.name}")
        got = preprocess(path, spec)
        want = torchvision_reference(ref_rgb, spec.preprocess)
        assert got.dtype == np.float32 and got.shape == want.shape, (path.name, got.shape, want.shape)
        assert np.array_equal(got, want), f"{policy} {path.name}: max diff {np.abs(got - want).max()}"


def test_small_image_rules(tmp_path):
    img = BASE[:10, :12]
    spec = InputSpec(preprocess=Preprocess(policy="center-crop", size=(16, 16), small_images="refuse")).validate()
    with pytest.raises(ImageError, match="smaller than the 16x16 crop"):
        preprocess(img, spec)
    spec.preprocess.small_images = "pad"
    spec.preprocess.pad_value = 255
    x = preprocess(img, spec)
    assert x.shape == (3, 16, 16)
    corner = (1.0 - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    np.testing.assert_allclose(x[:, 0, 0], corner, rtol=1e-6)
    spec.preprocess.small_images = "upscale"
    assert preprocess(img, spec).shape == (3, 16, 16)


def test_whole_image_multiple_of_pads_bottom_right():
    spec = InputSpec(preprocess=Preprocess(policy="whole-image", size=None, multiple_of=8)).validate()
    x = preprocess(BASE, spec)
    assert x.shape == (3, 40, 56)
    np.testing.assert_array_equal(x[:, :37, :53], preprocess(BASE, InputSpec(preprocess=Preprocess(policy="whole-image", size=None)).validate()))


def test_layout_and_bgr():
    spec = InputSpec(layout="NHWC", channel_order="BGR", preprocess=Preprocess(policy="whole-image", size=None)).validate()
    x = preprocess(BASE, spec)
    ref = InputSpec(preprocess=Preprocess(policy="whole-image", size=None)).validate()
    y = preprocess(BASE, ref)
    np.testing.assert_array_equal(x, y.transpose(1, 2, 0)[..., ::-1])


@pytest.mark.parametrize(
    "maker,problem",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("these are notes, not pixels"), "not an image"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_bad_files_are_image_errors(tmp_path, maker, problem):
    p = tmp_path / "bad.jpg"
    maker(p)
    with pytest.raises(ImageError, match=problem) as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(BASE).save(buf, "JPEG", quality=90)
    p = tmp_path / "trunc.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(p)


def test_decompression_bomb_limit(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(p)
    with pytest.raises(ImageError, match="decompression-bomb"):
        load_image(p, max_pixels=100_000)
    assert load_image(p, max_pixels=120_000).size == (400, 300)


def test_bytes_and_arrays():
    buf = io.BytesIO()
    Image.fromarray(BASE).save(buf, "PNG")
    np.testing.assert_array_equal(np.asarray(load_image(buf.getvalue())), BASE)
    np.testing.assert_array_equal(np.asarray(load_image(BASE)), BASE)
    with pytest.raises(ImageError, match="uint8"):
        load_image(BASE.astype(np.float32))

"""The input contract of a model package: the image tensor and the preprocessing that fills
it (InputSpec, Preprocess) and, for a caption-aware model, the caption's token ids
(TextInputSpec). Read from and written to the manifest (fakedet.manifest)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .artifact_kinds import TOKENIZER, default_file
from .errors import InputSpecError
from .manifest_fields import _FlatRecord, _choice, _int, _kind, _no_unknown, _num, _str

POLICIES = ("center-crop", "resize", "resize-center-crop", "whole-image")
SMALL_IMAGE_RULES = ("pad", "refuse", "upscale")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Sane ranges for every number an input spec may state: a crafted manifest must not make the
# runtime allocate without bound (a 10**6 crop) or switch the decompression-bomb guard off.
MAX_SIDE = 4096  # size and resize_shorter, in pixels
MAX_MULTIPLE_OF = 512
PIXEL_LIMIT = 2 * 89_478_485  # max_pixels ceiling: the runtime's own limit (Pillow's error threshold)
MAX_STD_MEAN = 1e4


@dataclass
class Preprocess:
    """How an image becomes the model's input tensor.

    policy:
      center-crop         crop `size` from the centre at native resolution (no resize);
                          images smaller than the crop follow `small_images`.
      resize              resize to exactly `size` with `interpolation`.
      resize-center-crop  resize the shorter side to `resize_shorter`, then centre-crop `size`
                          (CLIP's preprocessing).
      whole-image         the image at native size; `multiple_of` > 1 pads right/bottom to a
                          multiple (for networks with fixed downsampling factors).
    small_images (center-crop only):
      pad      pad symmetrically with `pad_value` (0-255 pixel value) up to the crop size
      refuse   the image is reported as an error
      upscale  resize the shorter side up to the crop size, then crop
    """

    policy: str = "center-crop"
    size: tuple[int, int] | None = (224, 224)  # (height, width)
    interpolation: str = "bilinear"
    resize_shorter: int | None = None
    small_images: str = "pad"
    pad_value: int = 0
    multiple_of: int = 1
    max_pixels: int = 89_478_485  # Pillow's default decompression-bomb threshold

    def validate(self, where: str = "preprocess") -> "Preprocess":
        _choice(self.policy, where, "preprocessing policy", POLICIES)
        _choice(self.interpolation, where, "interpolation", INTERPOLATIONS)
        _choice(self.small_images, where, "small_images rule", SMALL_IMAGE_RULES)
        if self.policy != "whole-image" or self.size is not None:
            if not isinstance(self.size, (tuple, list)) or len(self.size) != 2:
                raise InputSpecError(f"{where}: policy '{self.policy}' needs size [height, width], got {_kind(self.size)}")
            self.size = tuple(_int(s, where, "size", 1, MAX_SIDE) for s in self.size)
        if self.resize_shorter is not None:
            _int(self.resize_shorter, where, "resize_shorter", 1, MAX_SIDE)
        if self.policy == "resize-center-crop" and not self.resize_shorter:
            raise InputSpecError(f"{where}: policy 'resize-center-crop' needs resize_shorter")
        _int(self.pad_value, where, "pad_value (a pixel value)", 0, 255)
        _int(self.multiple_of, where, "multiple_of", 1, MAX_MULTIPLE_OF)
        _int(self.max_pixels, where, "max_pixels", 1, PIXEL_LIMIT)
        return self

    @classmethod
    def from_dict(cls, d: dict, where: str = "preprocess") -> "Preprocess":
        _no_unknown(cls, d, where)
        d = dict(d)
        size = d.get("size")
        if isinstance(size, int) and not isinstance(size, bool):
            d["size"] = (size, size)
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size) if self.size is not None else None
        return d


@dataclass
class InputSpec:
    """The input tensor and the preprocessing contract that fills it."""

    name: str = "image"
    dtype: str = "float32"
    layout: str = "NCHW"
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dynamic_axes: tuple[str, ...] = ("batch",)
    preprocess: Preprocess = field(default_factory=Preprocess)

    def validate(self, where: str = "input") -> "InputSpec":
        _str(self.name, where, "name")
        _choice(self.dtype, where, "dtype", ("float32", "float16"))
        _choice(self.layout, where, "layout", ("NCHW", "NHWC"))
        _choice(self.channel_order, where, "channel_order", ("RGB", "BGR"))
        for key, lo in (("mean", -MAX_STD_MEAN), ("std", 1e-6)):
            v = getattr(self, key)
            if not isinstance(v, (tuple, list)) or len(v) != 3:
                raise InputSpecError(f"{where}: {key} needs 3 values, got {_kind(v)}")
            setattr(self, key, tuple(_num(x, where, key, lo, MAX_STD_MEAN) for x in v))
        if not isinstance(self.dynamic_axes, (tuple, list)) or len(self.dynamic_axes) > 8:
            raise InputSpecError(f"{where}: dynamic_axes must be a list of at most 8 names, got {_kind(self.dynamic_axes)}")
        self.dynamic_axes = tuple(_str(a, where, "dynamic_axes entry", 64) for a in self.dynamic_axes)
        if not isinstance(self.preprocess, Preprocess):
            raise InputSpecError(f"{where}: preprocess must be an object")
        self.preprocess.validate(f"{where}.preprocess")
        return self

    def hw_axes(self) -> tuple[int, int]:
        """Indices of the height and width axes of the batched input tensor."""
        return (2, 3) if self.layout == "NCHW" else (1, 2)

    def tensor_shape(self, batch: int | None = None, hw: tuple | None = None) -> tuple:
        """The input tensor's shape: `batch` images (None: no batch axis) of `hw`
        (default: the preprocessing size; a whole-image model has none, so pass one).
        The one place that turns a layout into a shape."""
        h, w = hw if hw is not None else (self.preprocess.size or (None, None))
        sample = (3, h, w) if self.layout == "NCHW" else (h, w, 3)
        return sample if batch is None else (batch, *sample)

    @classmethod
    def from_dict(cls, d: dict, where: str = "input") -> "InputSpec":
        _no_unknown(cls, d, where)
        d = dict(d)
        d["preprocess"] = Preprocess.from_dict(d.get("preprocess", {}), f"{where}.preprocess")
        return cls(**d).validate(where)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "layout": self.layout,
            "channel_order": self.channel_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "dynamic_axes": list(self.dynamic_axes),
            "preprocess": self.preprocess.to_dict(),
        }


TOKENIZER_KINDS = ("clip-bpe",)
TRUNCATIONS = ("end-with-eot",)
EMPTY_CAPTION_RULES = ("refuse", "score")
MAX_CONTEXT_LENGTH = 4096


@dataclass
class TextInputSpec(_FlatRecord):
    """A caption-aware model's second input: the caption's token ids.

    tokenizer       the package file holding the tokenizer (an artifact of kind
                    "tokenizer", hashed like every artifact)
    tokenizer_kind  clip-bpe: CLIP's byte-level BPE, text cleaned as open_clip cleans it,
                    [start] tokens [end], padded with 0
    truncation      end-with-eot: a caption longer than context_length is cut and its last
                    token replaced by the end token (open_clip's rule)
    empty_caption   refuse: an item whose caption is missing or blank fails with an error;
                    score: it is scored with the empty caption (a model trained with
                    uncaptioned rows)
    """

    WHERE = "text_input"
    name: str = "text"
    dtype: str = "int32"
    context_length: int = 77
    tokenizer: str = default_file(TOKENIZER)
    tokenizer_kind: str = "clip-bpe"
    truncation: str = "end-with-eot"
    empty_caption: str = "refuse"

    def validate(self, where: str = "text_input") -> "TextInputSpec":
        _str(self.name, where, "name")
        _choice(self.dtype, where, "dtype", ("int32", "int64"))
        _int(self.context_length, where, "context_length", 2, MAX_CONTEXT_LENGTH)
        _str(self.tokenizer, where, "tokenizer", 1024)
        _choice(self.tokenizer_kind, where, "tokenizer_kind", TOKENIZER_KINDS)
        _choice(self.truncation, where, "truncation", TRUNCATIONS)
        _choice(self.empty_caption, where, "empty_caption", EMPTY_CAPTION_RULES)
        return self

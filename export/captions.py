"""Captions for a caption-aware export: the package's text input, its tokenizer file,
and the captions its parity check feeds (every length class: empty, short, long
enough to be cut, unicode, HTML entities)."""

from __future__ import annotations

import numpy as np

from fakedet.errors import FakedetError
from fakedet.manifest import TextInputSpec

PARITY_CAPTIONS = (
    "",
    "a photo",
    "A red double-decker bus parked beside a stone bridge at dusk, lights on.",
    " ".join(["a crowded street market with fruit stalls and bicycles"] * 12),  # cut to the context length
    "Café crème at the Zürich station — 東京 ☕️🚀 👍🏽",
    "&lt;b&gt;breaking&lt;/b&gt; news: it&#39;s &amp;amp; more",
    "THE   QUICK\tbrown\nfox's 1234 jumps!!!",
    "one",
)


def text_input_spec(model, empty_caption: str = "refuse") -> TextInputSpec:
    return TextInputSpec(context_length=model.context_length, empty_caption=empty_caption).validate()


def tokenizer_json() -> str:
    """The runtime's tokenizer file: CLIP's BPE from the vocabulary open_clip ships."""
    from fakedet.runtime.caption_tokenizer import build_clip_tokenizer_json, open_clip_vocab_path

    return build_clip_tokenizer_json(open_clip_vocab_path())


def check_tokenizer(text: str, model, context_length: int, captions=PARITY_CAPTIONS) -> dict:
    """The runtime's tokenizer against open_clip's on `captions`: identical ids or an error."""
    from fakedet.runtime.caption_tokenizer import CaptionTokenizer

    ours = CaptionTokenizer.from_json(text, context_length).encode(list(captions))
    ref = model.token_ids(list(captions), context_length)
    differ = [i for i in range(len(captions)) if not np.array_equal(ours[i], ref[i])]
    if differ:
        raise FakedetError(f"the runtime tokenizer differs from open_clip's on caption(s) {differ} "
                           f"(first: {captions[differ[0]]!r}); the package would score captions wrongly")
    return {"captions": len(captions), "identical_to_open_clip": True, "context_length": context_length}

"""Captions for a caption-aware export: the package's text input, its tokenizer file,
and the captions its parity check feeds (every length class: empty, short, long
enough to be cut, unicode, HTML entities)."""

from __future__ import annotations

import numpy as np

from fakedet.artifact_kinds import TOKENIZER
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


class GraphText:
    """A caption-aware graph's second input at export: its spec, the tokenizer file, and the
    parity captions' token ids (open_clip's) traced and fed beside the images."""

    def __init__(self, spec: TextInputSpec, tokenizer: str, tokens: np.ndarray):
        self.spec, self.tokenizer, self.tokens = spec, tokenizer, tokens
        self.name = spec.name

    @classmethod
    def for_model(cls, model, empty_caption: str = "refuse") -> "GraphText":
        """`model`: a caption-aware CLIPDetector."""
        spec = text_input_spec(model, empty_caption)
        return cls(spec, tokenizer_json(), model.token_ids(PARITY_CAPTIONS, spec.context_length))

    def input_names(self) -> list[str]:
        return [self.name]

    def legacy_axes(self) -> dict:
        return {self.name: {0: "batch"}}

    def dynamo_shapes(self, batch) -> tuple:
        return ({0: batch},)

    def trace_args(self) -> tuple:
        import torch

        return (torch.as_tensor(self.tokens[:2], dtype=torch.int32),)

    def batch_tokens(self, b: int) -> np.ndarray:
        """Token ids for a parity batch of `b` images (the parity captions, cycled)."""
        return self.tokens[np.arange(b) % len(self.tokens)]

    def feed(self, b: int) -> dict:
        return {self.name: np.ascontiguousarray(self.batch_tokens(b))}

    def torch_args(self, b: int) -> list:
        import torch

        return [torch.from_numpy(self.batch_tokens(b))]

    def parity_facts(self, b: int) -> dict:
        """How long the captions beside the images were, in tokens."""
        return {"caption_tokens": [int(np.count_nonzero(r)) for r in self.batch_tokens(b)]}

    def write_tokenizer(self, writer, graph, say) -> None:
        """The tokenizer file into the package, after checking its ids against open_clip's
        (`graph`: the CaptionAwareGraph exported)."""
        check = check_tokenizer(self.tokenizer, graph.detector, self.spec.context_length)
        writer.staged_path(self.spec.tokenizer).write_text(self.tokenizer, encoding="utf-8")
        writer.add_file(None, self.spec.tokenizer, TOKENIZER, tokenizer_kind=self.spec.tokenizer_kind,
                        vocabulary="open_clip bpe_simple_vocab_16e6")
        writer.manifest.provenance["tokenizer_check"] = check
        say(f"tokenizer: identical ids to open_clip's on {check['captions']} captions")


class NoText:
    """GraphText's null twin: an image-only graph has one input, and nothing to trace, feed,
    report or write for text."""

    def input_names(self) -> list[str]:
        return []

    def legacy_axes(self) -> dict:
        return {}

    def dynamo_shapes(self, batch) -> tuple:
        return ()

    def trace_args(self) -> tuple:
        return ()

    def feed(self, b: int) -> dict:
        return {}

    def torch_args(self, b: int) -> list:
        return []

    def parity_facts(self, b: int) -> dict:
        return {}

    def write_tokenizer(self, writer, graph, say) -> None:
        pass


NO_TEXT = NoText()

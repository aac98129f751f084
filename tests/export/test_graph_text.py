"""The export's text input as a null object (issue 26): NO_TEXT adds nothing to the graph's
inputs, its parity feeds or its report; GraphText adds the token ids beside every batch."""

from __future__ import annotations

import numpy as np

from fakedet.export.captions import NO_TEXT, GraphText
from fakedet.export.parity import ParityInputs
from fakedet.manifest import TextInputSpec


def _inputs(text) -> ParityInputs:
    rng = np.random.default_rng(0)
    full = rng.standard_normal((8, 3, 4, 4)).astype(np.float32)
    return ParityInputs({b: full[:b] for b in (1, 3, 8)}, {b: full[:b] + 1 for b in (1, 3, 8)}, "synthetic", 8,
                        text=text)


def test_no_text_feeds_exactly_the_images():
    inputs = _inputs(NO_TEXT)
    for kind, batches in (("random", inputs.random), ("real", inputs.real)):
        feeds = inputs.feeds(kind, "image")
        assert all(set(f) == {"image"} for f in feeds.values())
        for b, f in feeds.items():
            np.testing.assert_array_equal(f["image"], batches[b])
    assert NO_TEXT.input_names() == [] and NO_TEXT.legacy_axes() == {} and NO_TEXT.dynamo_shapes("batch") == ()
    assert NO_TEXT.trace_args() == () and NO_TEXT.torch_args(8) == [] and NO_TEXT.parity_facts(8) == {}


def test_graph_text_feeds_the_images_and_the_captions_cycled():
    ids = np.zeros((3, 77), np.int32)
    for r, n in enumerate((2, 5, 9)):  # three captions of 2, 5 and 9 ids
        ids[r, :n] = np.arange(1, n + 1)
    text = GraphText(TextInputSpec(), "{}", ids)
    inputs = _inputs(text)
    feeds = inputs.feeds("real", "image")
    assert set(feeds[8]) == {"image", "text"}
    np.testing.assert_array_equal(feeds[8]["image"], inputs.real[8])
    np.testing.assert_array_equal(feeds[8]["text"], ids[[0, 1, 2, 0, 1, 2, 0, 1]])
    np.testing.assert_array_equal(feeds[1]["text"], ids[:1])
    assert text.parity_facts(8) == {"caption_tokens": [2, 5, 9, 2, 5, 9, 2, 5]}
    assert text.input_names() == ["text"] and text.legacy_axes() == {"text": {0: "batch"}}
    (traced,) = text.trace_args()
    np.testing.assert_array_equal(traced.numpy(), ids[:2])

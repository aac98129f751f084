"""A calibration batch is the images alone (an image-only graph) or a dict {input name:
array} (a caption-aware graph: the images and their captions' token ids, one row each):
every place that runs the graph feeds it through here."""

from __future__ import annotations


def feed(session, batch) -> dict:
    """The session's inputs for `batch`."""
    if isinstance(batch, dict):
        return batch
    return {session.get_inputs()[0].name: batch}


def batch_rows(batch) -> int:
    """Images in `batch`."""
    return len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)


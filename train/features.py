"""Feature cache for frozen-backbone models (clip-mlp, clip-linear): the backbone runs
once over the data, the features go to a safetensors file named by a key over
(backbone weights, input spec, data digest, text use), and the head trains on them.
A changed backbone, spec or dataset gives a new key, never a stale cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fakedet.atomic import atomic_output
from fakedet.manifest import InputSpec
from fakedet.runtime.captions import caption_for
from fakedet.runtime.dataset_index import Sample

from .data import FailureLog, ImageDataset, collate, data_digest


def backbone_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(model, spec: InputSpec, samples: list[Sample], captions: bool, *,
              backbone_sha: str | None = None, samples_digest: str | None = None) -> str:
    """`backbone_sha` (backbone_digest(model)) and `samples_digest` (data_digest(samples)[0])
    are computed here when not given."""
    h = hashlib.sha256()
    h.update((backbone_sha or backbone_digest(model)).encode())
    h.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    h.update((samples_digest or data_digest(samples)[0]).encode())
    h.update(f"text={captions}".encode())
    return h.hexdigest()[:32]


@torch.no_grad()
def extract(model, samples: list[Sample], spec: InputSpec, batch: int, device, workers: int = 0,
            captions: dict | None = None, progress: bool = True, failures: FailureLog | None = None):
    """(features (N, D) float32, labels (N,)) for the readable images, in sample order."""
    from tqdm import tqdm

    ds = ImageDataset(samples, spec, augment_cfg=None, paired=False)
    loader = DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers, collate_fn=collate)
    model.eval()
    feats, labels = [], []
    for b in tqdm(loader, desc="features", unit="batch", disable=not progress, leave=False):
        if failures is not None:
            failures.add(b.failed)
        names = iter(b.names)
        for x, y in b.groups:
            text = None
            if captions is not None:
                caps = [caption_for(captions, next(names)) or "" for _ in range(len(y))]
                text = model.text_features(model.tokenize(caps).to(device))
            f = model.features(x.to(device), text)
            feats.append(f.float().cpu())
            labels.append(y)
    if not feats:
        return torch.zeros(0, model.feature_dim), torch.zeros(0)
    return torch.cat(feats), torch.cat(labels)


def cached_features(model, samples, spec, cache_dir: Path, batch: int, device, workers: int = 0,
                    captions: dict | None = None, progress: bool = True, failures: FailureLog | None = None,
                    *, backbone_sha: str | None = None, samples_digest: str | None = None):
    """Features from the cache, or extracted now and written to it atomically (digests as in cache_key)."""
    from safetensors.torch import load_file, save_file

    key = cache_key(model, spec, samples, captions is not None, backbone_sha=backbone_sha,
                    samples_digest=samples_digest)
    path = Path(cache_dir) / f"features-{key}.safetensors"
    if path.is_file():
        t = load_file(str(path))
        return t["features"], t["labels"], path, True
    feats, labels = extract(model, samples, spec, batch, device, workers, captions, progress, failures)
    with atomic_output(path, ".safetensors") as tmp:
        save_file({"features": feats.contiguous(), "labels": labels.contiguous()}, str(tmp))
    return feats, labels, path, False

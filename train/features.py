"""Feature cache for frozen-backbone models (clip-mlp, clip-linear): the backbone runs
once over the data, the features go to a safetensors file named by a key over
(backbone weights, input spec, data digest, text use), and the head trains on them. A
caption-aware model reads its captions from a CaptionTable, an image-only one from its
null twin NO_CAPTIONS: extraction has one path.
A changed backbone, spec or dataset gives a new key, never a stale cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fakedet.atomic import atomic_output
from fakedet.manifest import InputSpec
from fakedet.runtime.captions import caption_for, read_captions_csv
from fakedet.runtime.dataset_index import Sample

from .data import FailureLog, ImageDataset, collate, data_digest
from .models.clip import takes_captions


class CaptionTable:
    """Captions by image path (a CSV's 'caption' column) for a model that reads them: each
    image's caption features go beside its image features (an unlisted image: "")."""

    reads_text = True

    def __init__(self, table: dict[str, str]):
        self.table = table

    def text_features(self, model, names: list[str], device):
        caps = [caption_for(self.table, n) or "" for n in names]
        return model.text_features(model.tokenize(caps).to(device))


class NoCaptions:
    """CaptionTable's null twin: an image-only model's features read no text."""

    reads_text = False

    def text_features(self, model, names: list[str], device) -> None:
        return None


NO_CAPTIONS = NoCaptions()


def caption_table(model, source) -> CaptionTable | NoCaptions:
    """The captions `model` reads from the CSV `source`; NO_CAPTIONS for an image-only model."""
    return CaptionTable(read_captions_csv(source)) if takes_captions(model) else NO_CAPTIONS


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
            captions: CaptionTable | NoCaptions = NO_CAPTIONS, progress: bool = True,
            failures: FailureLog | None = None):
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
            text = captions.text_features(model, [next(names) for _ in range(len(y))], device)
            f = model.features(x.to(device), text)
            feats.append(f.float().cpu())
            labels.append(y)
    if not feats:
        return torch.zeros(0, model.feature_dim), torch.zeros(0)
    return torch.cat(feats), torch.cat(labels)


def cached_features(model, samples, spec, cache_dir: Path, batch: int, device, workers: int = 0,
                    captions: CaptionTable | NoCaptions = NO_CAPTIONS, progress: bool = True,
                    failures: FailureLog | None = None,
                    *, backbone_sha: str | None = None, samples_digest: str | None = None):
    """Features from the cache, or extracted now and written to it atomically (digests as in cache_key)."""
    from safetensors.torch import load_file, save_file

    key = cache_key(model, spec, samples, captions.reads_text, backbone_sha=backbone_sha,
                    samples_digest=samples_digest)
    path = Path(cache_dir) / f"features-{key}.safetensors"
    if path.is_file():
        t = load_file(str(path))
        return t["features"], t["labels"], path, True
    feats, labels = extract(model, samples, spec, batch, device, workers, captions, progress, failures)
    with atomic_output(path, ".safetensors") as tmp:
        save_file({"features": feats.contiguous(), "labels": labels.contiguous()}, str(tmp))
    return feats, labels, path, False

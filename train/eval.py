"""Evaluate a checkpoint (PyTorch) or a model package (the runtime) on a labelled dataset.

Both paths decode with runtime.imageio.load_image and preprocess with
runtime.preprocess.preprocess_image, so a checkpoint and its exported package are
measured by one tool on identical tensors. Robustness conditions act on the decoded
image, before the model's preprocessing.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakedet.atomic import atomic_write_text
from fakedet.errors import DataError, FakedetError, ImageError, PackageError
from fakedet.manifest import InputSpec
from fakedet.runtime import metrics
from fakedet.runtime.captions import IMAGE_ONLY
from fakedet.runtime.dataset_index import Sample, index_dataset, summarize
from fakedet.runtime.imageio import load_image
from fakedet.runtime.preprocess import preprocess_image
from fakedet.runtime.scoring import sigmoid

from .eval_plots import plot_roc, plot_robustness
from .robustness import CLEAN, Condition

FIRST_NAMES = 10  # unreadable images listed by name in the report
ROC_POINTS = 1001  # ROC curves in the JSON are thinned to about this many points


# ------------------------------------------------------------ scorers ----
class Scorer:
    """A model that maps a preprocessed float32 batch to P(fake)."""

    kind: str = ""
    input_spec: InputSpec
    threshold: float = 0.5
    info: dict
    # The model's caption input (runtime.captions): score(batch, captions) feeds the batch through it.
    # CaptionInput reads one caption per row; its null twin IMAGE_ONLY sets captions aside.
    captions = IMAGE_ONLY

    @property
    def takes_captions(self) -> bool:
        return self.captions.takes_captions

    def score(self, batch: np.ndarray, captions: list | None = None) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CheckpointScorer(Scorer):
    """A checkpoint on the torch backend (PyTorch eager)."""

    kind = "checkpoint"

    def __init__(self, path: Path, device: str = "auto"):
        from .torch_backend import TorchBackend

        self.backend = TorchBackend(path, device=device).open()
        cfg = self.backend.config
        self.input_spec = InputSpec.from_dict(cfg["input"]).validate()
        self.threshold = float(cfg.get("threshold", 0.5))
        self.info = {"kind": self.kind, "path": str(path), "arch": cfg["arch"],
                     "runs_on": f"pytorch {self.backend.device}"}
        self.captions = self.backend.captions  # open_clip's tokenizer, as in training (uncaptioned rows: "")

    def score(self, batch: np.ndarray, captions: list | None = None) -> np.ndarray:
        feed = self.captions.feed(self.input_spec.name, batch, self.captions.align(captions, len(batch)))
        logits = self.backend.infer(feed).reshape(len(batch), -1)
        if logits.shape[1] != 1:
            raise FakedetError(f"checkpoint model returned {logits.shape[1]} values per image; expected one logit")
        return sigmoid(logits[:, 0])

    def close(self) -> None:
        self.backend.close()


class PackageScorer(Scorer):
    kind = "package"

    def __init__(self, path: Path, backend: str = "auto", precision: str = "auto", operating_point: str | None = None):
        from fakedet.runtime import Detector

        self.detector = Detector.open(path, backend=backend, precision=precision, operating_point=operating_point)
        self.operating_point = operating_point
        self.input_spec = self.detector.manifest.input
        self.threshold = float(self.detector.threshold)
        self.info = {"kind": self.kind, "path": str(path), "name": self.detector.manifest.name,
                     "arch": self.detector.manifest.architecture, "runs_on": self.detector.describe()}
        self.captions = self.detector.captions

    def score(self, batch: np.ndarray, captions: list | None = None) -> np.ndarray:
        # the backend fits any batch to the engine's sizes
        return self.detector.predict_tensors(batch, captions)

    def close(self) -> None:
        self.detector.close()


def is_checkpoint(path: Path) -> bool:
    from .checkpoint import checkpoint_dir

    try:
        checkpoint_dir(path)
    except PackageError:
        return False
    return True


def open_scorer(path: str | Path, backend: str = "auto", precision: str = "auto", device: str = "auto",
                operating_point: str | None = None) -> Scorer:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such checkpoint or package")
    if is_checkpoint(path):
        if operating_point is not None:
            raise DataError(f"{path}: a checkpoint has no operating points (they live in a package's manifest)")
        return CheckpointScorer(path, device)
    from .checkpoint import checkpoint_dir, run_checkpoints

    if path.is_dir() and not (path / "manifest.json").exists() and run_checkpoints(path):
        checkpoint_dir(path)  # a training run: the error names the checkpoints inside it
    return PackageScorer(path, backend, precision, operating_point)


# ------------------------------------------------------------ scoring ----
@dataclass
class ScoreRun:
    condition: str
    scores: dict[int, float] = field(default_factory=dict)  # sample index -> P(fake)
    unreadable: list = field(default_factory=list)  # [(path, problem)]


def score_samples(scorer: Scorer, samples: list[Sample], condition: Condition = CLEAN,
                  batch: int = 16, progress: bool = True, captions: list | None = None) -> ScoreRun:
    """P(fake) for every sample that decodes; images of one shape share a batch
    (whole-image models get images of many sizes). A caption-aware scorer reads each
    sample's caption (`captions`, one per sample, overrides them: the shuffled control);
    a sample whose caption the model refuses is listed with the unreadable ones."""
    from tqdm import tqdm

    run = ScoreRun(condition.name)
    spec = scorer.input_spec
    pending: dict[tuple, list] = {}  # shape -> [(index, tensor)]
    if captions is None:
        captions = [s.caption for s in samples]
        if scorer.takes_captions and all(c is None for c in captions):
            raise DataError("a caption-aware model: the dataset needs captions (a CSV with a 'caption' column)")
    captions = scorer.captions.align(captions, len(samples))  # image-only: [None] * n, the captions set aside

    def flush(shape):
        items = pending.pop(shape)
        probs = scorer.score(np.stack([t for _, t in items]), [captions[i] for i, _ in items])
        for (i, _), p in zip(items, probs):
            run.scores[i] = float(p)

    bar = tqdm(total=len(samples), unit="img", desc=f"eval {condition.name}", disable=not progress,
               dynamic_ncols=True, leave=False)
    for i, s in enumerate(samples):
        problem = scorer.captions.problem(captions[i])
        if problem:
            run.unreadable.append((str(s.path), problem))
            bar.update(1)
            continue
        try:
            img = condition(load_image(s.path, spec.preprocess.max_pixels))
            t = preprocess_image(img, spec, str(s.path))
        except ImageError as e:
            run.unreadable.append((str(s.path), e.problem))
        else:
            pending.setdefault(t.shape, []).append((i, t))
            if len(pending[t.shape]) >= batch:
                flush(t.shape)
            elif sum(map(len, pending.values())) >= 4 * batch:  # many sizes: bound memory, run partial batches
                for shape in list(pending):
                    flush(shape)
        bar.update(1)
    for shape in list(pending):
        flush(shape)
    bar.close()
    return run


# ------------------------------------------------------------ metrics ----
def metric_row(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """AUC, AP and accuracies; AUC/AP are null when one class is absent."""
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    row = {"images": int(labels.size), "real": n_real, "fake": n_fake}
    both = n_real > 0 and n_fake > 0
    row["auc"] = metrics.roc_auc(labels, scores) if both else None
    row["ap"] = metrics.average_precision(labels, scores) if both else None
    pred = scores >= threshold
    real_acc = float(np.mean(~pred[labels == 0])) if n_real else None
    fake_acc = float(np.mean(pred[labels == 1])) if n_fake else None
    row.update(
        accuracy=float(np.mean(pred == (labels == 1))) if labels.size else None,
        real_accuracy=real_acc,
        fake_accuracy=fake_acc,
        balanced_accuracy=(real_acc + fake_acc) / 2 if both else None,
    )
    return row


def thin_curve(fpr, tpr, thr, points: int = ROC_POINTS) -> dict:
    idx = np.arange(len(fpr))
    if len(idx) > points:
        idx = np.unique(np.r_[np.linspace(0, len(fpr) - 1, points).round().astype(int), len(fpr) - 1])
    return {"fpr": fpr[idx].tolist(), "tpr": tpr[idx].tolist(),
            "thresholds": [None if not math.isfinite(t) else float(t) for t in thr[idx]]}


def generator_groups(samples: list[Sample], idx: np.ndarray) -> dict[str, np.ndarray]:
    """Sample indices per generator. A generator folder with fakes only (reals shared at the
    top) is measured against all top-level reals, or all reals if there are none at the top."""
    gens = sorted({samples[i].generator for i in idx})
    if len(gens) <= 1:
        return {}
    out = {}
    top_reals = np.array([i for i in idx if samples[i].label == 0 and samples[i].generator == ""], dtype=int)
    all_reals = np.array([i for i in idx if samples[i].label == 0], dtype=int)
    for g in gens:
        own = np.array([i for i in idx if samples[i].generator == g], dtype=int)
        if g and not any(samples[i].label == 0 for i in own):
            own = np.r_[own, top_reals if top_reals.size else all_reals]
        out[g or "(top)"] = own
    return out


def summarize_run(samples: list[Sample], run: ScoreRun, threshold: float) -> tuple[dict, np.ndarray, np.ndarray]:
    idx = np.array(sorted(run.scores), dtype=int)
    labels = np.array([samples[i].label for i in idx], dtype=np.int64)
    scores = np.array([run.scores[i] for i in idx], dtype=np.float64)
    if not idx.size or labels.min() == labels.max():
        missing = "real" if not idx.size or labels.min() == 1 else "fake"
        raise DataError(f"condition {run.condition}: no readable {missing} image is left to evaluate")
    row = metric_row(labels, scores, threshold)
    row["unreadable"] = len(run.unreadable)
    return row, labels, scores


# --------------------------------------------------------- evaluation ----
def evaluate(scorer: Scorer, data: str | Path, out: str | Path, threshold: float | None = None,
             target_fpr: float = 0.05, conditions: list[Condition] | None = None, batch: int = 16,
             progress: bool = True, samples: list[Sample] | None = None, caption_shuffles: int = 1) -> dict:
    """Score `data`, write metrics.json, scores.csv, roc.png (and robustness.png); return the report.
    `samples`: index_dataset(data) when already made by the caller. A caption-aware model is
    also scored with its captions shuffled `caption_shuffles` times (the image-only control)."""
    out = Path(out)
    if samples is None:
        samples = index_dataset(data)
    thr = float(scorer.threshold if threshold is None else threshold)
    clean = score_samples(scorer, samples, CLEAN, batch, progress)
    overall, labels, scores = summarize_run(samples, clean, thr)
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)

    idx = np.array(sorted(clean.scores), dtype=int)
    pos = {int(i): k for k, i in enumerate(idx)}
    gen_rows, gen_curves = {}, {}
    for g, members in generator_groups(samples, idx).items():
        k = np.array([pos[int(i)] for i in members], dtype=int)
        gen_rows[g] = metric_row(labels[k], scores[k], thr)
        if gen_rows[g]["auc"] is not None:
            gen_curves[g] = metrics.roc_curve(labels[k], scores[k])

    t_fpr = metrics.threshold_for_fpr(labels, scores, target_fpr)
    at = metrics.accuracy_at(labels, scores, t_fpr)
    chosen = {"target_fpr": target_fpr, "threshold": t_fpr, "fpr": 1.0 - at["real_accuracy"],
              "tpr": at["fake_accuracy"], **at}

    caption_control = None
    if scorer.takes_captions:
        caption_control = shuffled_caption_control(scorer, samples, thr, overall, batch, progress, caption_shuffles)

    robustness, condition_runs = [], {}
    for cond in conditions or []:
        run = condition_runs[scores_file(cond)] = score_samples(scorer, samples, cond, batch, progress)
        row, _, _ = summarize_run(samples, run, thr)
        robustness.append({"condition": cond.name, "family": cond.family, "value": cond.value,
                           "scores": scores_file(cond), **row})

    report = {
        "model": scorer.info,
        "data": {"source": str(data), **summarize(samples),
                 "unreadable": {"count": len(clean.unreadable),
                                "first": [{"path": p, "error": e} for p, e in clean.unreadable[:FIRST_NAMES]]}},
        "threshold": {"value": thr, "source": "--threshold" if threshold is not None else f"{scorer.kind}",
                      "operating_point": getattr(scorer, "operating_point", None)},
        "overall": overall,
        "generators": gen_rows,
        "threshold_for_target_fpr": chosen,
        "robustness": robustness,
        **({"captions": {k: v for k, v in caption_control.items() if k != "curve"}} if caption_control else {}),
        "roc": {"overall": thin_curve(fpr, tpr, thresholds),
                **({"shuffled_captions": thin_curve(*caption_control["curve"])} if caption_control else {}),
                **{g: thin_curve(*c) for g, c in gen_curves.items()}},
        "files": {"scores": "scores.csv", "roc": "roc.png", **({"robustness": "robustness.png"} if robustness else {})},
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_scores(out / "scores.csv", samples, clean)
    for name, run in condition_runs.items():
        _write_scores(out / name, samples, run)
    dashed = {SHUFFLED_LABEL: caption_control["curve"]} if caption_control else {}
    plot_roc(out / "roc.png", (fpr, tpr), gen_curves, overall["auc"], scorer.info, dashed)
    if robustness:
        plot_robustness(out / "robustness.png", overall, robustness)
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    return report


SHUFFLED_LABEL = "captions shuffled (image-only control)"


def shuffled_captions(samples: list[Sample], seed: int = 0) -> list:
    """The samples' captions, each moved to another sample at random: whatever the
    captions said about the label no longer belongs to the image it is read with."""
    caps = [s.caption for s in samples]
    order = np.random.default_rng(seed).permutation(len(caps))
    return [caps[j] for j in order]


def shuffled_caption_control(scorer: Scorer, samples: list[Sample], threshold: float, overall: dict,
                             batch: int = 16, progress: bool = True, shuffles: int = 1, seed: int = 0) -> dict:
    """A caption-aware model scored with each image's own caption, and again with the
    captions shuffled across the set (`shuffles` times, seeds seed, seed+1, ...). The
    shuffled AUC is what the image alone carries; the gap is what the captions carry (in a
    set whose real and fake captions come from different sources, a label leak, not
    detection). On a small set one shuffle's AUC varies: ask for several."""
    aucs, aps, accs, curve = [], [], [], None
    for k in range(max(1, int(shuffles))):
        run = score_samples(scorer, samples, CLEAN, batch, progress, captions=shuffled_captions(samples, seed + k))
        row, labels, scores = summarize_run(samples, run, threshold)
        aucs.append(row["auc"])
        aps.append(row["ap"])
        accs.append(row["accuracy"])
        if curve is None:
            curve = metrics.roc_curve(labels, scores)
    shuffled = float(np.mean(aucs))
    return {
        "image_and_caption": {"auc": overall["auc"], "ap": overall["ap"], "accuracy": overall["accuracy"]},
        "shuffled_captions": {"auc": shuffled, "ap": float(np.mean(aps)), "accuracy": float(np.mean(accs)),
                              "auc_per_shuffle": aucs, "seeds": list(range(seed, seed + len(aucs)))},
        "auc_from_captions": overall["auc"] - shuffled,
        "method": "each image scored with another sample's caption (seeded shuffles of the set's captions); "
                  "the mean AUC is the image-only figure, the difference what the captions carry",
        "curve": curve,
    }


def scores_file(cond: Condition) -> str:
    """The per-image scores of one robustness condition: scores-jpeg-75.csv, scores-downscale-0.5.csv."""
    return f"scores-{cond.family}-{cond.value:g}.csv"


def _write_scores(path: Path, samples: list[Sample], run: ScoreRun) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["path", "label", "generator", "score"])
    for i, s in enumerate(samples):
        w.writerow([str(s.path), s.label, s.generator, f"{run.scores[i]:.8g}" if i in run.scores else ""])
    atomic_write_text(path, buf.getvalue())

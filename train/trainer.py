"""The training loop: data, model, loss, optimiser (optionally SAM), validation on
balanced accuracy with early stopping and lr/10 decay (alignment paper), atomic
checkpoints (`<out>/best`, `<out>/last` with resume state), metrics JSONL.

Resuming from `<out>/last` gives the same weights as an uninterrupted run: the
sample order and every augmentation draw derive from (seed, epoch, index), torch's
generator (Dropout) is reseeded from (seed, epoch, rank) each epoch, and the optimiser
state is saved with each epoch.

Under torchrun (DDP) `batch` stays the global batch and a step sees the same images as
in one process (train/ddp.py); only rank 0 validates, writes checkpoints and logs."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fakedet import __version__
from fakedet.atomic import atomic_write_text
from fakedet.errors import DataError
from fakedet.runtime.metrics import validation_metrics

from . import ddp
from .checkpoint import flatten_optimizer, load_resume_state, remove_stale_staging, save_checkpoint, unflatten_optimizer
from .config import TrainConfig
from .data import FailureLog, ImageDataset, collate, data_digest, load_samples, split_samples
from .losses import build_loss
from .models import create_model, model_input_spec
from .models.clip import random_backbone_note
from .progress import epoch_line
from .models.evidence import EvidenceGraph
from .region_loss import region_graph, region_loss
from .sam import SAM, frozen_bn_stats

log = logging.getLogger("fakedet.train")


class Trainer:
    """`Trainer(cfg).run()` -> summary dict. `on_epoch_end(trainer, epoch, record)` callbacks
    run after each epoch's checkpoint is on disk (tests use one to simulate a crash)."""

    def __init__(self, cfg: TrainConfig, on_epoch_end=None):
        self.cfg = cfg.validate()
        self.on_epoch_end = on_epoch_end
        self.out = Path(cfg.out)
        self.rank, self.world = ddp.rank_and_world()
        self.failures = FailureLog()

    # ------------------------------------------------------------ setup
    def _setup_data(self):
        cfg = self.cfg
        samples = load_samples(cfg.data)
        if cfg.val_data:
            self.train_samples, self.val_samples = samples, load_samples(cfg.val_data)
        else:
            self.train_samples, self.val_samples = split_samples(samples, cfg.val_fraction, cfg.seed)
        self.data_digest, self.digest_has_content = data_digest(self.train_samples)

    def _setup_model(self):
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.arch, pretrained=cfg.pretrained, **cfg.model_kwargs).to(self.device)
        note = random_backbone_note(cfg.arch, cfg.pretrained, cfg.model_kwargs.get("clip_model"))
        if note and self.rank == 0:
            print(note, file=sys.stderr, flush=True)
        self.spec = model_input_spec(cfg.arch, **cfg.model_kwargs)
        self.frozen = bool(getattr(self.model, "frozen_backbone", False))
        self.net = self.model.head if self.frozen else self.model
        if cfg.region_loss > 0:  # the map's regions trained too; the image logit is unchanged
            self.net = region_graph(self.model, cfg.arch)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self._batchnorm_across_ranks()
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DDP(self.net, device_ids=ids)
        params = [p for p in self.net.parameters() if p.requires_grad]
        base, kw = {"adam": (torch.optim.Adam, {}), "adamw": (torch.optim.AdamW, {}),
                    "sgd": (torch.optim.SGD, {"momentum": 0.9})}[cfg.optimizer]
        kw.update(lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.opt = SAM(params, base, rho=cfg.sam_rho, **kw) if cfg.sam_rho > 0 else base(params, **kw)
        self.loss_fn = build_loss(cfg.loss, alpha=cfg.cvar_alpha, eta=cfg.auc_eta, p=cfg.auc_p, gamma=cfg.gamma)
        self.amp_dtype = None
        if cfg.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # fp16 needs loss scaling; SAM's two passes and a scaler do not mix, so SAM runs fp16-free
        if self.amp_dtype == torch.float16 and cfg.sam_rho > 0:
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def _batchnorm_across_ranks(self) -> None:
        """GPU: SyncBatchNorm (statistics of the global batch, as in one process). CPU: torch has
        no SyncBatchNorm for gloo, so each process normalises with its share of the batch."""
        if not ddp.has_batchnorm(self.net):
            return
        if self.device.type == "cuda" and self.cfg.sync_bn:
            self.net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            if self.frozen:
                self.model.head = self.net
            else:
                self.model = self.net.model if isinstance(self.net, EvidenceGraph) else self.net
        elif self.rank == 0:
            log.warning("BatchNorm statistics are per process (%d images each): the run is equivalent to one "
                        "process only approximately%s", self.cfg.batch // self.world,
                        "" if self.device.type == "cuda" else " (SyncBatchNorm needs GPUs)")

    def _setup_features(self):
        from .features import backbone_digest, cached_features, caption_table

        cfg = self.cfg
        cache = Path(cfg.cache_dir) if cfg.cache_dir else self.out / "feature_cache"
        captions = caption_table(self.model, cfg.data)  # NO_CAPTIONS (the null table) for an image-only model
        val_captions = caption_table(self.model, cfg.val_data) if cfg.val_data else captions
        backbone_sha = backbone_digest(self.model)
        out = {}
        for part, samples, caps, digest in (("train", self.train_samples, captions, self.data_digest),
                                            ("val", self.val_samples, val_captions, None)):
            if self.rank != 0 and self.world > 1:
                torch.distributed.barrier()  # rank 0 extracts first; the others read its cache
            f, y, path, hit = cached_features(self.model, samples, self.spec, cache, cfg.val_batch or cfg.batch,
                                              self.device, cfg.workers, caps, self._show(), self.failures,
                                              backbone_sha=backbone_sha, samples_digest=digest)
            if self.rank == 0 and self.world > 1:
                torch.distributed.barrier()
            log.info("%s features: %s (%s)", part, path, "cache hit" if hit else "extracted")
            out[part] = (f, y)
        self.train_feats, self.val_feats = out["train"], out["val"]
        if len(self.train_feats[1]) < 2:
            raise DataError("fewer than 2 readable training images")

    def _show(self) -> bool:
        return self.cfg.progress and self.rank == 0

    # ------------------------------------------------------------ batches
    def _per_item(self) -> int:
        return 2 if self.cfg.paired and not self.frozen else 1

    def _steps(self, n: int, epoch: int) -> list[list[int]]:
        """This rank's item indices per step, from an order that depends on (seed, epoch) only."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
        least = 2 if self.frozen else 1  # a BatchNorm1d head needs two samples per process
        return ddp.step_batches(order, max(1, self.cfg.batch // self._per_item()), self.rank, self.world,
                                least * self.world)

    def _steps_in_epoch(self, epoch: int) -> int:
        n = len(self.train_feats[1]) if self.frozen else len(self.train_ds)
        return len(self._steps(n, epoch))

    def _train_batches(self, epoch: int):
        """One list of same-shape (x, y) groups per step."""
        cfg = self.cfg
        if self.frozen:
            f, y = self.train_feats
            for idx in self._steps(len(y), epoch):
                idx = torch.tensor(idx, dtype=torch.long)
                yield [(f[idx], y[idx])]
            return
        self.train_ds.set_epoch(epoch)
        loader = DataLoader(self.train_ds, batch_sampler=self._steps(len(self.train_ds), epoch),
                            num_workers=cfg.workers, collate_fn=collate, pin_memory=self.device.type == "cuda")
        for b in loader:
            self.failures.add(b.failed)
            yield b.groups

    def _agreed_groups(self, groups: list) -> list:
        if self.world == 1:
            return groups
        return groups[: ddp.agree_on_step(len(groups))]

    def _val_logits(self):
        self.model.eval()
        logits, labels = [], []
        with torch.no_grad(), self._autocast():
            if self.frozen:
                f, y = self.val_feats
                for i in range(0, len(y), self.cfg.val_batch or self.cfg.batch):
                    logits.append(self.model.head(f[i : i + (self.cfg.val_batch or self.cfg.batch)].to(self.device)).float().cpu())
                labels = [y]
            else:
                loader = DataLoader(self.val_ds, batch_size=self.cfg.val_batch or self.cfg.batch,
                                    num_workers=self.cfg.workers, collate_fn=collate)
                for b in loader:
                    self.failures.add(b.failed)
                    for x, y in b.groups:
                        logits.append(self.model(x.to(self.device)).float().cpu())
                        labels.append(y)
        if not labels or sum(len(l) for l in labels) == 0:
            raise DataError("no readable validation images")
        return torch.cat(logits).reshape(-1), torch.cat(labels)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    # ------------------------------------------------------------ one step
    def _loss(self, x, y) -> torch.Tensor:
        logits, extra = self.net(x), 0.0
        if isinstance(logits, tuple):
            logits, extra = logits[0], self.cfg.region_loss * region_loss(logits[1], y)
        if self.world > 1:  # the loss of the whole global batch, in its single-process order
            return self.loss_fn(*ddp.gather_batch(logits, y)) + extra
        return self.loss_fn(logits, y) + extra

    def _step(self, x, y) -> float:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device)
        if isinstance(self.opt, SAM):
            with self._autocast():
                loss = self._loss(x, y)
            loss.backward()
            self.opt.first_step(zero_grad=True)
            with frozen_bn_stats(self.net), self._autocast():
                self._loss(x, y).backward()
            self.opt.second_step(zero_grad=True)
            return float(loss.detach())
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self._loss(x, y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        return float(loss.detach())

    def _set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    # ------------------------------------------------------------ state
    def _train_state(self, epoch: int) -> tuple[dict, dict]:
        tensors, meta = flatten_optimizer(self.opt.state_dict())
        if self.scaler is not None:
            meta["scaler"] = self.scaler.state_dict()
        meta.update(epoch=epoch, lr=self.lr, best=self.best, es_best=self.es_best, bad_epochs=self.bad_epochs,
                    failures=self.skipped, history=self.history, stopped=self.stopped)
        return tensors, meta

    def _resume(self) -> int:
        """Load <out>/last if present; returns the next epoch to run."""
        state = load_resume_state(self.out / "last")
        if state is None:
            return 0
        last, weights, tensors, meta, old = state
        for key in ("arch", "model_kwargs", "batch", "seed", "loss", "optimizer", "sam_rho", "paired", "region_loss"):
            if key in old and old[key] != getattr(self.cfg, key):
                raise DataError(f"{last}: cannot resume: '{key}' was {old[key]!r}, now {getattr(self.cfg, key)!r} "
                                f"(use a new --out, or --no-resume to start over)")
        self.model.load_state_dict(weights, strict=True)
        self.opt.load_state_dict(unflatten_optimizer(tensors, meta))
        if self.scaler is not None and "scaler" in meta:
            self.scaler.load_state_dict(meta["scaler"])
        self.lr, self.best, self.es_best = meta["lr"], meta["best"], meta["es_best"]
        self.bad_epochs, self.history, self.stopped = meta["bad_epochs"], meta["history"], meta["stopped"]
        if self.rank == 0:  # the saved count is every rank's: kept once
            self.failures.count, self.failures.first = meta["failures"]["skipped"], meta["failures"]["first"]
        self._set_lr(self.lr)
        log.info("resumed from %s at epoch %d", last, meta["epoch"] + 1)
        return int(meta["epoch"]) + 1

    def _checkpoint_config(self, epoch: int, metrics: dict) -> dict:
        cfg = self.cfg
        return {
            "arch": cfg.arch, "model_kwargs": dict(cfg.model_kwargs), "input": self.spec.to_dict(),
            "threshold": cfg.threshold, "fakedet_version": __version__, "backbone_weights": cfg.pretrained or "none",
            "training": {
                "config": cfg.to_dict(), "epoch": epoch, "epochs_done": epoch + 1, "metrics": metrics,
                "data": str(cfg.data), "data_digest": self.data_digest, "data_digest_content": self.digest_has_content,
                "train_images": len(self.train_samples), "val_images": len(self.val_samples),
                "skipped_images": self.skipped, "pretrained_init": cfg.pretrained,
            },
        }

    # ------------------------------------------------------------ the run
    def run(self) -> dict:
        cfg = self.cfg
        self.device = ddp.pick_device(cfg.device)
        ddp.init(self.world, self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self._setup_data()
        self._setup_model()
        if self.frozen:
            self._setup_features()
        else:
            aug = cfg.augment_config()
            if aug is not None and self.spec.preprocess.policy != "whole-image" and "crop_size" not in cfg.augment:
                aug.crop_size = min(self.spec.preprocess.size)  # train crops match the deploy crop
            self.train_ds = ImageDataset(self.train_samples, self.spec, aug, paired=cfg.paired, seed=cfg.seed)
            self.val_ds = ImageDataset(self.val_samples, self.spec, None, paired=False)

        self.lr, self.best, self.es_best, self.bad_epochs = cfg.lr, -math.inf, -math.inf, 0
        self.history, self.stopped = [], False
        ddp.check_batch(cfg.batch, self._per_item(), self.world)
        start = self._resume() if cfg.resume else 0
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            remove_stale_staging(self.out)

        from tqdm import tqdm

        for epoch in range(start, cfg.epochs):
            if self.stopped:
                break
            if cfg.schedule == "cosine":
                self.lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
                self._set_lr(self.lr)
            self.net.train()
            torch.manual_seed(ddp.epoch_seed(cfg.seed, epoch, self.rank))
            t0, losses = time.time(), []
            bar = tqdm(self._train_batches(epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       total=self._steps_in_epoch(epoch), disable=not self._show(), leave=False)
            for groups in bar:
                for x, y in self._agreed_groups(groups):
                    losses.append(self._step(x, y))
                    bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if not losses:
                raise DataError("no readable training batch in this epoch")
            metrics = self._validate()
            record = {"epoch": epoch + 1, "train_loss": sum(losses) / len(losses), "lr": self.lr,
                      "seconds": round(time.time() - t0, 3), "skipped_images": self._count_skipped()["skipped"],
                      **{f"val_{k}": v for k, v in metrics.items()}}
            improved = metrics["balanced_accuracy"] > self.best
            self._after_epoch(epoch, metrics, record)
            if self.rank == 0:  # one line per epoch, with or without the progress bar
                tqdm.write(epoch_line(record, cfg.epochs, improved), file=sys.stderr)
            if self.on_epoch_end is not None:
                self.on_epoch_end(self, epoch, record)
        summary = {"epochs_done": len(self.history), "best_balanced_accuracy": self.best,
                   "best": str(self.out / "best"), "last": str(self.out / "last"),
                   "skipped_images": self._count_skipped(), "history": self.history}
        if self.rank == 0:
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    def _count_skipped(self) -> dict:
        """Unreadable images so far, over every rank (each counts what it read)."""
        self.skipped = self.failures.to_dict()
        if self.world > 1:
            self.skipped["skipped"] = ddp.sum_over_ranks(self.failures.count)
        return self.skipped

    def _validate(self) -> dict:
        """Rank 0 validates; every rank gets its metrics (the same lr-decay and early-stop decisions)."""
        metrics = self._val_metrics() if self.rank == 0 else None
        return ddp.from_rank0(metrics) if self.world > 1 else metrics

    def _val_metrics(self) -> dict:
        logits, labels = self._val_logits()
        return validation_metrics(labels.cpu().numpy(), logits.detach().double().cpu().numpy(), self.cfg.threshold)

    def _after_epoch(self, epoch: int, metrics: dict, record: dict) -> None:
        cfg = self.cfg
        score = metrics["balanced_accuracy"]
        improved = score > self.best
        if improved:
            self.best = score
        if cfg.schedule == "plateau":
            if score > self.es_best + cfg.min_delta:
                self.es_best, self.bad_epochs = score, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs >= cfg.patience:
                    new_lr = self.lr * cfg.lr_decay
                    if new_lr < cfg.min_lr:
                        self.stopped = True
                        record["event"] = "early stop"
                    else:
                        self.lr, self.bad_epochs, self.es_best = new_lr, 0, -math.inf
                        self._set_lr(new_lr)
                        record["event"] = f"lr decayed to {new_lr:g}"
        self.history.append(record)
        if self.rank == 0:
            model = self.model
            ck_cfg = self._checkpoint_config(epoch, metrics)
            if improved:
                save_checkpoint(self.out / "best", model, ck_cfg)
            tensors, meta = self._train_state(epoch)
            save_checkpoint(self.out / "last", model, ck_cfg, extra_tensors=tensors, extra_json=meta)
            lines = "".join(json.dumps(r) + "\n" for r in self.history)
            atomic_write_text(self.out / "metrics.jsonl", lines)
        if self.world > 1:
            torch.distributed.barrier()

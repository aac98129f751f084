"""What `fakedet train` says after each epoch: one line a person can follow."""

from __future__ import annotations


def epoch_line(record: dict, epochs: int, improved: bool) -> str:
    """`epoch 3/15: train loss 0.412, val balanced accuracy 0.953, AUC 0.981 (12.3 s) best`."""
    parts = [f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}"]
    for key, label in (("val_balanced_accuracy", "val balanced accuracy"), ("val_auc", "AUC")):
        value = record.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:.3f}")
    line = ", ".join(parts) + f" ({record['seconds']:.1f} s)"
    if improved:
        line += ", best so far"
    if record.get("event"):
        line += f"; {record['event']}"
    return line

"""A small resnet-tiny-nodown package with (or without) the evidence output, for the
evidence-map tests."""

from pathlib import Path


def tiny_evidence_package(root: Path, evidence: bool = True, precision: str = "fp32") -> Path:
    import torch

    from fakedet.cli import main
    from fakedet.train.checkpoint import save_checkpoint
    from fakedet.train.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet-tiny-nodown", pretrained="none", width=8)
    with torch.no_grad():  # a fresh head is ~0: give the map some spread
        lin = model.fc[-1]
        lin.weight.normal_(0, 2.0 / lin.in_features ** 0.5)
        lin.bias.fill_(0.3)
    ck = save_checkpoint(root / "ck", model.eval(), {"arch": "resnet-tiny-nodown", "model_kwargs": {"width": 8},
                                                     "threshold": 0.5, "metrics": {"auc": 0.5}, "data_digest": "d" * 16})
    pkg = root / ("tiny.fdet" if evidence else "tiny-plain.fdet")
    args = ["export", str(ck), "-o", str(pkg), "--precision", precision, "--sample-size", "48"]
    assert main(args + ([] if evidence else ["--no-evidence"])) == 0
    return pkg

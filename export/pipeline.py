"""The export: a PyTorch detector -> a model package with FP32 / FP16 ONNX, the
manifest (also embedded in each ONNX file) and a parity report. Everything is
written into the PackageWriter's staging directory and put in place in one step;
a parity failure or a crash leaves the destination as it was."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fakedet.artifact_kinds import KINDS, ONNX_FP16, ONNX_FP32, PARITY_REPORT, default_file
from fakedet.manifest import Manifest
from fakedet.package import PackageWriter, embed_manifest

from fakedet.train.models.clip import CaptionAwareGraph, random_backbone_note, takes_captions
from fakedet.train.models.evidence import EVIDENCE_OUTPUT, EvidenceGraph, supports_evidence

from . import captions
from .fp16 import ORT_CPU_DISABLED_OPTIMIZERS, fp16_summary, to_fp16
from .onnx_export import DEFAULT_OPSET, export_onnx
from .phases import Phases
from .parity import ParityError, compare, format_report, make_inputs, onnx_logits, torch_logits
from .evidence_check import check_evidence
from .source import ExportSource, manifest_from_config

log = logging.getLogger(__name__)

PRECISION_CHOICES = ("fp32", "fp16", "both")
PARITY_FILE = default_file(PARITY_REPORT)


@dataclass
class ExportOptions:
    name: str | None = None
    opset: int = DEFAULT_OPSET
    precision: str = "both"
    atol: float = 1e-4
    atol_fp16: float = 5e-2
    exporter: str = "auto"
    calib_images: str | Path | None = None
    whole_image_size: tuple[int, int] = (128, 128)
    simplify: bool = True
    empty_caption: str = "refuse"  # caption-aware models: what a missing caption means (TextInputSpec)
    evidence: bool = True  # a second output, the evidence map, where the architecture makes it exact


@dataclass
class ExportResult:
    path: Path
    manifest: Manifest
    parity: dict


def _say(msg: str, echo: Callable[[str], None] | None) -> None:
    (echo or (lambda m: print(m, file=sys.stderr)))(msg)


def export_package(source: ExportSource, dest: str | Path, opts: ExportOptions | None = None,
                   echo: Callable[[str], None] | None = None,
                   after_onnx: Callable[[Path], None] | None = None) -> ExportResult:
    """Export `source` to the package directory `dest`. `after_onnx(path)` is called after
    each ONNX file is written into the staging directory (tests interrupt the export there)."""
    opts = opts or ExportOptions()
    if opts.precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}")
    dest = Path(dest)
    name = opts.name or dest.name.removesuffix(".fdet")
    manifest = manifest_from_config(source.config, name, source.checkpoint)
    note = random_backbone_note(manifest.architecture, manifest.provenance.get("backbone_weights", "?"),
                                source.config.get("model_kwargs", {}).get("clip_model"), "train --pretrained")
    if note:
        _say(note, echo)
    spec = manifest.input
    threshold = manifest.threshold.value
    model = source.model.eval()
    text = captions.NO_TEXT  # the graph's text input: nothing to trace, feed or write for an image-only model
    if takes_captions(model):  # the graph takes (image, token ids); the tokenizer goes in the package
        text = captions.GraphText.for_model(model, opts.empty_caption)  # open_clip's ids for the parity captions
        manifest.text_input = text.spec
        model = CaptionAwareGraph(model).eval()
        _say(f"caption-aware model: inputs '{spec.name}' and '{text.name}' "
             f"({text.spec.context_length} CLIP BPE token ids, empty caption: {text.spec.empty_caption})", echo)

    phases = Phases(lambda m: _say(m, echo))
    inputs = make_inputs(spec, opts.whole_image_size, opts.calib_images, text=text)
    for skipped in inputs.skipped_images:
        _say(f"parity: skipped {skipped}", echo)
    phases.start(f"PyTorch reference logits for the parity check ({manifest.architecture})")
    reference = torch_logits(model, inputs)
    graph, extra = model, ()
    if text is captions.NO_TEXT and opts.evidence and supports_evidence(model):  # the per-region logits (image-only)
        graph, extra = EvidenceGraph(model).eval(), (EVIDENCE_OUTPUT,)

    with PackageWriter(dest, manifest) as w:
        work = w.staged_path(".work/export.onnx")  # the torch exporter writes a file
        phases.start(f"tracing the model to ONNX (opset {opts.opset}"
                     f"{', then onnxslim' if opts.simplify else ''}; large backbones take minutes)")
        proto32, info = export_onnx(graph, spec, work, opts.opset, opts.exporter, opts.whole_image_size, opts.simplify,
                                    text=text, extra_outputs=extra)
        shutil.rmtree(w.stage / ".work", ignore_errors=True)
        _say(f"exported with the {info.exporter} exporter, opset {info.opset}"
             f"{', simplified with onnxslim' if info.simplified else ''}", echo)

        # parity runs on the serialised graphs; the files saved below differ only in metadata
        parity: dict = {}
        protos: dict[str, tuple] = {}
        if opts.precision in ("fp32", "both"):
            phases.start("parity fp32: ONNX Runtime against PyTorch")
            got = onnx_logits(proto32.SerializeToString(), inputs)
            parity[ONNX_FP32] = compare(reference, got, threshold, opts.atol, inputs)
            protos[ONNX_FP32] = (proto32, default_file(ONNX_FP32))
            _say(format_report("fp32", parity[ONNX_FP32]), echo)
        if opts.precision in ("fp16", "both"):
            phases.start("converting to fp16 and checking its parity")
            proto16 = to_fp16(proto32)
            got = onnx_logits(proto16.SerializeToString(), inputs, ORT_CPU_DISABLED_OPTIMIZERS)
            rep = compare(reference, got, threshold, opts.atol_fp16, inputs)
            rep["conversion"] = {"converter": "onnxconverter-common float16", "keep_io_types": True, **fp16_summary(proto16)}
            parity[ONNX_FP16] = rep
            protos[ONNX_FP16] = (proto16, default_file(ONNX_FP16))
            _say(format_report("fp16", rep), echo)

        if extra:
            w.manifest.evidence = check_evidence(protos, inputs, opts.atol, opts.atol_fp16, echo=lambda m: _say(m, echo))
        failed = [k for k, r in parity.items() if not r["passed"]]
        if failed:
            raise ParityError(
                "parity check failed for " + ", ".join(
                    f"{k} (max |logit diff| {parity[k]['max_abs_diff']:.3g} > atol {parity[k]['atol']:g})" for k in failed)
                + f"; the package was not written ({dest})"
            )

        text.write_tokenizer(w, model, lambda m: _say(m, echo))
        w.manifest.provenance.update({
            "export": {"exporter": info.exporter, "opset": info.opset, "simplified": info.simplified,
                       "notes": info.notes, "whole_image_sample": list(opts.whole_image_size)},
            "parity": {k: {key: r[key] for key in ("max_abs_diff", "mean_abs_diff", "score_agreement", "atol",
                                                    "passed", "real_source", "n_real_images", "caption_tokens")
                           if key in r}
                       for k, r in parity.items()},
        })
        phases.start(f"writing {', '.join(file for _, file in protos.values())}")
        for kind, (proto, file) in protos.items():
            embed_manifest(proto, w.manifest, kind)
            attrs = {"opset": info.opset, "exporter": info.exporter, "precision": KINDS[kind].precision}
            if kind == ONNX_FP16:
                attrs["ort_cpu_disabled_optimizers"] = list(ORT_CPU_DISABLED_OPTIMIZERS)
            w.add_onnx(proto, file, kind, **attrs)  # over 2 GB: tensors in FILE.data, listed and hashed
            if after_onnx is not None:
                after_onnx(w.stage / file)
        report_path = w.staged_path(PARITY_FILE)
        report_path.write_text(json.dumps(parity, indent=2) + "\n", encoding="utf-8")
        w.add_file(None, PARITY_FILE, PARITY_REPORT)
        final_manifest = w.manifest
    return ExportResult(dest, final_manifest, parity)

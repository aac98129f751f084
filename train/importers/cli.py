"""`fakedet import`: a published detector checkpoint -> a fakedet checkpoint."""

from __future__ import annotations

from pathlib import Path

import click


def _families_text() -> str:
    from .registry import list_families

    rows = []
    for fam in list_families():
        backbone = " + --backbone-weights" if fam.needs_backbone else ""
        rows.append(f"  {fam.name}: {fam.weights}{backbone}\n    {fam.summary}\n    facts from {fam.repository}")
    return "\n".join(rows)


class _ImportCommand(click.Command):
    def format_epilog(self, ctx, formatter):
        super().format_epilog(ctx, formatter)
        formatter.write("\n\b\nFamilies:\n" + _families_text() + "\n")


@click.command(
    "import",
    cls=_ImportCommand,
    epilog="""\b
Examples:
  fakedet import cnndetection blur_jpg_prob0.5.pth -o ck/cnndetection
  fakedet import universal-fake-detect fc_weights.pth --backbone-weights openai -o ck/ufd
  fakedet import aligned-forensics model_epoch_best.pth -o ck/aligned
  fakedet import robust-clip checkpoint_epoch_0031.pt --backbone-weights vit_l14_openai.safetensors -o ck/rclip
  fakedet export ck/cnndetection -o cnndetection.fdet     # then calibrate, build, predict as usual

\b
WEIGHTS is read with torch.load(weights_only=True) only (or as safetensors): a file that
asks the unpickler for anything but tensors and plain containers is refused unread.
The keys are mapped strictly: a published tensor nothing uses, a model tensor the file
lacks, or a shape that differs stops the import with their names.
--backbone-weights (CLIP families): a local .safetensors of the OpenAI CLIP weights, or an
open_clip tag ('openai') already in the Hugging Face cache; nothing is downloaded.""",
)
@click.argument("family")
@click.argument("weights", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="The checkpoint directory to write (model.safetensors + config.json).")
@click.option("--backbone-weights", default=None,
              help="CLIP backbone for head-only families: a .safetensors file or a cached open_clip tag.")
@click.option("--clip-model", default=None,
              help="open_clip architecture of the backbone [ViT-L-14-quickgelu: OpenAI's ViT-L/14].")
@click.option("--caption", default="", show_default=True,
              help="robust-clip: the fixed caption folded into the head (encoded as its pipeline did: "
                   "str() of the UTF-8 bytes, cut to 77 characters).")
def import_(family, weights, output, backbone_weights, clip_model, caption):
    """Import FAMILY's published WEIGHTS as a fakedet checkpoint, with the family's
    preprocessing contract and threshold, ready for `fakedet export`."""
    from . import import_checkpoint

    out, result = import_checkpoint(family, weights, output, backbone_weights=backbone_weights,
                                    clip_model=clip_model, caption=caption)
    pre = result.input["preprocess"]
    size = "x".join(map(str, pre["size"])) if pre.get("size") else "native size"
    click.echo(f"imported {family} -> {result.arch}: {pre['policy']} {size}, mean {result.input['mean']}, "
               f"threshold {result.threshold:g}", err=True)
    for note in result.facts.get("notes", []) + [f"ignored: {k}" for k in result.facts.get("ignored_top_level", [])]:
        click.echo(f"  {note}", err=True)
    click.echo(f"wrote {out}")
    return 0

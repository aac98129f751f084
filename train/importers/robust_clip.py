"""The robust CLIP detector (Santosh et al. 2024, "Robust CLIP-Based Detector for Exposing
Diffusion Model-Generated Images", arXiv 2404.12908): the MLP head its train.py saves.

Facts, read from github.com/Purdue-M2/Robust_DM_Generated_Image_Detection:
- Head (DFAD_model_base.py `DFADModel`): `layers` = 3 x [Linear(1536, 1536),
  BatchNorm1d(1536), LeakyReLU(0.01), Dropout(0.335)] (Sequential indices 0-11: Linears at
  0, 4, 8, BatchNorms at 1, 5, 9) and `output_layer` = Linear(1536, 1). Its forward is
  `output_layer(layers(torch.cat((image_features, text_features), -1)))`: image first.
- Saving (train.py): the model is wrapped in `nn.DataParallel` and saved with
  `torch.save(model.state_dict(), 'checkpoint_epoch_NNNN.pt')`: a bare state dict whose keys
  all start with 'module.'.
- Features (clip_feature.py, h5_process.py, dataset.py): OpenAI CLIP `clip.load('ViT-L/14')`
  (QuickGELU); image features = `encode_image(preprocess(img))` with CLIP's own preprocess
  (resize the shorter side to 224, bicubic; centre crop 224; CLIP mean/std); text features =
  `encode_text(clip.tokenize(text[:77]))` (texts cut to 77 characters first). Neither is
  L2-normalised; both are cast to float32 for the head.
- The text their CLIP saw: get_data.py stores each prompt as UTF-8 bytes in the h5 file;
  h5_process.py reads them back (bytes) and applies `str()`, which gives the bytes' repr:
  the prompt "a cat" was encoded as the text "b'a cat'". The import applies the same
  convention to --caption.
- Not in the published code: how images were decoded and sized before CLIP's preprocess
  (get_data.py calls `utils.get_data` with a signature utils.py does not have); the
  preprocessing contract here is CLIP's own, which their clip_feature.py applies (unconfirmed
  whether an earlier resize happened).
- Threshold: `sigmoid(logit) > 0.5` (train.py `evaluate`).
- Precision: clip.load on a GPU gives an fp16 CLIP; fakedet's import runs it in fp32.

Deployment decision (fakedet's, not theirs): the head needs caption features, but a
detector must work on the image alone (REFERENCE.md: captions can leak the label). The
import folds the text features of one fixed caption (--caption, default "") into the first
Linear's bias: W @ [img; txt] + b = W_img @ img + (b + W_txt @ txt), exact for that caption.
The result is an image-only `clip-mlp` (hidden 1536); the caption is recorded in the
checkpoint. The paper measured the head with each image's own caption: image-only accuracy
with a fixed caption is not what it reports.
"""

from __future__ import annotations

import torch

from fakedet.errors import PackageError

from .clip_common import backbone_facts, backbone_for, clip_contract
from .mapping import map_onto, state_dict_in, strip_prefix
from .registry import Imported, ImportRequest, register_family

REPOSITORY = "Purdue-M2/Robust_DM_Generated_Image_Detection"
SOURCES = ["DFAD_model_base.py", "train.py", "clip_feature.py", "h5_process.py", "dataset.py", "README.md"]
NAME = "robust-clip"
LINEARS = (0, 4, 8)  # Linear positions inside `layers`; BatchNorms follow each
OUTPUT = 12  # fakedet's mlp_head: the output Linear after 3 blocks of 4 modules
MAX_CAPTION_CHARS = 77


def _rename(key: str) -> str | None:
    if key.startswith("layers."):
        return key[len("layers."):]
    if key.startswith("output_layer."):
        return f"{OUTPUT}." + key[len("output_layer."):]
    return None


def caption_text(caption: str) -> str:
    """The text their pipeline hands CLIP for `caption`: str() of its UTF-8 bytes, cut to 77 characters."""
    return str(caption.encode("utf-8"))[:MAX_CAPTION_CHARS]


def caption_features(clip_model: str, backbone: str, caption: str) -> torch.Tensor:
    """OpenAI-CLIP text features of `caption` as their pipeline computes them, (1, E)."""
    import open_clip

    from fakedet.train.models.clip import build_clip

    clip = build_clip(clip_model, backbone).eval()
    tokens = open_clip.get_tokenizer(clip_model)([caption_text(caption)])
    with torch.no_grad():
        return clip.encode_text(tokens).float()


def fold_caption(state: dict, text: torch.Tensor, image_dim: int, where: str) -> dict:
    """The first Linear of a (image ++ text) head rewritten for images alone, `text` fixed."""
    w, b = state.get("layers.0.weight"), state.get("layers.0.bias")
    if not (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)):
        raise PackageError(where, "no layers.0.weight / layers.0.bias: not the robust-CLIP head (DFADModel)")
    if w.dim() != 2 or w.shape[1] != image_dim + text.shape[1]:
        raise PackageError(where, f"layers.0.weight has shape {tuple(w.shape)}: the head expects "
                                  f"{image_dim} image + {text.shape[1]} caption features = "
                                  f"{image_dim + text.shape[1]} inputs from this backbone")
    w64, b64, t64 = w.double(), b.double(), text[0].double()
    folded = dict(state)
    folded["layers.0.weight"] = w64[:, :image_dim].to(w.dtype).contiguous()
    folded["layers.0.bias"] = (b64 + w64[:, image_dim:] @ t64).to(b.dtype)
    return folded


@register_family(name=NAME, aliases=("robust-dm", "dfad", "santosh2024"),
                 summary="Santosh et al. 2024: OpenAI CLIP ViT-L/14 image (+ fixed caption) features -> 3-block MLP",
                 repository=REPOSITORY, weights="checkpoint_epoch_NNNN.pt", needs_backbone=True,
                 takes_caption=True)
def convert(published: object, request: ImportRequest) -> Imported:
    from fakedet.train.models import create_model

    state, ignored = state_dict_in(published, request.weights, containers=("model", "state_dict"))
    state, stripped = strip_prefix(state)
    clip_model, backbone = backbone_for(request, NAME)
    text = caption_features(clip_model, backbone, request.caption)
    image_dim = int(text.shape[1])  # CLIP's image and text embeddings share one width
    state = fold_caption(state, text, image_dim, request.weights)
    hidden = int(state["layers.0.weight"].shape[0])
    model = create_model("clip-mlp", pretrained=backbone, clip_model=clip_model, use_text=False,
                         hidden=hidden, layers=len(LINEARS), dropout=0.335)
    mapped, notes = map_onto(state, model.head.state_dict(), _rename, request.weights,
                             f"fakedet 'clip-mlp' head ({image_dim} -> 3 x {hidden} -> 1, on {clip_model} features)")
    model.head.load_state_dict(mapped, strict=True)
    return Imported(
        model=model.eval(), arch="clip-mlp",
        model_kwargs={"clip_model": clip_model, "use_text": False, "hidden": hidden, "layers": len(LINEARS),
                      "dropout": 0.335},
        input=clip_contract(clip_model, resize=True).to_dict(), threshold=0.5,
        facts={"repository": REPOSITORY, "sources": SOURCES, "ignored_top_level": ignored, "notes": notes,
               "backbone": backbone_facts(request, clip_model, backbone),
               "caption": {"caption": request.caption, "text_encoded": caption_text(request.caption),
                           "folded": "W_text @ text_features(text_encoded) added to layers.0.bias; image-only head"},
               "key_mapping": "layers.N.* -> head.N.*, output_layer.* -> head.12.*"
                              + ("; 'module.' prefix stripped" if stripped else ""),
               "threshold_convention": "sigmoid(logit) > 0.5"},
    )

"""UniversalFakeDetect (Ojha et al. 2023, "Towards Universal Fake Image Detectors that
Generalize Across Generative Models"): `pretrained_weights/fc_weights.pth`.

Facts, read from github.com/WisconsinAIVision/UniversalFakeDetect:
- The file holds only the linear head: validate.py builds `get_model('CLIP:ViT-L/14')` and
  calls `model.fc.load_state_dict(torch.load(ckpt))`, so its keys are `weight` (1, 768)
  and `bias` (1,). Checked on the file itself (pretrained_weights/fc_weights.pth, 4083
  bytes, read with this importer's weights_only loader): exactly those two float32
  tensors. (A training checkpoint of theirs, networks/base_model.py, nests the whole model,
  CLIP included, under 'model'; its CLIP tensors are not used here and are named as
  leftovers: save its head as `{'weight': ..., 'bias': ...}` to import it.)
- Model (models/__init__.py, models/clip_models.py): `clip.load('ViT-L/14', device="cpu")`
  (OpenAI CLIP: QuickGELU; loaded on the CPU, so in float32), frozen; `fc = nn.Linear(768,
  1)` on `encode_image(x)`: the projected image embedding, not L2-normalised.
- Evaluation (validate.py `RealFakeDataset`): `CenterCrop(224)`, ToTensor, Normalize with
  CLIP mean/std; no resize (CLIP's own preprocess is loaded but not used). torchvision's
  CenterCrop pads smaller images with zeros.
- Threshold: accuracy at `sigmoid(logit) > 0.5` (validate.py also reports an oracle "best
  threshold" per test set, which is not a deployable setting).
"""

from __future__ import annotations

from .clip_common import backbone_facts, backbone_for, clip_contract
from .mapping import map_onto, state_dict_in
from .registry import Imported, ImportRequest, register_family

REPOSITORY = "WisconsinAIVision/UniversalFakeDetect"
SOURCES = ["validate.py", "models/__init__.py", "networks/trainer.py", "networks/base_model.py",
           "models/clip_models.py", "pretrained_weights/fc_weights.pth"]
NAME = "universal-fake-detect"


def _rename(key: str) -> str | None:
    return key[3:] if key.startswith("fc.") else key


@register_family(name=NAME, aliases=("universalfakedetect", "ufd", "ojha2023"),
                 summary="Ojha et al. 2023: frozen OpenAI CLIP ViT-L/14 + Linear(768, 1); centre crop 224, no resize",
                 repository=REPOSITORY, weights="fc_weights.pth", needs_backbone=True)
def convert(published: object, request: ImportRequest) -> Imported:
    from fakedet.train.models import create_model

    state, ignored = state_dict_in(published, request.weights, containers=("model",),
                                   training_extras=("optimizer", "total_steps"))
    clip_model, backbone = backbone_for(request, NAME)
    model = create_model("clip-linear", pretrained=backbone, clip_model=clip_model)
    mapped, notes = map_onto(state, model.head.state_dict(), _rename, request.weights,
                             f"fakedet 'clip-linear' head (Linear({model.feature_dim}, 1) on {clip_model} features)")
    model.head.load_state_dict(mapped, strict=True)
    return Imported(
        model=model.eval(), arch="clip-linear", model_kwargs={"clip_model": clip_model},
        input=clip_contract(clip_model, resize=False).to_dict(), threshold=0.5,
        facts={"repository": REPOSITORY, "sources": SOURCES, "ignored_top_level": ignored, "notes": notes,
               "backbone": backbone_facts(request, clip_model, backbone),
               "key_mapping": "weight/bias (or fc.weight/fc.bias) -> head.weight/head.bias",
               "threshold_convention": "sigmoid(logit) > 0.5"},
    )

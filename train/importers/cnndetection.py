"""CNNDetection (Wang et al. 2020, "CNN-generated images are surprisingly easy to spot...
for now"): `blur_jpg_prob0.5.pth`, `blur_jpg_prob0.1.pth`.

Facts, read from github.com/PeterWang512/CNNDetection:
- Architecture: `resnet50(num_classes=1)` from their `networks/resnet.py`, a copy of
  torchvision's ResNet (keys conv1, bn1, layer1-4 with conv1-3/bn1-3/downsample.0-1, fc;
  conv1 stride 2, max-pool stride 2): `fc = nn.Linear(512 * 4, num_classes)`, one logit
  (demo.py, eval.py, networks/resnet.py).
- Saving: `networks/base_model.py` `save_networks` writes
  `{'model': state_dict, 'optimizer': ..., 'total_steps': ...}`; every loader reads
  `state_dict['model']` (demo.py, demo_dir.py, eval.py). No 'module.' prefix.
- Evaluation (eval.py + data/datasets.py `binary_dataset`): `opt.no_resize = True`, so no
  resize; `transforms.CenterCrop(opt.cropSize)` with cropSize 224 (options/base_options.py);
  ToTensor; Normalize(ImageNet mean/std). torchvision's CenterCrop pads a smaller image with
  zeros (black) before cropping. (demo.py scores the whole image instead; eval.py is the
  protocol of the paper's tables.)
- Threshold: `sigmoid(logit) > 0.5` (demo_dir.py, validate.py accuracy).
- The weights: weights/download_weights.sh fetches blur_jpg_prob0.5.pth and
  blur_jpg_prob0.1.pth (same layout; the paper's two augmentation settings).
"""

from __future__ import annotations

from fakedet.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec, Preprocess

from .mapping import map_onto, state_dict_in, strip_prefix
from .registry import Imported, ImportRequest, register_family

REPOSITORY = "PeterWang512/CNNDetection"
SOURCES = ["networks/resnet.py", "demo.py", "demo_dir.py", "eval.py", "eval_config.py", "data/datasets.py",
           "options/base_options.py", "networks/base_model.py"]
CROP = 224


def input_contract() -> InputSpec:
    return InputSpec(mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_axes=("batch",),
                     preprocess=Preprocess(policy="center-crop", size=(CROP, CROP), small_images="pad",
                                           pad_value=0)).validate()


@register_family(name="cnndetection", aliases=("CNNDetection", "wang2020"),
                 summary="Wang et al. 2020: ImageNet ResNet-50, 1-logit fc; centre crop 224, no resize",
                 repository=REPOSITORY, weights="blur_jpg_prob0.5.pth")
def convert(published: object, request: ImportRequest) -> Imported:
    from fakedet.train.models import create_model

    state, ignored = state_dict_in(published, request.weights, containers=("model",),
                                   training_extras=("optimizer", "total_steps"))
    state, _ = strip_prefix(state)
    model = create_model("resnet50", pretrained="none")
    mapped, notes = map_onto(state, model.state_dict(), lambda k: k, request.weights,
                             "fakedet 'resnet50' (torchvision ResNet-50, fc 2048 -> 1)")
    model.load_state_dict(mapped, strict=True)
    return Imported(
        model=model.eval(), arch="resnet50", model_kwargs={"crop_size": CROP},
        input=input_contract().to_dict(), threshold=0.5,
        facts={"repository": REPOSITORY, "sources": SOURCES, "ignored_top_level": ignored, "notes": notes,
               "key_mapping": "identity (torchvision ResNet-50 names)",
               "threshold_convention": "sigmoid(logit) > 0.5"},
    )

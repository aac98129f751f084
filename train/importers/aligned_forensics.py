"""AlignedForensics (Sundara Rajan et al. 2024/25, "Aligned Datasets Improve Detection of
Latent Diffusion-Generated Images"): the `res50nodown` checkpoints ("Ours", "Ours-Sync",
shader-trained variants). The same format holds GRIP-UNINA's `Corvi2023` res50nodown.

The official repository (anisundar18/AlignedForensics) is not in the code store; the facts
below were read from two public copies of it, Schmudling/AlignedForensics (README.md,
test_code/main.py, test_code/README.md, training_code/networks/__init__.py) and
Gloriel621/AlignedForensics_ (training_code/utils/training.py, training_code/train.py), and
from the pipeline their test code says it uses, grip-unina/ClipBased-SyntheticImageDetection
(networks/resnet_mod.py, networks/__init__.py, utils/processing.py,
weights/Corvi2023/config.yaml):
- Architecture `res50nodown` = `resnet_mod.resnet50(stride0=1, dropout=0.5)`: conv1 7x7
  stride 1 (padding 3), max-pool 3x3 stride 1 (padding 1), torchvision Bottleneck layers and
  key names, global average pool, Dropout(0.5), `fc` = ChannelLinear(2048 -> 1) (a Linear over
  the channel axis; on the pooled map it is a plain Linear; keys fc.weight (1, 2048), fc.bias).
- Saving (training.py `save_networks`): `{'model': state_dict, 'optimizer': ...,
  'total_steps': ...}` as `model_epoch_<epoch>.pth`; train.py keeps the best one as
  `model_epoch_best.pth`. Loading (`load_weights`): `dat['model']`, with the 'module.' prefix
  stripped when present (DataParallel); bare state dicts are accepted too.
- Testing (test_code/main.py + the config.yaml of res50nodown models): `patch_size: null`,
  so no resize and no crop: the whole image; `norm_type: resnet`: ToTensor + ImageNet
  mean/std; images opened with PIL and `.convert('RGB')`.
- Output: one logit (column 0); train.py validates with balanced accuracy at `logit > 0`,
  i.e. P(fake) > 0.5.
- Not representable here: the training options `--use_proj` (fc.fc1/fc.fc2 projection
  head: refused by the key check, its keys named) and `--use_leaky` (LeakyReLU
  activations: not visible in the weights; the published ResNet-50 checkpoints are assumed
  to use ReLU, the default; unconfirmed).
"""

from __future__ import annotations

from fakedet.manifest import IMAGENET_MEAN, IMAGENET_STD, InputSpec, Preprocess

from .mapping import map_onto, state_dict_in, strip_prefix
from .registry import Imported, ImportRequest, register_family

REPOSITORY = "anisundar18/AlignedForensics (read from Schmudling/AlignedForensics, Gloriel621/AlignedForensics_)"
SOURCES = ["Schmudling/AlignedForensics: test_code/main.py, training_code/networks/__init__.py, README.md",
           "Gloriel621/AlignedForensics_: training_code/utils/training.py, training_code/train.py",
           "grip-unina/ClipBased-SyntheticImageDetection: networks/resnet_mod.py, networks/__init__.py, "
           "utils/processing.py, weights/Corvi2023/config.yaml"]
HEAD = {"fc.weight": "fc.1.weight", "fc.bias": "fc.1.bias"}  # their fc -> fakedet's fc = [Dropout, Linear]


def input_contract() -> InputSpec:
    return InputSpec(mean=IMAGENET_MEAN, std=IMAGENET_STD, dynamic_axes=("batch", "height", "width"),
                     preprocess=Preprocess(policy="whole-image", size=None)).validate()


def _rename(key: str) -> str | None:
    if key.startswith("fc.") and key not in HEAD:
        return None  # e.g. a projection head (fc.fc1.*): a leftover, named in the error
    return HEAD.get(key, key)


@register_family(name="aligned-forensics", aliases=("alignedforensics", "res50nodown", "corvi2023"),
                 summary="Sundara Rajan et al.: ResNet-50 without early downsampling; whole image, no resize",
                 repository=REPOSITORY, weights="model_epoch_best.pth (the README's 'Ours', 'Ours-Sync')")
def convert(published: object, request: ImportRequest) -> Imported:
    from fakedet.train.models import create_model

    state, ignored = state_dict_in(published, request.weights, containers=("model", "state_dict", "net"),
                                   training_extras=("optimizer", "total_steps"))
    state, stripped = strip_prefix(state)
    model = create_model("resnet50-nodown", pretrained="none", dropout=0.5)
    mapped, notes = map_onto(state, model.state_dict(), _rename, request.weights,
                             "fakedet 'resnet50-nodown' (stride-1 conv1 and max-pool, Dropout + Linear 2048 -> 1)")
    model.load_state_dict(mapped, strict=True)
    return Imported(
        model=model.eval(), arch="resnet50-nodown", model_kwargs={"dropout": 0.5},
        input=input_contract().to_dict(), threshold=0.5,
        facts={"repository": REPOSITORY, "sources": SOURCES, "ignored_top_level": ignored, "notes": notes,
               "key_mapping": "torchvision ResNet-50 names; fc.weight/fc.bias -> fc.1.weight/fc.1.bias"
                              + ("; 'module.' prefix stripped" if stripped else ""),
               "threshold_convention": "logit > 0 (P(fake) > 0.5)"},
    )

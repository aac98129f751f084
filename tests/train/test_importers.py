"""`fakedet import` for the four published families.

Per family: a state dict with the published key names and shapes (random values) is
saved the way that project saves it, imported, exported with `fakedet export`, and the
package's logits (ONNX Runtime, fakedet's runtime preprocessing) are held to a PyTorch
forward of the same weights on tensors made by the project's own transforms, written out
here from the facts in the family's file. The CLIP families use a tiny open_clip config
(same key names; widths 16/32 instead of ViT-L/14's 768/1536: the real size is too heavy
for a 2-core test run); the ResNet-50 families use the real architecture."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torchvision import models as tvm  # noqa: E402
from torchvision import transforms as T  # noqa: E402

from fakedet.cli import main  # noqa: E402
from torch_helpers import one_thread, register_clip_config, tiny_clip_config  # noqa: F401,E402  (pytest fixture)

IMAGENET = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
CLIP = dict(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
CAPTION = "a photograph of a red bicycle leaning against a brick wall in the late afternoon sun, 35mm"
ATOL = 1e-4


def photo(w: int, h: int, seed: int) -> Image.Image:
    """A smooth gradient with noise: resampling and cropping offsets change its pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), (xx + yy) / max(w + h - 2, 1)], -1) * 200
    arr = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def randomise_bn(module: nn.Module, seed: int) -> nn.Module:
    """Running statistics away from their init, so a wrong mapping of them shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return module


def tame_residuals(model: nn.Module, seed: int) -> nn.Module:
    """Small last-BN scales in each bottleneck (as training leaves them): random ResNet-50
    activations otherwise grow block by block to logits of +-100."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith("bn3"):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.15 + 0.05)
    return model


def package_logits(pkg: Path, images) -> np.ndarray:
    from fakedet.runtime import Detector

    with Detector.open(pkg, backend="ort-cpu", precision="fp32") as det:
        preds = det.predict(images)
    assert all(p.error is None for p in preds), [p.error for p in preds]
    return np.array([p.logit for p in preds], dtype=np.float64)


def run_cli(*args) -> int:
    return main([str(a) for a in args])


# ---- the published files, as each project writes them -------------------------------------

def cnndetection_reference() -> nn.Module:
    # networks/resnet.py is torchvision's ResNet; resnet50(num_classes=1)
    torch.manual_seed(1)
    model = tvm.resnet50(num_classes=1)
    nn.init.normal_(model.fc.weight, 0.0, 0.1)
    return tame_residuals(randomise_bn(model, 1), 1).eval()


def save_cnndetection(model: nn.Module, path: Path) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)  # base_model.save_networks: model, optimizer, total_steps
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "total_steps": 1234}, path)


def cnndetection_transform():
    # eval.py: no_resize; datasets.binary_dataset: CenterCrop(cropSize=224), ToTensor, Normalize(ImageNet)
    return T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize(**IMAGENET)])


def aligned_reference() -> nn.Module:
    # resnet_mod.resnet50(stride0=1, dropout=0.5): conv1 and max-pool stride 1; fc = ChannelLinear(2048, 1)
    torch.manual_seed(2)
    model = tvm.resnet50(num_classes=1)
    model.conv1.stride = (1, 1)
    model.maxpool.stride = 1
    nn.init.normal_(model.fc.weight, 0.0, 0.1)
    return tame_residuals(randomise_bn(model, 2), 2).eval()


def save_aligned(model: nn.Module, path: Path) -> None:
    wrapped = nn.DataParallel(model)  # saved from a DataParallel run: every key starts with 'module.'
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    torch.save({"model": wrapped.state_dict(), "optimizer": opt.state_dict(), "total_steps": 99}, path)


def aligned_transform():
    # test_code/main.py with patch_size null, norm_type resnet: whole image, ToTensor, Normalize(ImageNet)
    return T.Compose([T.ToTensor(), T.Normalize(**IMAGENET)])


class DFADHead(nn.Module):
    """The robust-CLIP head as DFAD_model_base.py lays it out (`layers`, `output_layer`)."""

    def __init__(self, dim: int):
        super().__init__()
        blocks = []
        for _ in range(3):
            blocks += [nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.LeakyReLU(0.01), nn.Dropout(0.335)]
        self.layers = nn.Sequential(*blocks)
        self.output_layer = nn.Linear(dim, 1)

    def forward(self, image_features, text_features):
        return self.output_layer(self.layers(torch.cat((image_features, text_features), dim=-1)))


def clip_transform(size: int, resize: bool):
    if resize:  # OpenAI CLIP's preprocess: Resize(n, bicubic), CenterCrop(n), ToTensor, Normalize
        return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                          T.ToTensor(), T.Normalize(*CLIP.values())])
    # UniversalFakeDetect validate.py: CenterCrop(224), ToTensor, Normalize(CLIP); no resize
    return T.Compose([T.CenterCrop(size), T.ToTensor(), T.Normalize(*CLIP.values())])


# ---- fixtures: one import per family, exported once when a test asks for the package ----------

RESNET_IMAGES = [(300, 260), (180, 200), (257, 231)]  # (w, h): larger than the crop, smaller, odd
NODOWN_IMAGES = [(40, 36), (33, 29)]
CLIP_IMAGES = [(48, 40), (24, 30), (37, 45)]


@pytest.fixture(scope="module")
def quickgelu_clip(tmp_path_factory):
    """A tiny open_clip config with OpenAI's QuickGELU, its random weights as the backbone file."""
    cfg = {**tiny_clip_config(), "quick_gelu": True}
    name = register_clip_config(tmp_path_factory.mktemp("clipcfg"), "fakedet-test-openai-tiny", cfg)
    torch.manual_seed(3)
    clip = open_clip.create_model(name, pretrained=None).eval()
    path = tmp_path_factory.mktemp("backbone") / "clip.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    return name, path, clip, cfg["vision_cfg"]["image_size"]


class Case:
    """One family: the reference forward and transforms (the project's), the images, the
    imported checkpoint, and its package (exported on first use)."""

    def __init__(self, family, root, forward, transform, images, sample_size=64):
        self.family, self.root, self.forward, self.transform, self.images = family, root, forward, transform, images
        self.ck, self._pkg, self.sample_size = root / "ck", None, sample_size

    def import_(self, weights, *extra):
        assert run_cli("import", self.family, weights, "-o", self.ck, *extra) == 0
        return self

    @property
    def pkg(self) -> Path:
        if self._pkg is None:
            pkg = self.root / f"{self.family}.fdet"
            assert run_cli("export", self.ck, "-o", pkg, "--precision", "fp32", "--no-simplify",
                           "--sample-size", self.sample_size) == 0
            self._pkg = pkg
        return self._pkg

    def reference_logits(self) -> np.ndarray:
        with torch.no_grad():
            return np.array([float(self.forward(self.transform(img).unsqueeze(0)).reshape(-1)[0])
                             for img in self.images])


@pytest.fixture(scope="module")
def cnndetection(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnndetection")
    ref = cnndetection_reference()
    save_cnndetection(ref, root / "blur_jpg_prob0.5.pth")
    images = [photo(w, h, i) for i, (w, h) in enumerate(RESNET_IMAGES)]
    return Case("cnndetection", root, ref, cnndetection_transform(), images).import_(root / "blur_jpg_prob0.5.pth")


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligned")
    ref = aligned_reference()
    save_aligned(ref, root / "model_epoch_best.pth")
    images = [photo(w, h, 10 + i) for i, (w, h) in enumerate(NODOWN_IMAGES)]
    case = Case("aligned-forensics", root, ref, aligned_transform(), images, sample_size=32)
    return case.import_(root / "model_epoch_best.pth")


@pytest.fixture(scope="module")
def ufd(tmp_path_factory, quickgelu_clip):
    name, backbone, clip, size = quickgelu_clip
    root = tmp_path_factory.mktemp("ufd")
    torch.manual_seed(4)
    fc = nn.Linear(clip.visual.output_dim, 1)  # ViT-L/14: Linear(768, 1)
    nn.init.normal_(fc.weight, 0.0, 0.3)
    torch.save(fc.state_dict(), root / "fc_weights.pth")  # validate.py: model.fc.load_state_dict(torch.load(ckpt))

    def forward(x):
        return fc(clip.encode_image(x))

    images = [photo(w, h, 20 + i) for i, (w, h) in enumerate(CLIP_IMAGES)]
    case = Case("universal-fake-detect", root, forward, clip_transform(size, resize=False), images)
    return case.import_(root / "fc_weights.pth", "--backbone-weights", backbone, "--clip-model", name)


@pytest.fixture(scope="module")
def robust(tmp_path_factory, quickgelu_clip):
    name, backbone, clip, size = quickgelu_clip
    root = tmp_path_factory.mktemp("robust")
    torch.manual_seed(5)
    head = randomise_bn(DFADHead(2 * clip.visual.output_dim), 5).eval()  # ViT-L/14: 768 + 768 = 1536
    with torch.no_grad():  # a random tiny CLIP's features vary little between images: amplify them
        for bn in (head.layers[1], head.layers[5], head.layers[9]):
            bn.running_var.mul_(0.1)
        nn.init.normal_(head.output_layer.weight, 0.0, 0.3)
    torch.save(nn.DataParallel(head).state_dict(), root / "checkpoint_epoch_0031.pt")  # train.py
    # h5_process.py: str() of the UTF-8 bytes get_data.py stored; clip_feature.py: cut to 77 characters
    tokens = open_clip.tokenize([str(CAPTION.encode("utf-8"))[:77]])

    def forward(x):
        text = clip.encode_text(tokens).float().expand(x.shape[0], -1)
        return head(clip.encode_image(x).float(), text)

    images = [photo(w, h, 30 + i) for i, (w, h) in enumerate(CLIP_IMAGES)]
    case = Case("robust-clip", root, forward, clip_transform(size, resize=True), images)
    return case.import_(root / "checkpoint_epoch_0031.pt", "--backbone-weights", backbone, "--clip-model", name,
                        "--caption", CAPTION)


FAMILIES = ["cnndetection", "aligned", "ufd", "robust"]
# exporting a full-size ResNet-50 and checking its parity takes ~20 s on 2 shared cores:
# their package tests run with -m slow; the default suite checks their imported checkpoint
# (same weights, same contract) and test_export_archs exports both architectures
PACKAGE_CASES = [pytest.param(f, marks=pytest.mark.slow) if f in ("cnndetection", "aligned") else f
                 for f in FAMILIES]


@pytest.mark.parametrize("name", PACKAGE_CASES)
def test_package_scores_equal_pytorch_forward_of_the_published_weights(request, name):
    case = request.getfixturevalue(name)
    want = case.reference_logits()
    got = package_logits(case.pkg, case.images)
    assert np.abs(got - want).max() <= ATOL, (name, got, want)
    assert np.ptp(want) > 1e-3, f"{name}: reference logits hardly differ, the comparison would prove little"


@pytest.mark.parametrize("name", FAMILIES)
def test_imported_checkpoint_forward_equals_pytorch_forward(request, name):
    from fakedet.manifest import InputSpec
    from fakedet.runtime import preprocess_image
    from fakedet.train.checkpoint import load_checkpoint

    case = request.getfixturevalue(name)
    model, cfg = load_checkpoint(case.ck)
    spec = InputSpec.from_dict(cfg["input"])
    with torch.no_grad():
        got = np.array([float(model(torch.from_numpy(preprocess_image(img, spec))[None]).reshape(-1)[0])
                        for img in case.images])
    want = case.reference_logits()
    assert np.abs(got - want).max() <= ATOL, (name, got, want)
    assert np.ptp(want) > 1e-3, f"{name}: reference logits hardly differ, the comparison would prove little"


@pytest.mark.parametrize("name", FAMILIES)
def test_runtime_preprocessing_equals_the_projects_transforms(request, name):
    from fakedet.manifest import InputSpec
    from fakedet.runtime import preprocess_image

    case = request.getfixturevalue(name)
    spec = InputSpec.from_dict(json.loads((case.ck / "config.json").read_text())["input"])
    for img in case.images:
        want = case.transform(img).numpy()
        got = preprocess_image(img, spec)
        assert got.shape == want.shape, (name, img.size)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{name} {img.size}")


def test_checkpoint_and_package_record_the_contract_threshold_and_provenance(cnndetection, robust):
    from fakedet.package import ModelPackage

    cfg = json.loads((cnndetection.ck / "config.json").read_text())
    assert cfg["threshold"] == 0.5 and cfg["imported"]["family"] == "cnndetection"
    assert len(cfg["imported"]["weights_sha256"]) == 64 and cfg["imported"]["sources"]
    assert cfg["input"]["preprocess"]["policy"] == "center-crop" and cfg["input"]["preprocess"]["size"] == [224, 224]
    assert cfg["imported"]["ignored_top_level"] == ["optimizer", "total_steps"]
    cfg = json.loads((robust.ck / "config.json").read_text())
    assert cfg["imported"]["caption"]["caption"] == CAPTION
    assert cfg["imported"]["caption"]["text_encoded"] == "b'" + CAPTION[:75]
    manifest = ModelPackage.open(robust.pkg).manifest
    assert manifest.threshold.value == 0.5 and manifest.input.to_dict() == cfg["input"]
    assert manifest.provenance["training_config"]["imported"]["family"] == "robust-clip"


def test_imported_package_calibrates_and_runs_int8_unchanged(ufd, tmp_path):
    from fakedet.package import ModelPackage
    from fakedet.runtime import Detector

    data = tmp_path / "calib"
    data.mkdir()
    for i in range(8):
        photo(40 + 3 * i, 36 + 2 * i, 100 + i).save(data / f"{i}.png")
    pkg = tmp_path / "ufd.fdet"
    shutil.copytree(ufd.pkg, pkg)
    assert run_cli("calibrate", pkg, "--data", data, "--samples", 8) == 0
    assert ModelPackage.open(pkg).manifest.artifacts_of("onnx-int8-qdq")
    with Detector.open(pkg, backend="ort-cpu", precision="int8") as det:
        preds = det.predict(ufd.images)
    assert all(p.error is None and 0.0 <= p.score <= 1.0 for p in preds)


# ---- refusing what is not plain weights ----------------------------------------------------

class Payload:
    """Unpickling this creates `marker`: an observable side effect."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_reduce_payload_is_refused_without_running(tmp_path, capsys, writer):
    marker, control_marker = tmp_path / "payload-ran", tmp_path / "control-ran"
    evil, control = tmp_path / "blur_jpg_prob0.5.pth", tmp_path / "control.pth"
    for path, m in ((evil, marker), (control, control_marker)):
        obj = {"model": {"fc.weight": torch.zeros(1, 2048)}, "hook": Payload(str(m))}
        if writer == "torch.save":
            torch.save(obj, path)
        else:
            with open(path, "wb") as f:
                pickle.dump(obj, f)
    # the payload is live: an unrestricted load of the twin file runs it (creating its own marker)
    if writer == "torch.save":
        torch.load(control, weights_only=False)
    else:
        with open(control, "rb") as f:
            pickle.load(f)
    assert control_marker.exists()

    rc = run_cli("import", "cnndetection", evil, "-o", tmp_path / "ck")
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert not marker.exists(), "the payload ran"
    assert not (tmp_path / "ck").exists()
    assert len(err.splitlines()) == 1 and str(evil) in err and "refused" in err, err


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_and_non_weight_files_are_refused(tmp_path, capsys):
    scripted = torch.jit.script(nn.Linear(2, 1))
    scripted.save(str(tmp_path / "scripted.pt"))
    (tmp_path / "text.pth").write_text("not a checkpoint")
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"model": {"fc.weight": torch.zeros(1, 2048)}}, tmp_path / "whole.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:300])
    for name, why in (("scripted.pt", "refused: a TorchScript archive"), ("text.pth", "not a PyTorch weights file"),
                      ("empty.pth", "empty file"), ("cut.pth", "truncated or damaged")):
        assert run_cli("import", "cnndetection", tmp_path / name, "-o", tmp_path / "ck") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err and why in err, err


# ---- strict mapping: leftovers, missing tensors, shapes ----------------------------------------

@pytest.fixture(scope="module")
def resnet_state():
    return tvm.resnet50(num_classes=1).state_dict()


def test_leftover_missing_and_misshapen_tensors_are_named(tmp_path, capsys, resnet_state):
    state = dict(resnet_state)
    state["extra_head.weight"] = torch.zeros(3)
    del state["layer4.2.bn3.running_var"]
    state["fc.weight"] = torch.zeros(2, 2048)
    torch.save({"model": state}, tmp_path / "w.pth")
    assert run_cli("import", "cnndetection", tmp_path / "w.pth", "-o", tmp_path / "ck") == 2
    err = capsys.readouterr().err
    assert "extra_head.weight" in err and "layer4.2.bn3.running_var" in err and "fc.weight (2, 2048)" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "ck").exists()


def test_a_projection_head_is_refused_by_name(tmp_path, capsys, resnet_state):
    state = {k: v for k, v in resnet_state.items() if not k.startswith("fc.")}
    state.update({"fc.fc1.weight": torch.zeros(512, 2048), "fc.fc1.bias": torch.zeros(512)})
    torch.save({"model": state}, tmp_path / "proj.pth")
    assert run_cli("import", "aligned-forensics", tmp_path / "proj.pth", "-o", tmp_path / "ck") == 2
    err = capsys.readouterr().err
    assert "fc.fc1.weight" in err and "fc.1.weight" in err


def test_missing_buffers_only_are_kept_and_said(tmp_path, resnet_state):
    from fakedet.train.importers import import_checkpoint

    state = {k: v for k, v in resnet_state.items() if not k.endswith("num_batches_tracked")}
    torch.save({"model": state}, tmp_path / "old.pth")  # files from PyTorch < 0.4.1 lack these buffers
    _, result = import_checkpoint("cnndetection", tmp_path / "old.pth", tmp_path / "ck")
    assert any("num_batches_tracked" in n for n in result.facts["notes"])


def test_help_lists_every_family(capsys):
    with pytest.raises(SystemExit):
        from fakedet.cli import cli

        cli.main(["import", "--help"], prog_name="fakedet")
    out = capsys.readouterr().out
    for name in ("cnndetection", "universal-fake-detect", "aligned-forensics", "robust-clip"):
        assert f"  {name}: " in out and f"fakedet import {name} " in out


def test_wrong_family_file_and_unknown_family(tmp_path, capsys, resnet_state):
    torch.save({"model": resnet_state}, tmp_path / "cnn.pth")
    assert run_cli("import", "no-such-family", tmp_path / "cnn.pth", "-o", tmp_path / "ck") == 2
    assert "known: aligned-forensics, cnndetection, robust-clip, universal-fake-detect" in capsys.readouterr().err
    torch.save({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}, tmp_path / "fc_weights.pth")
    assert run_cli("import", "cnndetection", tmp_path / "fc_weights.pth", "-o", tmp_path / "ck") == 2
    err = capsys.readouterr().err
    assert "weight" in err and "not in the file" in err


# ---- the backbone of head-only families ------------------------------------------------------

def test_options_a_family_does_not_use_are_refused(tmp_path, capsys, resnet_state):
    torch.save({"model": resnet_state}, tmp_path / "cnn.pth")
    assert run_cli("import", "cnndetection", tmp_path / "cnn.pth", "--caption", "x", "-o", tmp_path / "ck") == 2
    assert "--caption" in capsys.readouterr().err
    assert run_cli("import", "aligned-forensics", tmp_path / "cnn.pth", "--backbone-weights", "openai",
                   "-o", tmp_path / "ck") == 2
    assert "does not take --backbone-weights" in capsys.readouterr().err and not (tmp_path / "ck").exists()


def test_head_only_family_without_backbone_says_what_to_give(tmp_path, capsys):
    torch.save({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}, tmp_path / "fc_weights.pth")
    assert run_cli("import", "universal-fake-detect", tmp_path / "fc_weights.pth", "-o", tmp_path / "ck") == 2
    err = capsys.readouterr().err
    assert "--backbone-weights" in err and "ViT-L-14-quickgelu" in err and len(err.strip().splitlines()) == 1
    assert run_cli("import", "universal-fake-detect", tmp_path / "fc_weights.pth", "--backbone-weights",
                   tmp_path / "clip.bin", "-o", tmp_path / "ck") == 2
    assert "not found" in capsys.readouterr().err


def test_open_clip_tag_resolves_only_from_the_local_cache(tmp_path):
    from fakedet.errors import FakedetError
    from fakedet.train.importers.backbone import OPENAI_VIT_L14, resolve_backbone

    cache = tmp_path / "hf"
    with pytest.raises(FakedetError, match="not in this machine's Hugging Face cache.*never downloads"):
        resolve_backbone("openai", OPENAI_VIT_L14, "universal-fake-detect", cache_dir=cache)
    with pytest.raises(FakedetError, match="neither a local .safetensors file nor an open_clip tag"):
        resolve_backbone("no-such-tag", OPENAI_VIT_L14, "universal-fake-detect", cache_dir=cache)
    # a cached copy (the Hugging Face cache layout) is found without any network access
    repo = cache / "models--timm--vit_large_patch14_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"{}")
    found = resolve_backbone("openai", OPENAI_VIT_L14, "universal-fake-detect", cache_dir=cache)
    assert Path(found) == snap / "open_clip_model.safetensors"


def test_caption_is_folded_exactly_for_image_only_use(quickgelu_clip):
    from fakedet.train.importers.robust_clip import fold_caption

    torch.manual_seed(6)
    w, b = torch.randn(8, 6), torch.randn(8)
    text = torch.randn(1, 3)
    folded = fold_caption({"layers.0.weight": w, "layers.0.bias": b}, text, 3, "x.pt")
    img = torch.randn(5, 3)
    full = torch.cat([img, text.expand(5, -1)], 1) @ w.T + b
    torch.testing.assert_close(img @ folded["layers.0.weight"].T + folded["layers.0.bias"], full)

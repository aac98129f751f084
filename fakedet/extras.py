"""Which optional extra brings a missing module, so a command run without it ends in one
line (`pip install 'fakedet[train]'`) instead of a ModuleNotFoundError traceback."""

from __future__ import annotations

# top-level module -> the extra that installs it
MODULE_EXTRA = {
    **dict.fromkeys(("torch", "torchvision", "timm", "open_clip", "diffusers", "safetensors", "tqdm", "yaml",
                     "huggingface_hub"), "train"),
    **dict.fromkeys(("onnx", "onnxscript", "onnxslim", "onnxconverter_common", "regex"), "export"),
    **dict.fromkeys(("tokenizers", "ftfy"), "text"),
    **dict.fromkeys(("starlette", "uvicorn", "prometheus_client", "python_multipart", "multipart"), "serve"),
    "cv2": "watch",
    **dict.fromkeys(("skimage", "sklearn"), "demo"),
    "matplotlib": "train",
    "tensorrt": "trt",
}
# the extra a command needs as a whole (what to install so every module it uses is there)
COMMAND_EXTRA = {"train": "train", "eval": "train", "align": "train", "import": "train", "export": "export",
                 "calibrate": "calibrate", "serve": "serve", "watch": "watch", "demo": "demo", "build": "trt"}
# modules the calibrate extra brings itself
CALIBRATE_MODULES = {"onnx", "tqdm", "matplotlib"}


def extra_for(command: str | None, module: str | None) -> str | None:
    """The extra to install for `command` when `module` is missing, or None when the module
    is no optional dependency (then the error is a bug, and is not dressed up)."""
    top = (module or "").split(".")[0]
    if top not in MODULE_EXTRA:
        return None
    if command == "calibrate" and top in CALIBRATE_MODULES:
        return "calibrate"
    return COMMAND_EXTRA.get(command or "") or MODULE_EXTRA[top]


def missing_extra_message(command: str | None, module: str | None) -> str | None:
    extra = extra_for(command, module)
    if extra is None:
        return None
    top = (module or "").split(".")[0]
    who = f"'fakedet {command}'" if command else "fakedet"
    return f"{who} needs {top}, which is not installed here: pip install 'fakedet[{extra}]'"


def require(command: str, modules: tuple[str, ...]) -> None:
    """Stop `command` before any work when one of `modules` is not installed."""
    import importlib.util

    from .errors import FakedetError

    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise FakedetError(missing_extra_message(command, module) or f"'fakedet {command}' needs {module}")

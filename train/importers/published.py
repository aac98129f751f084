"""Reading a published checkpoint without running anything it carries.

safetensors files are read as they are. PyTorch files are read only with
`torch.load(weights_only=True)`: PyTorch's restricted unpickler, which builds tensors
and plain containers (dict, list, tuple, str, numbers) and refuses every other global
*before* calling it, so a `__reduce__` payload is never executed. Anything it refuses
(a pickled class, a TorchScript archive, a bare pickle of objects) stops the import
with one line naming the file and what it asked for."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

from fakedet.errors import PackageError, first_line

SAFETENSORS = ".safetensors"


def _why(e: BaseException) -> str:
    text = str(e)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed|\n\s*\n|$)", text, re.S)
    if found:
        detail = " ".join(found.group(1).split())
        return f"the pickle holds something other than tensors and plain containers ({detail})"
    if "TorchScript" in text:
        return "a TorchScript archive (code, not weights)"
    return re.split(r"(?<=\.)\s", first_line(e, 1000))[0][:160]


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
PICKLE_PROTO = b"\x80"  # the legacy format: a pickle (protocol 2+) at the start of the file


def read_published(path: str | Path) -> object:
    """The published file's content: a dict of tensors (safetensors) or what the restricted
    unpickler builds (tensors inside dicts/lists). Refuses everything else."""
    path = Path(path)
    if not path.exists():
        raise PackageError(path, "no such file (give the published weights file)")
    if not path.is_file():
        raise PackageError(path, "not a file (give the published weights file)")
    if path.suffix == SAFETENSORS:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise PackageError(path, f"not a readable safetensors file ({e})") from None
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise PackageError(path, "empty file")
    if not (head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_PROTO)):
        raise PackageError(path, "not a PyTorch weights file (neither torch.save's zip format nor a pickle)")
    import torch

    try:
        with warnings.catch_warnings():  # "pickle protocol 4" notes: the refusal below says what matters
            warnings.simplefilter("ignore")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise PackageError(path, f"refused: {_why(e)}; fakedet reads published checkpoints only with "
                                 "torch.load(weights_only=True)") from None
    except RuntimeError as e:
        if "TorchScript" in str(e):
            raise PackageError(path, f"refused: {_why(e)}") from None
        raise PackageError(path, f"not a readable PyTorch weights file, truncated or damaged? ({_why(e)})") from None
    except (EOFError, OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise PackageError(path, f"not a readable PyTorch weights file, truncated or damaged? "
                                 f"({type(e).__name__}: {_why(e)})") from None

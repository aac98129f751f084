"""What the demo's figures depend on besides its code, fixed where it can be and recorded
where it cannot: thread counts, deterministic kernels, package versions, the photographs'
bytes, the CPU (model and INT8 tier).

Threads: torch's default is the machine's core count, and a sum split over two threads is
added in another order than over one, so the trained weights (and every AUC) would move
with the core count. The demo pins one count on every machine: two, the cores of the
machines it is sized for (a one-core machine runs them in turn: slower, the same sums).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from importlib import metadata

THREADS = 2  # torch intra-op threads for every stage: the same sums in the same order on any machine
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# The distributions whose code touches the figures: training and its kernels, image decoding
# and augmentation, the wheels the photographs come from, export, calibration and scoring.
DISTRIBUTIONS = ("fakedet", "torch", "torchvision", "numpy", "pillow", "scipy", "scikit-image", "scikit-learn",
                 "matplotlib", "diffusers", "safetensors", "onnx", "onnxruntime", "onnxscript", "onnx-ir")


def pin_threads(threads: int = THREADS) -> None:
    """One thread count for torch and the BLAS/OpenMP pools it and numpy use. The environment
    variables reach libraries loaded after this call (and the pools read them on start)."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only settable before the first inter-op work; intra-op is what sums
        pass
    # CPU kernels are deterministic for a fixed thread count; this refuses (warns on) any
    # op that is not, should a later change add one
    torch.use_deterministic_algorithms(True, warn_only=True)


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in DISTRIBUTIONS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def file_digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]


def record(seed: int, photos: list) -> dict:
    """Everything the figures depend on besides the code: seeds, threads, kernels, versions,
    the photographs' bytes, the CPU. Two runs whose records match print the same figures."""
    import torch

    from fakedet.runtime.cpu_tier import cpu_record

    cpu = cpu_record()
    return {
        "seeds": {"training": seed, "crops": {"train": 0, "heldout": 1}, "generated": 0},
        "threads": {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads(),
                    **{name: os.environ.get(name) for name in THREAD_ENV}, "cpu_count": os.cpu_count()},
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cpu": {"model": cpu["model"], "vendor": cpu["vendor"], "arch": cpu["arch"], "int8_tier": cpu["tier"],
                "int8_features": cpu["features"], "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "photos": {p.name: file_digest(p.path) for p in photos},
        "argv": sys.argv[1:],
    }

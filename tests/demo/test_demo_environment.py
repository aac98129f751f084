"""What the demo's figures depend on: the lock `make venv` installs with, the thread pin, and
the record in summary.json."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
LOCK = ROOT / "constraints" / "demo.txt"


def _pins() -> dict[str, str]:
    out = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            out[req.name.lower().replace("_", "-")] = spec.version
    return out


def test_lock_pins_every_distribution_the_figures_depend_on():
    from fakedet.demo.environment import DISTRIBUTIONS

    pins = _pins()
    missing = [d for d in DISTRIBUTIONS if d != "fakedet" and d not in pins]
    assert not missing, f"pin {missing} in constraints/demo.txt"


def test_lock_lies_inside_pyproject_ranges():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra
             if not r.startswith("fakedet")]
    pins = _pins()
    outside = [f"{r.name} {pins[n]} not in {r.specifier}" for r in reqs
               if (n := r.name.lower().replace("_", "-")) in pins and Version(pins[n]) not in r.specifier]
    assert not outside


def test_make_venv_installs_with_the_lock():
    make = (ROOT / "Makefile").read_text()
    lock = re.search(r"^LOCK\s*:=\s*(.+)$", make, re.M).group(1)
    assert "-c constraints/demo.txt" in lock and "-c constraints/test.txt" in lock
    recipe = make.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "constraints/demo.txt" in recipe.splitlines()[0]  # a changed lock rebuilds the venv
    assert "pip install -q $(LOCK) -e '.[dev]'" in recipe


@pytest.mark.timeout(120)
def test_pin_threads_and_record(tmp_path):
    # a fresh interpreter: the pin is process-wide and must not leak into other tests
    code = """
import json, torch
from fakedet.demo.environment import pin_threads, record
from fakedet.demo.photos import photos
torch.set_num_threads(3)
pin_threads()
print(json.dumps(record(7, photos("heldout"))))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout.splitlines()[-1])
    assert rec["threads"]["torch_intra_op"] == 2 and rec["threads"]["OMP_NUM_THREADS"] == "2"
    assert rec["deterministic_algorithms"] is True
    assert rec["seeds"]["training"] == 7
    import torch

    assert rec["packages"]["torch"] == torch.__version__.split("+")[0]
    assert set(rec["photos"]) == {"chelsea", "flower", "grace_hopper", "rocket"}
    from fakedet.demo.photos import photos

    flower = next(p for p in photos("heldout") if p.name == "flower")
    assert rec["photos"]["flower"] == hashlib.sha256(flower.path.read_bytes()).hexdigest()[:16]
    assert rec["cpu"]["int8_tier"] and rec["cpu"]["model"]

"""Every sub-package of the stage folders ships in the wheel: pyproject.toml lists each one
explicitly (the stage folders are mapped with package-dir), so a new folder must be added."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = {"fakedet": "fakedet", "runtime": "fakedet.runtime", "train": "fakedet.train",
          "export": "fakedet.export", "calibration": "fakedet.calibration"}


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in STAGES.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join([name, *rel]))
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == set(), f"listed but not a package folder: {sorted(listed - found)}"

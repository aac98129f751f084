"""Every sub-package of the stage folders ships in the wheel: pyproject.toml lists each one
explicitly (the stage folders are mapped with package-dir), so a new folder must be added;
and everything it lists (packages and data-only folders) exists."""

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _setuptools() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder(name: str, package_dir: dict) -> Path:
    """Where package `name` lives, through the longest package-dir prefix that maps it."""
    prefix = max((p for p in package_dir if name == p or name.startswith(p + ".")), key=len)
    rest = name[len(prefix):].lstrip(".")
    return REPO / package_dir[prefix] / Path(*rest.split(".")) if rest else REPO / package_dir[prefix]


def test_every_subpackage_is_listed_and_every_listed_folder_exists():
    cfg = _setuptools()
    listed, package_dir = set(cfg["packages"]), cfg["package-dir"]
    found = set()
    for top in {p for p in package_dir if p.count(".") <= 1}:
        root = REPO / package_dir[top]
        for init in root.rglob("__init__.py"):
            found.add(".".join([top, *init.parent.relative_to(root).parts]))
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    for name in listed:
        assert _folder(name, package_dir).is_dir(), f"{name} is listed in pyproject.toml but has no folder"

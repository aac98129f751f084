"""The dependency direction of DESIGN.md, held by reading the source with `ast`.

    runtime      -> fakedet (the foundation)
    train        -> runtime, fakedet
    calibration  -> runtime, fakedet
    export       -> train, calibration, runtime, fakedet
    demo         -> every stage (the whole pipeline on real photographs); nothing imports it
    fakedet      -> nothing above it; only fakedet/cli.py assembles the stages' commands

and no stage imports another stage's CLI module. Every import counts: module level,
inside functions, relative, and module paths written as strings (import_module,
"module:attr" registry entries).

No import cycles either, between any two of the project's modules, counting imports
inside functions too (a lazy import is still a dependency: it only hides the cycle until
the function runs). An edge goes to the module an import loads: `from pkg import sub` to
the submodule, `from pkg import name` to the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE_DIRS = {"fakedet": "fakedet", "runtime": "fakedet.runtime", "train": "fakedet.train",
              "export": "fakedet.export", "calibration": "fakedet.calibration", "demo": "fakedet.demo"}
ALLOWED = {
    "fakedet": {"fakedet"},
    "runtime": {"runtime", "fakedet"},
    "train": {"train", "runtime", "fakedet"},
    "calibration": {"calibration", "runtime", "fakedet"},
    "export": {"export", "train", "calibration", "runtime", "fakedet"},
    "demo": {"demo", "export", "train", "calibration", "runtime", "fakedet"},
}
ASSEMBLER = "fakedet.cli"  # the one module allowed to name every stage (lazily, by string)
MODULE_STRING = re.compile(r"^fakedet(\.[a-z_][a-z0-9_]*)+(:[A-Za-z_][A-Za-z0-9_]*)?$")


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ALLOWED and parts[1] != "fakedet":
        return parts[1]
    return "fakedet"


def is_cli(module: str) -> bool:
    last = module.split(".")[-1]
    return last == "cli" or last.endswith("_cli")


def module_name(path: Path, root: Path = REPO) -> str:
    rel = path.relative_to(root)
    pkg = STAGE_DIRS[rel.parts[0]]
    rest = [p for p in rel.with_suffix("").parts[1:] if p != "__init__"]
    return ".".join([pkg, *rest])


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) for every import and module-path string in `source`."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    docs = _docstring_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from . import x` / `from fakedet.runtime import cli` import submodules too
            out.append((node.lineno, target))
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if MODULE_STRING.match(node.value):
                out.append((node.lineno, node.value.split(":")[0]))
    return [(line, m) for line, m in out if m == "fakedet" or m.startswith("fakedet.")]


def violations(source: str, module: str, is_package: bool = False, known: set[str] | None = None) -> list[str]:
    """What in `source` (the module `module`) goes against the dependency direction.
    `known`: the project's modules, to tell `from pkg import submodule` from `from pkg import name`."""
    if module == ASSEMBLER:
        return []
    mine = stage_of(module)
    found = []
    for line, target in imported_modules(source, module, is_package):
        if known is not None and target not in known and target.rpartition(".")[0] in known:
            target = target.rpartition(".")[0]  # `from X import name`: the edge is to X
        theirs = stage_of(target)
        if theirs not in ALLOWED[mine]:
            found.append(f"{module}:{line} imports {target} ({mine} -> {theirs} runs against the direction)")
        # the demo runs `fakedet` commands through the assembler, as a user would
        elif is_cli(target) and theirs != mine and not (mine == "demo" and target == ASSEMBLER):
            found.append(f"{module}:{line} imports {target} (another stage's CLI module)")
    return found


def _sources(root: Path = REPO) -> list[Path]:
    return sorted(p for d in STAGE_DIRS for p in (root / d).rglob("*.py"))


def import_edges(source: str, module: str, is_package: bool, known: set[str]) -> dict[str, int]:
    """{module imported: line} for the project's modules `source` imports, anywhere in it."""
    package = module if is_package else module.rpartition(".")[0]
    out: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                targets += [next((".".join(parts[:k]) for k in range(len(parts), 0, -1)
                                  if ".".join(parts[:k]) in known), "")]  # fmt: skip
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                base = ".".join(up[: len(up) - (node.level - 1)] + ([node.module] if node.module else []))
            targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            if t in known and t != module:
                out.setdefault(t, node.lineno)
    return out


def import_cycles(root: Path = REPO) -> list[str]:
    """Each strongly connected group of modules in the import graph under `root`, as one
    cycle through it written `a:line -> b:line -> ... -> a`."""
    files = _sources(root)
    known = {module_name(p, root) for p in files}
    graph = {module_name(p, root): import_edges(p.read_text(), module_name(p, root), p.name == "__init__.py", known)
             for p in files}  # fmt: skip
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for group in groups:
        start = min(group)
        path, seen = [start], {start}
        while True:  # walk inside the group until a module repeats: one concrete cycle
            here = path[-1]
            nxt = min(w for w in graph[here] if w in group)
            path.append(nxt)
            if nxt in seen:
                path = path[path.index(nxt):]
                break
            seen.add(nxt)
        out.append(" -> ".join(f"{a}:{graph[a][b]}" for a, b in zip(path, path[1:])) + f" -> {path[-1]}")
    return out


def test_every_import_follows_the_dependency_direction():
    files = _sources()
    assert len(files) > 50, "the stage folders were not found"
    known = {module_name(p) for p in files}
    problems = []
    for path in files:
        problems += violations(path.read_text(), module_name(path), path.name == "__init__.py", known)
    assert not problems, "\n".join(problems)


def test_no_import_cycles_even_through_imports_inside_functions():
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_a_planted_cycle_fails_the_check(tmp_path):
    """Negative control: two runtime modules importing each other, one of them inside a
    function, in a throwaway tree; and `from . import sub` (an edge to the submodule, not
    to the package) is not mistaken for one."""
    pkg = tmp_path / "runtime"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .alpha import run\n")
    (pkg / "alpha.py").write_text("from . import beta\n\ndef run():\n    return beta.go()\n")
    (pkg / "beta.py").write_text("def go():\n    from fakedet.runtime.alpha import run\n    return run\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("from .. import beta\n")
    cycles = import_cycles(tmp_path)
    assert cycles == ["fakedet.runtime.alpha:1 -> fakedet.runtime.beta:2 -> fakedet.runtime.alpha"], cycles
    (pkg / "beta.py").write_text("def go():\n    return 1\n")  # the lazy import removed: no cycle left
    assert import_cycles(tmp_path) == []


@pytest.mark.parametrize("module,source,expected", [
    ("fakedet.runtime.x", "def f():\n    from fakedet.train import trainer\n", "runtime -> train"),
    ("fakedet.runtime.x", "import importlib\nimportlib.import_module('fakedet.export.cli')\n", "runtime -> export"),
    ("fakedet.runtime.x", "REG = {'torch': 'fakedet.train.torch_backend:TorchBackend'}\n", "runtime -> train"),
    ("fakedet.calibration.x", "from ..export import fp16\n", "calibration -> export"),
    ("fakedet.calibration.x", "from fakedet.train.models import create_model\n", "calibration -> train"),
    ("fakedet.manifest", "from .runtime import detector\n", "fakedet -> runtime"),
    ("fakedet.export.x", "from fakedet.train.cli import train\n", "another stage's CLI module"),
    ("fakedet.export.x", "from fakedet.demo import main\n", "export -> demo"),
])
def test_the_check_catches_each_kind_of_wrong_edge(module, source, expected):
    found = violations(source, module)
    assert found and expected in found[0], found


@pytest.mark.parametrize("module,source", [
    ("fakedet.export.x", "from fakedet.train.models import create_model\nfrom ..calibration import qdq\n"),
    ("fakedet.runtime.x", '"""Not an edge: fakedet.train.trainer in a docstring."""\nfrom fakedet.errors import FakedetError\n'),
    ("fakedet.train.cli", "from .align_cli import align\nfrom fakedet.runtime.imageio import load_image\n"),
    ("fakedet.cli", "COMMANDS = {'train': ('fakedet.train.cli', 'train')}\n"),
    ("fakedet.demo.stages", "def run():\n    from fakedet.cli import main\n"),
])
def test_allowed_edges_pass(module, source):
    assert violations(source, module) == []

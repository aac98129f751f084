"""fakedet's TensorRT calls, checked against the API of real TensorRT releases.

TensorRT cannot run here, but the names of its Python API can be read from NVIDIA's
bindings wheels (scripts/trt_api_surface.py recorded them in tests/data/trt_api:
8.6.1, 10.0.1, 10.16.1, 11.4.0 from the bindings, 10.13 per class from the type stubs).
Every attribute fakedet's TensorRT code touches on a TensorRT object is found with
`ast`, together with the branch conditions it sits under (tensor-name API or legacy
bindings, the calibration-cache path, `hasattr` guards). For each release, each name on
a path that can run with that release must exist in it. This catches a misspelled
method, a call removed in a newer release (bindings API in 10, calibrators in 11), or
a builder flag the recipe asks for that a release lacks. It does not run TensorRT:
argument types and behaviour are left to `pytest -m gpu`.
"""

from __future__ import annotations

import ast
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakedet.export.tensorrt_rules import PRECISIONS, BuildOptionError, TrtVersion, choose_recipe
from fakedet.runtime.tensorrt_support import io_api

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data" / "trt_api"
TRT_SOURCES = ("export/tensorrt_build.py", "runtime/backends/tensorrt_backend.py", "runtime/tensorrt_support.py")

MODULE = "<module>"
# The TensorRT class each variable name of fakedet's TensorRT code holds.
VARIABLES = {
    "trt": MODULE, "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
    "config": "IBuilderConfig", "profile": "IOptimizationProfile", "cache": "ITimingCache", "runtime": "Runtime",
    "engine": "ICudaEngine", "ctx": "IExecutionContext", "context": "IExecutionContext", "serialized": "IHostMemory",
}
# The class a method's result is, where fakedet calls a method on it directly.
RETURNS = {"get_timing_cache": "ITimingCache", "create_timing_cache": "ITimingCache"}
ALL_KINDS = {"onnx-fp32", "onnx-fp16", "onnx-int8-qdq", "trt-calibration-cache"}


@dataclass(frozen=True)
class Use:
    owner: str  # MODULE or a TensorRT class name
    name: str
    gates: tuple  # (("tensor_api", bool) | ("calibration_cache", True) | ("has", name, bool), ...)
    where: str


# ---- finding the uses ---------------------------------------------------------
def _owner(node: ast.expr) -> str | None:
    """The TensorRT class (or MODULE) an expression evaluates to, when fakedet's naming tells."""
    if isinstance(node, ast.Name):
        return VARIABLES.get(node.id)
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "slot"):
            return VARIABLES.get(node.attr)  # self.trt, slot.engine, slot.context
        if _owner(node.value) == MODULE:
            return node.attr  # trt.BuilderFlag -> class BuilderFlag
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        inner = _owner(node.func.value)
        if inner == MODULE:
            return node.func.attr  # trt.Runtime(...) -> Runtime
        if inner is not None:
            return RETURNS.get(node.func.attr)
    return None


def _gate(test: ast.expr) -> tuple | None:
    if isinstance(test, ast.Attribute) and test.attr == "tensor_api":
        return ("tensor_api",)
    if isinstance(test, ast.Compare) and any(  # the kind spelt out, or the artifact-kind table's name for it
        (isinstance(c, ast.Constant) and c.value == "trt-calibration-cache")
        or (isinstance(c, ast.Name) and c.id == "TRT_CALIBRATION_CACHE") for c in test.comparators
    ):
        return ("calibration_cache",)
    if (isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and test.func.id == "hasattr"
            and len(test.args) == 2 and isinstance(test.args[1], ast.Constant)):
        return ("has", test.args[1].value)
    return None


def find_uses(source: str, filename: str = "<source>") -> list[Use]:
    uses: list[Use] = []

    def visit_block(stmts: list, gates: tuple) -> None:
        for stmt in stmts:
            visit(stmt, gates)
            # `if self.tensor_api: ...; return` makes the statements after it the other branch
            g = _gate(stmt.test) if isinstance(stmt, ast.If) else None
            if g and g[0] != "calibration_cache" and not stmt.orelse and stmt.body \
                    and isinstance(stmt.body[-1], (ast.Return, ast.Raise)):
                gates = gates + ((*g, False),)

    def visit(node: ast.AST, gates: tuple) -> None:
        if isinstance(node, ast.FunctionDef) and node.name == "cache_only_calibrator":
            gates = gates + (("calibration_cache", True),)
        if isinstance(node, ast.ClassDef):  # subclasses of a TensorRT class override its methods
            for base in node.bases:
                cls = base.attr if isinstance(base, ast.Attribute) and _owner(base.value) == MODULE else None
                if cls:
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                            uses.append(Use(cls, item.name, gates, f"{filename}:{item.lineno}"))
        if isinstance(node, ast.If):
            g = _gate(node.test)
            visit(node.test, gates)
            visit_block(node.body, gates + ((*g, True),) if g else gates)
            # an `else` of the calibration-cache branch is simply the other recipes: no gate
            visit_block(node.orelse, gates + ((*g, False),) if g and g[0] != "calibration_cache" else gates)
            return
        if isinstance(node, ast.Attribute) and not node.attr.startswith("__"):
            owner = _owner(node.value)
            if owner is not None:
                uses.append(Use(owner, node.attr, gates, f"{filename}:{node.lineno}"))
        for name, value in ast.iter_fields(node):
            if isinstance(value, list) and value and all(isinstance(v, ast.stmt) for v in value):
                visit_block(value, gates)
            elif isinstance(value, list):
                for v in value:
                    if isinstance(v, ast.AST):
                        visit(v, gates)
            elif isinstance(value, ast.AST):
                visit(value, gates)

    visit(ast.parse(source), ())
    return uses


@dataclass(frozen=True)
class Call:
    owner: str  # the TensorRT class whose method (or constructor: "__init__") is called
    method: str
    positional: int
    keywords: tuple
    where: str


def find_calls(source: str, filename: str = "<source>") -> list[Call]:
    """Calls of TensorRT methods and constructors, and the overrides of a TensorRT base
    class's methods (called by TensorRT with the base signature), with their arities."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = _owner(node.func.value)
            if owner is None:
                continue
            n = len(node.args)
            kws = tuple(k.arg for k in node.keywords if k.arg)
            if owner == MODULE:  # trt.Builder(logger): the class's constructor
                calls.append(Call(node.func.attr, "__init__", n, kws, f"{filename}:{node.lineno}"))
            else:
                calls.append(Call(owner, node.func.attr, n, kws, f"{filename}:{node.lineno}"))
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and _owner(base.value) == MODULE:
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                            n = len(item.args.args) - 1  # without self
                            calls.append(Call(base.attr, item.name, n, (), f"{filename}:{item.lineno} (override)"))
    return calls


def accepts(signature: list[str], positional: int, keywords: tuple) -> bool:
    """Whether a stub signature (param specs: 'a', 'b=' optional, '*', '**') takes the call."""
    names = [p.rstrip("=") for p in signature if p not in ("*", "**")]
    if positional > len(names) and "*" not in signature:
        return False
    bound = set(names[:positional])
    if any(k not in names and "**" not in signature for k in keywords) or bound & set(keywords):
        return False
    required = {p for p in signature if p not in ("*", "**") and not p.endswith("=")}
    return required <= bound | set(keywords)


def arity_problems(calls: list[Call], signatures: dict) -> list[str]:
    out = []
    for c in calls:
        overloads = signatures.get(c.owner, {}).get(c.method)
        if overloads is None:
            continue  # existence is the other tests' business
        if not any(accepts(sig, c.positional, c.keywords) for sig in overloads):
            out.append(f"{c.where}: {c.owner}.{c.method} with {c.positional} positional {list(c.keywords)}; "
                       f"takes {overloads}")
    return sorted(set(out))


# ---- the releases -------------------------------------------------------------
class Release:
    def __init__(self, record: dict):
        self.version = TrtVersion.parse(record["tensorrt"])
        self.label = record["tensorrt"] + (" (stubs)" if record["kind"] == "stubs" else "")
        self.classes = {k: set(v) for k, v in record.get("classes", {}).items()}
        self.module = set(record.get("module", ()))
        self.signatures = record.get("signatures", {})
        self.names = set(record.get("names", ()))
        if record["kind"] == "stubs":
            self.names = self.module.union(*self.classes.values())

    @property
    def per_class(self) -> bool:
        return bool(self.classes)

    def has(self, owner: str, name: str) -> bool:
        if self.per_class:
            return name in (self.module if owner == MODULE else self.classes.get(owner, set()))
        # Linkers merge a string into the tail of a longer one, so a short name may only
        # survive as a suffix: absence of both is what proves a name missing.
        return name in self.names or any(n.endswith(name) for n in self.names)

    def has_class(self, owner: str) -> bool:
        return owner == MODULE or (owner in self.classes if self.per_class else self.has(MODULE, owner))

    def gate_open(self, gate: tuple) -> bool:
        kind = gate[0]
        if kind == "tensor_api":
            has_tensor = "num_io_tensors" in self.names
            apis = {io_api(str(self.version), has_tensor)}
            if self.version.major < 10:
                apis.add("bindings")  # 8.x also runs the legacy path (the api option, JetPack 5's 8.5)
            return ("tensor" if gate[1] else "bindings") in apis
        if kind == "calibration_cache":
            return any(_recipe_uses_cache(self.version, kinds) for kinds in _kind_sets())
        if kind == "has":
            return (gate[1] in self.names) == gate[2]
        raise AssertionError(gate)

    def missing(self, uses: list[Use]) -> list[str]:
        out = []
        for u in uses:
            if all(self.gate_open(g) for g in u.gates) and not (self.has_class(u.owner) and self.has(u.owner, u.name)):
                out.append(f"{u.where}: {u.owner}.{u.name}")
        return sorted(set(out))


def _kind_sets() -> list[set[str]]:
    return [ALL_KINDS, {"onnx-fp32", "trt-calibration-cache"}, {"onnx-fp32", "onnx-int8-qdq"}, {"onnx-fp16"}, {"onnx-fp32"}]


def _recipe_uses_cache(version: TrtVersion, kinds: set[str]) -> bool:
    try:
        return choose_recipe(version, "int8", kinds).calibration == "trt-calibration-cache"
    except BuildOptionError:
        return False


def _load_releases() -> list[Release]:
    files = sorted(DATA.glob("*.json.gz"))
    return [Release(json.loads(gzip.decompress(f.read_bytes()))) for f in files]


RELEASES = _load_releases()


@pytest.fixture(scope="module")
def fakedet_uses() -> list[Use]:
    uses = []
    for rel in TRT_SOURCES:
        uses += find_uses((ROOT / rel).read_text(), rel)
    return uses


def test_the_recorded_releases_span_8_6_to_11():
    majors = {r.version.major for r in RELEASES}
    assert {8, 10, 11} <= majors
    assert any(r.per_class for r in RELEASES), "the per-class (stubs) record is missing"


def test_the_finder_sees_fakedets_tensorrt_calls(fakedet_uses):
    names = {(u.owner, u.name) for u in fakedet_uses}
    assert len(names) >= 50, sorted(names)
    for expected in [("IExecutionContext", "execute_async_v3"), ("IExecutionContext", "execute_async_v2"),
                     ("IBuilderConfig", "set_memory_pool_limit"), ("Builder", "build_serialized_network"),
                     ("BuilderFlag", "GPU_FALLBACK"), ("ICudaEngine", "get_tensor_profile_shape"),
                     ("IInt8EntropyCalibrator2", "read_calibration_cache"), ("ITimingCache", "serialize")]:
        assert expected in names, expected
    v2 = [u for u in fakedet_uses if u.name == "execute_async_v2"]
    assert v2 and all(("tensor_api", False) in u.gates for u in v2)
    calib = [u for u in fakedet_uses if u.name == "int8_calibrator"]
    assert calib and all(("calibration_cache", True) in u.gates for u in calib)


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.label)
def test_every_call_fakedet_makes_exists_in_the_release(release, fakedet_uses):
    assert release.missing(fakedet_uses) == []


@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r.label)
def test_every_flag_a_build_recipe_asks_for_exists_in_the_release(release):
    checked = 0
    for precision in PRECISIONS:
        for kinds in _kind_sets():
            try:
                recipe = choose_recipe(release.version, precision, kinds)
            except BuildOptionError:
                continue
            for flag in recipe.network_flags:
                assert release.has("NetworkDefinitionCreationFlag", flag), (precision, sorted(kinds), flag)
            for flag in recipe.builder_flags:
                assert release.has("BuilderFlag", flag), (precision, sorted(kinds), flag)
            checked += 1
    assert checked >= 8


# ---- the check itself can fail ------------------------------------------------
def _release(label: str) -> Release:
    return next(r for r in RELEASES if r.label.startswith(label))


def test_a_misspelled_call_is_reported_everywhere():
    uses = find_uses("def run(ctx, h):\n    ctx.execute_async_v4(h)\n")
    for r in RELEASES:
        assert r.missing(uses) == ["<source>:2: IExecutionContext.execute_async_v4"], r.label


def test_an_ungated_legacy_call_fails_on_10_and_11_only():
    uses = find_uses("def shape(engine):\n    return engine.get_binding_shape(0)\n")
    assert _release("8.6.1").missing(uses) == []
    assert _release("10.0.1").missing(uses) and _release("11.4").missing(uses)
    gated = find_uses("def shape(self, engine):\n    if self.tensor_api:\n        return 1\n"
                      "    return engine.get_binding_shape(0)\n")
    assert all(r.missing(gated) == [] for r in RELEASES)


def test_a_calibrator_outside_the_cache_path_fails_on_11():
    uses = find_uses("def build(trt, config, c):\n    config.int8_calibrator = c\n")
    assert _release("11.4").missing(uses) == ["<source>:2: IBuilderConfig.int8_calibrator"]
    assert _release("10.16").missing(uses) == []


def test_a_method_on_the_wrong_class_is_caught_per_class():
    uses = find_uses("def f(builder):\n    builder.set_memory_pool_limit(0, 1)\n")  # an IBuilderConfig method
    stubs = next(r for r in RELEASES if r.per_class)
    assert stubs.missing(uses) == ["<source>:2: Builder.set_memory_pool_limit"]


def test_a_recipe_flag_a_release_lacks_is_caught():
    assert not _release("11.4").has("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    assert _release("8.6.1").has("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    assert not _release("8.6.1").has("NetworkDefinitionCreationFlag", "STRONGLY_TYPED")


# ---- argument counts, from the 10.13 stubs' signatures ---------------------------
def _stubs() -> Release:
    return next(r for r in RELEASES if r.per_class)


def test_every_call_passes_arguments_the_signature_takes():
    calls = []
    for rel in TRT_SOURCES:
        calls += find_calls((ROOT / rel).read_text(), rel)
    stubs = _stubs()
    checked = [c for c in calls if c.method in stubs.signatures.get(c.owner, {})]
    assert len(checked) >= 25, f"only {len(checked)} calls were checked"
    assert arity_problems(calls, stubs.signatures) == []


def test_a_wrong_argument_count_or_keyword_is_caught():
    bad = find_calls("def f(trt, config, profile, ctx, cache, logger):\n"
                     "    config.set_memory_pool_limit(1)\n"  # one argument short
                     "    profile.set_shape('x', 1, 2)\n"  # max missing
                     "    config.set_timing_cache(cache, ignore_mismatches=False)\n"  # misspelled keyword
                     "    ctx.execute_async_v3(0, 1)\n"  # one too many
                     "    trt.OnnxParser(logger)\n"  # needs network and logger
                     "class C(trt.IInt8EntropyCalibrator2):\n"
                     "    def get_batch(self):\n"  # TensorRT calls get_batch(names)
                     "        return None\n")
    assert len(arity_problems(bad, _stubs().signatures)) == 6
    good = find_calls("def f(config, cache):\n    config.set_timing_cache(cache, ignore_mismatch=False)\n")
    assert arity_problems(good, _stubs().signatures) == []

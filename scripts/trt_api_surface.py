"""Record the Python API surface of real TensorRT releases, for tests that check
fakedet's TensorRT calls without a GPU (tests/runtime/test_trt_api_surface.py).

TensorRT's Python bindings wheels (tensorrt-bindings, tensorrt-cu12-bindings) are real
packages on PyPI, but their module cannot be imported without libnvinfer. The names of
the API are still in the wheel: pybind11 keeps every class, method, property and enum
member name as a string in tensorrt.so, and the pure-Python helpers (nptype, Logger
severities) are in __init__.py. This script reads a wheel without importing it and
writes the identifiers it holds. Absence is what the tests rely on: a name missing from
a release's strings is not in that release's API.

A type-stubs wheel (tensorrt-stubs, generated from the bindings) is read too: it gives
each class's own members, so for its release the check is per class.

    pip download --no-deps -d wheels tensorrt-bindings==8.6.1 tensorrt-cu12-bindings==10.0.1 \\
        tensorrt-cu12-bindings==10.16.1.11 tensorrt-cu12-bindings==11.4.0.106 tensorrt-stubs==10.13.0.35.1
    python scripts/trt_api_surface.py wheels/*.whl -o tests/data/trt_api
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import zipfile
from pathlib import Path

from fakedet.atomic import sha256_file

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{2,}")


def binary_identifiers(blob: bytes) -> set[str]:
    """Identifiers inside the printable runs of a shared object (mangled C++ dropped)."""
    names: set[str] = set()
    for run in PRINTABLE_RUN.findall(blob):
        for tok in IDENT.findall(run.decode("ascii")):
            if len(tok) >= 2 and not tok.startswith("_Z"):
                names.add(tok)
    return names


def _split_params(text: str) -> list[str]:
    """Top-level comma split of a parameter list (commas inside [], () stay)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "[(" and 1 or (-1 if ch in "])" else 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in out + [cur] if p.strip()]


def _until_close(text: str) -> str | None:
    """The text before the ')' that closes an already opened '(' ; None if not there yet."""
    depth = 1
    for i, ch in enumerate(text):
        depth += 1 if ch in "([" else -1 if ch in ")]" else 0
        if depth == 0:
            return text[:i]
    return None


def param_spec(param: str) -> str | None:
    """'name: T' -> 'name'; 'name: T = x' -> 'name='; '*args' -> '*'; '**kw' -> '**';
    'self' and the bare '*' / '/' markers -> None."""
    name = param.split(":", 1)[0].split("=", 1)[0].strip()
    if name in ("self", "*", "/"):
        return None
    if name.startswith("**"):
        return "**"
    if name.startswith("*"):
        return "*"
    return name + ("=" if "=" in param else "")


def stub_classes(source: str) -> tuple[dict[str, list[str]], list[str], dict[str, dict[str, list[list[str]]]]]:
    """({class: members}, module-level names, {class: {method: [signature, ...]}}) of a
    .pyi file; a signature is a list of param_spec()s, one per overload. Read line by
    line, not with `ast`: generated stubs are not always valid Python (tensorrt-stubs
    10.13 has a non-default argument after default ones)."""
    classes: dict[str, set[str]] = {}
    signatures: dict[str, dict[str, list[list[str]]]] = {}
    module: set[str] = set()
    current = None
    pending = None  # (method, text so far) of a def spread over several lines
    top = re.compile(r"^(?:class|def)\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*[:=]")
    member = re.compile(r"^    (?:def\s+([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*[:=])")
    for line in source.splitlines():
        if pending is not None:
            pending = (pending[0], pending[1] + " " + line.strip())
        elif line and not line[0].isspace():
            m = top.match(line)
            current = None
            if m:
                name = m.group(1) or m.group(2)
                module.add(name)
                if line.startswith("class "):
                    current = name
                    classes.setdefault(name, set())
            continue
        elif current is not None:
            m = member.match(line)
            if not m:
                continue
            classes[current].add(m.group(1) or m.group(2))
            if not m.group(1):
                continue
            pending = (m.group(1), line.split("(", 1)[1] if "(" in line else "")
        else:
            continue
        method, text = pending
        params = _until_close(text)
        if params is not None:  # the parameter list closed
            specs = [sp for sp in (param_spec(p) for p in _split_params(params)) if sp is not None]
            signatures.setdefault(current, {}).setdefault(method, []).append(specs)
            pending = None
    members = {k: sorted(v) for k, v in classes.items()}
    return members, sorted(module), signatures


def wheel_version(name: str) -> str:
    m = re.match(r"^[A-Za-z0-9_]+?-(\d+(?:\.\d+)*)", name)
    if not m:
        raise SystemExit(f"{name}: cannot read a version from the wheel's file name")
    return m.group(1)


def read_wheel(path: Path) -> dict:
    record = {"source": path.name, "sha256": sha256_file(path), "tensorrt": wheel_version(path.name)}
    with zipfile.ZipFile(path) as zf:
        files = zf.namelist()
        so = [f for f in files if re.search(r"/tensorrt[^/]*\.so$", f)]
        pyi = [f for f in files if f.endswith("tensorrt.pyi")]
        if so:
            names = binary_identifiers(zf.read(so[0]))
            for f in files:
                if f.endswith(".py"):
                    names.update(IDENT.findall(zf.read(f).decode("utf-8", "replace")))
            record.update(kind="binding-strings", names=sorted(names))
        elif pyi:
            classes, module, signatures = stub_classes(zf.read(pyi[0]).decode("utf-8"))
            init = [f for f in files if f.endswith("__init__.pyi")]
            for f in init:  # helpers such as nptype live in the package's __init__
                module = sorted(set(module) | set(stub_classes(zf.read(f).decode("utf-8"))[1]))
            record.update(kind="stubs", classes=classes, module=module, signatures=signatures)
        else:
            raise SystemExit(f"{path}: neither a TensorRT bindings wheel (tensorrt*.so) nor a stubs wheel (tensorrt.pyi)")
    return record


def record_wheels(doc: str, default_out: str, read, name_and_summary, argv: list[str] | None = None) -> int:
    """The command line both recorders share: WHEEL... [-o DIR]; each wheel's record is
    written as DIR/<name>.json.gz (deterministic bytes: no timestamp in the gzip header)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheels", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=Path(default_out))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for wheel in args.wheels:
        record = read(wheel)
        name, summary = name_and_summary(record)
        target = args.out / f"{name}.json.gz"
        target.write_bytes(gzip.compress(json.dumps(record, indent=0, sort_keys=True).encode(), 9, mtime=0))
        print(f"{target}: {summary} from {wheel.name}")
    return 0


def _name_and_summary(record: dict) -> tuple[str, str]:
    name = f"tensorrt-{record['tensorrt']}" + ("-stubs" if record["kind"] == "stubs" else "")
    size = len(record.get("names", [])) or sum(len(v) for v in record.get("classes", {}).values())
    return name, f"{record['kind']}, {size} names"


def main(argv: list[str] | None = None) -> int:
    return record_wheels(__doc__, "tests/data/trt_api", read_wheel, _name_and_summary, argv)


if __name__ == "__main__":
    sys.exit(main())

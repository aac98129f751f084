"""The documentation: README <= 300 lines with links that resolve, the MkDocs site builds
with --strict (a broken link or anchor fails), the CLI reference is current, the --quick
time is one statement, and the README's five-minute recipe runs as it is printed."""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from appliance_helpers import REPO, build_brightness_package, flat_png, request, wait_until

README = REPO / "README.md"
RECIPE = re.compile(r"<!-- recipe: five-minutes[^>]*-->\s*```sh\n(.*?)```\s*<!-- /recipe -->", re.S)


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (REPO / target).exists(), target


def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    # no -q: mkdocs 1.6 drops the warnings it does not print from its --strict count
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                        "--site-dir", str(tmp_path / "site")], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "serving" / "index.html").is_file()


def test_cli_reference_is_current():
    script = runpy.run_path(str(REPO / "scripts" / "cli_reference.py"))
    assert script["main"](["--check"]) == 0, "docs/cli.md is stale: run python scripts/cli_reference.py"


def test_quick_demo_time_is_stated_once_the_same_everywhere():
    from fakedet.demo.cli import QUICK_TIME, demo

    from click.testing import CliRunner

    help_text = CliRunner().invoke(demo, ["--help"], terminal_width=200).output
    assert QUICK_TIME in " ".join(help_text.split())
    for page in (REPO / "README.md", REPO / "docs" / "demo.md"):
        text = " ".join(page.read_text().split())
        quick = [s for s in text.split(". ") if "--quick" in s and (" s " in s or "minute" in s)]
        assert all(QUICK_TIME in s for s in quick), (page.name, quick)
        assert QUICK_TIME in text, page.name



# ---- the five-minute recipe, as printed ------------------------------------------------------
def recipe_lines() -> list[str]:
    block = RECIPE.search(README.read_text(encoding="utf-8"))
    assert block, "the README lost its five-minute recipe"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    serving = (REPO / "docs" / "serving.md").read_text(encoding="utf-8")
    assert all(line in serving for line in lines), "docs/serving.md prints another recipe"
    return lines


def port_8000_free() -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8000))
        except OSError:
            return False
    return True


def run_recipe(cwd: Path) -> dict:
    """Start the serve line (its trailing & is the Popen), run the curl line as it is, stop the
    server (the recipe's `kill %1`). Only the port changes, when 8000 is taken."""
    serve, curl, stop = recipe_lines()
    assert serve.endswith(" &") and stop == "kill %1" and curl.startswith("curl ")
    serve = serve.removesuffix(" &")
    port = 8000
    if not port_8000_free():
        from appliance_helpers import free_port

        port = free_port()
        serve, curl = f"{serve} --port {port}", curl.replace(":8000/", f":{port}/")
    log = open(cwd / "serve.log", "wb")
    proc = subprocess.Popen(["bash", "-c", "exec " + serve], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready():
            assert proc.poll() is None, (cwd / "serve.log").read_text()
            try:
                return request(port, "GET", "/readyz", timeout=2).status == 200
            except OSError:
                return False

        wait_until(ready, 120, "the recipe's server")
        assert request(port, "GET", "/", timeout=10).status == 200  # the console the README points to
        out = subprocess.run(["bash", "-c", curl], cwd=cwd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, (cwd / "serve.log").read_text()
        log.close()


def test_five_minute_recipe_on_a_tiny_package(tmp_path):
    pytest.importorskip("uvicorn")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    demo = tmp_path / "demo-out"
    shutil.copytree(build_brightness_package(tmp_path / "pkg"), demo / "detector.fdet")
    image = demo / "heldout" / "generated" / "1_fake" / "rocket__mix-000.png"
    image.parent.mkdir(parents=True)
    image.write_bytes(flat_png(230))
    venv_bin = tmp_path / ".venv" / "bin"  # this interpreter's fakedet, where the recipe looks for it
    venv_bin.mkdir(parents=True)
    (venv_bin / "fakedet").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m fakedet "$@"\n')
    (venv_bin / "fakedet").chmod(0o755)
    body = run_recipe(tmp_path)
    (result,) = body["results"]
    assert result["error"] is None and result["decision"] == "fake" and 0.5 < result["score"] <= 1


@pytest.mark.slow
def test_five_minute_recipe_on_the_demo_package():
    if not (REPO / "demo-out" / "detector.fdet" / "manifest.json").is_file():
        pytest.skip("run make demo first")
    body = run_recipe(REPO)
    (result,) = body["results"]
    assert result["error"] is None and result["decision"] in ("fake", "real")

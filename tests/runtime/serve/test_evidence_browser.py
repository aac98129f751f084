"""The console with evidence maps in a real headless chromium: drop 3 images, a thumbnail
of each appears (made in the browser from the file), with the evidence overlay drawn from
the API's grid, toggled by a click, and the share of the area over the threshold.

    make test-browser    (screenshot: benchmarks/results/serve-console-evidence.png)

FAKEDET_EVIDENCE_DEMO=DEMO_OUT uses a `fakedet demo` output (its detector and a real,
a reconstructed and a spliced held-out crop) instead of a random tiny detector."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install 'fakedet[browser]'")
pytest.importorskip("starlette")

from appliance_helpers import ServerProcess, wait_until  # noqa: E402
from test_serve_browser import _browser  # noqa: E402


def _inputs(tmp_path: Path) -> tuple[Path, list[Path]]:
    demo = os.environ.get("FAKEDET_EVIDENCE_DEMO")
    if demo:
        d = Path(demo)
        real = sorted((d / "heldout" / "0_real").glob("*.png"))[0]
        recon = d / "heldout" / "reconstructed" / "1_fake" / real.name
        a, b = np.asarray(Image.open(real).convert("RGB")), np.asarray(Image.open(recon).convert("RGB"))
        spliced = a.copy()
        spliced[:, a.shape[1] // 2:] = b[:, a.shape[1] // 2:]
        out = tmp_path / "spliced-right-half.png"
        Image.fromarray(spliced).save(out)
        return d / "detector.fdet", [real, recon, out]
    pytest.importorskip("torch")
    from evidence_helpers import tiny_evidence_package

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"photo{i}.png"
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8)).save(buf, "PNG")
        p.write_bytes(buf.getvalue())
        paths.append(p)
    return tiny_evidence_package(tmp_path / "pkg"), paths


def test_console_shows_thumbnails_with_toggled_overlays(tmp_path):
    from selenium.webdriver.common.by import By

    package, images = _inputs(tmp_path)
    with ServerProcess(package, tmp_path / "server.log") as server:
        browser = _browser(tmp_path)
        try:
            browser.get(f"http://127.0.0.1:{server.port}/")
            wait_until(lambda: "threshold" in browser.find_element(By.ID, "model").text, 30, "model line")
            browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in images))
            wait_until(lambda: browser.find_element(By.ID, "status").get_attribute("data-done") == "1", 60,
                       "the console's answer")
            thumbs = browser.find_elements(By.CSS_SELECTOR, "#results .thumb")
            assert len(thumbs) == 3
            wait_until(lambda: all(browser.execute_script("return arguments[0].querySelector('img').naturalWidth", t) > 0
                                   for t in thumbs), 10, "thumbnails decoded in the browser")
            for t in thumbs:
                canvas = t.find_element(By.TAG_NAME, "canvas")
                assert 1 <= int(canvas.get_attribute("width")) <= 16 and canvas.is_displayed()
            rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
            assert all("of area over threshold" in r.text for r in rows)
            shot = os.environ.get("FAKEDET_EVIDENCE_SCREENSHOT") or str(tmp_path / "console-evidence.png")
            assert browser.save_screenshot(shot)
            thumbs[0].click()  # the overlay goes, and comes back
            assert not thumbs[0].find_element(By.TAG_NAME, "canvas").is_displayed()
            thumbs[0].click()
            assert thumbs[0].find_element(By.TAG_NAME, "canvas").is_displayed()
            print(f"screenshot: {shot}")
        finally:
            browser.quit()
        assert "Traceback" not in server.log()

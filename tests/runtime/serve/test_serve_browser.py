"""The moderation console in a real headless browser (Debian's chromium + chromedriver,
driven by selenium): enter the token, choose images, see a bar per score with the
decision and timings, as the API answered. Writes a screenshot.

    make test-browser          (installs chromium, chromium-driver and selenium first)
    pytest -m browser          (screenshot: $FAKEDET_SCREENSHOT, else in the test's tmp dir)
"""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.browser

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install 'fakedet[browser]'")
pytest.importorskip("starlette")

from appliance_helpers import ServerProcess, build_brightness_package, flat_png, request, wait_until  # noqa: E402

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1100,640")


def _browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = Options()
    opts.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")  # fresh, never the user's
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_console_scores_dropped_images_and_shows_bars(tmp_path):
    from selenium.webdriver.common.by import By

    package = build_brightness_package(tmp_path / "pkg")
    token = tmp_path / "token"
    token.write_text("console-token")
    images = {"night.png": flat_png(15, (320, 200)), "overexposed.png": flat_png(250, (320, 200)),
              "dusk.png": flat_png(175, (320, 200)), "broken.jpg": b"\xff\xd8\xff not a jpeg"}
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
    auth = {"Authorization": "Bearer console-token"}
    with ServerProcess(package, tmp_path / "server.log", "--token-file", token) as server:
        browser = _browser(tmp_path)
        try:
            browser.get(f"http://127.0.0.1:{server.port}/")
            box = browser.find_element(By.ID, "token")
            box.send_keys("console-token")
            browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", box)
            wait_until(lambda: "threshold" in browser.find_element(By.ID, "model").text, 30, "model line")
            browser.find_element(By.ID, "files").send_keys("\n".join(str(tmp_path / n) for n in images))
            wait_until(lambda: browser.find_element(By.ID, "status").get_attribute("data-done") == "1", 30,
                       "the console's answer")
            rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
            shown = {r.find_element(By.CLASS_NAME, "name").text: r for r in rows}
            assert set(shown) == set(images)
            for name, data in images.items():
                want = request(server.port, "POST", "/v1/detect", data, auth).json()["results"][0]
                row = shown[name]
                assert row.find_element(By.CLASS_NAME, "decision").text.lower() == want["decision"]
                assert row.get_attribute("class") == f"result {want['decision']}"
                bar = row.find_element(By.CLASS_NAME, "bar")
                box_w = row.find_element(By.CLASS_NAME, "barbox").size["width"]
                if want["score"] is None:
                    assert want["error"] in row.text
                    assert bar.size["width"] == 0
                else:
                    assert row.find_element(By.CLASS_NAME, "score").text == f"{want['score']:.3f}"
                    assert bar.size["width"] == pytest.approx(want["score"] * box_w, abs=2)
                    assert "queue" in row.text and "infer" in row.text
            shot = os.environ.get("FAKEDET_SCREENSHOT") or str(tmp_path / "console.png")
            assert browser.save_screenshot(shot)
            print(f"screenshot: {shot}")
        finally:
            browser.quit()
        assert "Traceback" not in server.log()

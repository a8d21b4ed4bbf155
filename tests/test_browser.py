"""The page in a real headless browser: upload a photo, fill in the form, Analyze, read the answer.

Uses the system Chromium (Debian package `chromium`) through Playwright; set SCREENSHOT_DIR to keep the screenshot.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "benign_ISIC_0032452.jpg"
CLASS_NAMES = ["Melanoma", "Other skin cancer", "Benign lesion", "No lesion"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


def test_analyze_in_the_browser(app, upload_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    photo = tmp_path / "my_spot.png"  # bytes unlike the example's, so the upload is a file of its own
    Image.open(EXAMPLE).save(photo)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(app.demo.local_url)
        expect(page.locator("#disclaimer")).to_contain_text("not a medical device", timeout=30_000)

        page.locator("input[type=file]").first.set_input_files(str(photo))
        page.get_by_label("Age in years (optional)").fill("55")
        page.get_by_label("Sex (optional)").click()
        page.get_by_role("option", name="male", exact=True).click()
        page.get_by_role("button", name="Analyze").click()

        estimate = page.locator("#estimate")
        for name in CLASS_NAMES:  # one bar per class: its name and a percentage
            bar = estimate.get_by_test_id(f"{name}-confidence-set")
            expect(bar).to_be_visible(timeout=60_000)
            expect(bar).to_contain_text(re.compile(re.escape(name) + r".*\d+(\.\d+)?%"))
        expect(page.locator("#verdict")).to_contain_text(re.compile("concern|unsure"))
        expect(page.locator("#disclaimer")).to_be_visible()
        expect(page.locator("#heatmap img")).to_be_visible()

        shot = tmp_path / "app.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    if os.environ.get("SCREENSHOT_DIR"):
        Path(os.environ["SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["SCREENSHOT_DIR"]) / "app.png")
    assert shot.stat().st_size > 0
    # The browser's upload went through Gradio's upload route; it is gone now.
    assert not {str(f.resolve()) for f in upload_dir.rglob("*") if f.is_file()} - app.EXAMPLE_COPIES

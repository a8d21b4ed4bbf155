"""The page in a real headless browser, at a phone's size and a desktop's: the form, the examples, the answer.

Uses the system Chromium (Debian package `chromium`) through Playwright; set SCREENSHOT_DIR to keep screenshots.
Under CI (CI=true) a missing browser is a failure, not a skip.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "benign_ISIC_0032452.jpg"
GALLERY = pd.read_csv(ROOT / "examples" / "gallery.csv", dtype=str, keep_default_na=False)
CLASS_NAMES = ["Melanoma", "Other skin cancer", "Benign lesion", "No lesion"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
ANSWERED = re.compile("Risk: |No assessment")

if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing: CI must run the browser test (apt-get install chromium)", pytrace=False)
    pytest.skip(f"{CHROMIUM} is missing; install it with: apt-get install chromium", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(params=list(SIZES))
def page(request, browser, app):
    from playwright.sync_api import expect
    context = browser.new_context(viewport=SIZES[request.param])
    page = context.new_page()
    page.size_name = request.param
    page.goto(app.demo.local_url)
    expect(page.locator("#disclaimer")).to_contain_text("not a medical device", timeout=30_000)
    yield page
    context.close()


@pytest.fixture
def spy(app, monkeypatch):
    """Every (age, sex, site) that reaches the model, as the app passes them to clf.predict."""
    calls, predict = [], app.clf.predict

    def record(image, age=None, sex=None, site=None):
        calls.append((age, sex, site))
        return predict(image, age, sex, site)

    monkeypatch.setattr(app.clf, "predict", record)
    return calls


def shoot(page, name: str, tmp_path: Path) -> None:
    shot = tmp_path / f"{name}-{page.size_name}.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SCREENSHOT_DIR"):
        Path(os.environ["SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(os.environ["SCREENSHOT_DIR"]) / shot.name)


def top(locator) -> float:
    return locator.bounding_box()["y"]


def no_error_badge(page):
    """No red "Error" badge on any part of the page (a gr.Error's own pop-up may still be fading out)."""
    from playwright.sync_api import expect
    expect(page.locator("[data-testid=status-tracker] .error")).to_have_count(0)


def answered(page, spy, calls_before: int):
    """Wait until the model was called once more and the page shows that answer (the last one is cleared first)."""
    from playwright.sync_api import expect
    for _ in range(600):
        if len(spy) > calls_before:
            break
        page.wait_for_timeout(100)
    assert len(spy) == calls_before + 1, "the model was not called"
    expect(page.locator("#verdict")).to_contain_text(ANSWERED, timeout=60_000)


def analyze(page, spy):
    n = len(spy)
    page.get_by_role("button", name="Analyze").click()
    answered(page, spy, n)


def test_own_photo_untouched_age_is_unknown_and_the_answer_reads_in_order(app, page, spy, tmp_path):
    from playwright.sync_api import expect
    photo = tmp_path / "my_spot.png"  # bytes unlike the example's, so the upload is a file of its own
    Image.open(EXAMPLE).save(photo)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    analyze(page, spy)
    assert spy and app.spec.parse_age(spy[-1][0]) is None, f"an untouched age reached the model as {spy[-1][0]!r}"

    age = page.get_by_label("Age in years (optional)")
    age.fill("55")
    analyze(page, spy)
    assert float(spy[-1][0]) == 55
    age.fill("")  # cleared again: unknown, not 0
    analyze(page, spy)
    assert app.spec.parse_age(spy[-1][0]) is None, f"a cleared age reached the model as {spy[-1][0]!r}"

    page.get_by_label("Sex (optional)").click()
    page.get_by_role("option", name="male", exact=True).click()
    analyze(page, spy)
    assert spy[-1][1] == "male"

    verdict, estimate = page.locator("#verdict"), page.locator("#estimate")
    for name in CLASS_NAMES:  # one bar per class: its name and a percentage
        bar = estimate.get_by_test_id(f"{name}-confidence-set")
        expect(bar).to_be_visible()
        expect(bar).to_contain_text(re.compile(re.escape(name) + r".*\d+(\.\d+)?%"))
    expect(page.locator("#heatmap img")).to_be_visible()
    expect(page.locator("#heatmap-key img")).to_be_visible()
    # Reading order: risk level, what to do, why (classes, heatmap), disclaimer.
    risk, advice = verdict.locator("h2"), verdict.locator("strong").first
    expect(risk).to_contain_text("Risk: ")
    order = [top(risk), top(advice), top(estimate), top(page.locator("#heatmap")), top(page.locator("#disclaimer"))]
    assert order == sorted(order), order
    # The risk level is the largest text of the answer; the top class has no heading of its own.
    def size(locator) -> float:
        return float(locator.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))

    assert size(risk) > max(size(estimate.get_by_test_id(f"{n}-confidence-set")) for n in CLASS_NAMES)
    no_error_badge(page)
    shoot(page, "own-photo", tmp_path)


def test_every_example_is_answered_beside_its_true_diagnosis(app, page, spy, tmp_path):
    from playwright.sync_api import expect
    page.get_by_role("button", name="Analyze").click()  # no photo yet: an error first, whose badge must not outlive it
    expect(page.get_by_text("Please upload a photo").first).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid=status-tracker] .error").first).to_be_visible(timeout=30_000)
    page.locator(".toast-close").first.click()  # the person has read the message

    thumbs = page.locator("#examples button.thumbnail-item")
    expect(thumbs).to_have_count(len(GALLERY))
    verdict, truth, why = page.locator("#verdict"), page.locator("#truth"), page.locator("#why")
    for i, row in enumerate(GALLERY.itertuples()):
        n = len(spy)
        thumbs.nth(i).click()
        answered(page, spy, n)
        expect(truth).to_contain_text(row.truth)
        assert app.spec.parse_age(spy[-1][0]) == app.spec.parse_age(row.age)
        refused = "No assessment" in verdict.inner_text()
        if refused:  # nothing of an answer is left on screen, and no red badge
            expect(why).to_be_hidden()
            no_error_badge(page)
        else:
            expect(page.locator("#estimate")).to_be_visible()
        # beside: the true diagnosis follows the answer at once, before the reasons
        box_v, box_t = verdict.bounding_box(), truth.bounding_box()
        assert -10 <= box_t["y"] - (box_v["y"] + box_v["height"]) < 80  # block margins may overlap a little
        if row.kind == "not skin" or i == 0:
            shoot(page, f"example-{i}", tmp_path)
    page.locator("input[type=file]").first.set_input_files(str(EXAMPLE))  # a photo of one's own: no example truth
    expect(truth).to_have_text("")

"""The page in a real headless browser, at a phone's size and a desktop's: the form, the examples, the answer, in
the browser's language (English, Portuguese of Brazil, Spanish), accessible (axe-core, WCAG 2.2 AA), and offline.

Uses the system Chromium (Debian package `chromium`) through Playwright, and axe-core through
axe-playwright-python; set SCREENSHOT_DIR to keep screenshots (one per language, size and state).
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

from model.texts import table, words

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "benign_ISIC_0032452.jpg"
GALLERY = pd.read_csv(ROOT / "examples" / "gallery.csv", dtype=str, keep_default_na=False)
CLASSES = ["melanoma", "other_cancer", "benign", "no_lesion"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
LANGUAGES = ["en", "pt-BR", "es"]  # Chromium's locale: its navigator.language and its Accept-Language header
# Gradio's own words in English, which its page must not show in another language.
GRADIO_ENGLISH = ["Drop Image Here", "Click to Upload", "Built with Gradio", "Use via API", "Upload file",
                  "Capture from camera", "Paste from clipboard", "Fullscreen", "Remove Image", "Thumbnail 1 of"]

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


def open_page(browser, app, size: str, lang: str = "en", scheme: str = "light", requests: list | None = None):
    """A fresh page of the app in its own browser context, once the server has put in the gallery's captions."""
    from playwright.sync_api import expect
    context = browser.new_context(viewport=SIZES[size], locale=lang, color_scheme=scheme)
    page = context.new_page()
    page.size_name, page.lang = size, lang
    if requests is not None:  # what the page asks for, and what went wrong: (url, failure or HTTP status)
        page.on("request", lambda r: requests.append((r.url, None)))
        page.on("requestfailed", lambda r: requests.append((r.url, r.failure)))
        page.on("response", lambda r: requests.append((r.url, r.status)) if r.status >= 400 else None)
    page.goto(app.demo.local_url)
    expect(page.locator("#disclaimer")).to_contain_text(words("disclaimer", lang)[:40], timeout=30_000)
    expect(page.locator("#examples .caption-label").first).to_have_text(app.caption(first_row(), lang))
    return page


def first_row():
    return next(GALLERY.itertuples())


@pytest.fixture(params=list(SIZES))
def page(request, browser, app):
    page = open_page(browser, app, request.param)
    yield page
    page.context.close()


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
    shot = tmp_path / f"{name}-{page.lang}-{page.size_name}.png"
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


def answered_re(lang: str) -> re.Pattern:
    titles = [words(f"risk.title.{r}", lang) for r in ("high", "moderate", "low", "uncertain")]
    return re.compile("|".join(re.escape(t) for t in [*titles, words("refusal.title", lang)]))


def answered(page, spy, calls_before: int):
    """Wait until the model was called once more and the page shows that answer (the last one is cleared first)."""
    from playwright.sync_api import expect
    for _ in range(600):
        if len(spy) > calls_before:
            break
        page.wait_for_timeout(100)
    assert len(spy) == calls_before + 1, "the model was not called"
    expect(page.locator("#verdict")).to_contain_text(answered_re(page.lang), timeout=60_000)
    if words("refusal.title", page.lang) not in page.locator("#verdict").inner_text():
        expect(page.locator("#why")).to_be_visible(timeout=30_000)  # with the heatmap's words, in the same step


def analyze(page, spy):
    n = len(spy)
    page.get_by_role("button", name=words("page.analyze", page.lang), exact=True).click()
    answered(page, spy, n)


def pick(page, spy, i: int):
    n = len(spy)
    page.locator("#examples button.thumbnail-item").nth(i).click()
    answered(page, spy, n)


def toast(page, text: str):
    """A message pop-up with `text`, titled in the page's language; closed once read."""
    from playwright.sync_api import expect
    box = page.locator(".toast-body").filter(has_text=text).first
    expect(box).to_be_visible(timeout=30_000)
    expect(box).to_contain_text(words("error.title", page.lang))
    box.locator(".toast-close").click()


# ---- what the page shows, in English --------------------------------------------------------------------------
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
    for c in CLASSES:  # one bar per class: its name and a percentage
        name = words(f"class.{c}")
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

    assert size(risk) > max(size(estimate.get_by_test_id(f"{words(f'class.{c}')}-confidence-set")) for c in CLASSES)
    no_error_badge(page)
    shoot(page, "own-photo", tmp_path)


def test_every_example_is_answered_beside_its_true_diagnosis(app, page, spy, tmp_path):
    from playwright.sync_api import expect
    page.get_by_role("button", name="Analyze", exact=True).click()  # no photo yet: an error, whose badge must go
    expect(page.locator("[data-testid=status-tracker] .error").first).to_be_visible(timeout=30_000)
    toast(page, words("error.no_photo"))

    thumbs = page.locator("#examples button.thumbnail-item")
    expect(thumbs).to_have_count(len(GALLERY))
    verdict, truth, why = page.locator("#verdict"), page.locator("#truth"), page.locator("#why")
    for i, row in enumerate(GALLERY.itertuples()):
        pick(page, spy, i)
        expect(truth).to_contain_text(row.truth)
        assert app.spec.parse_age(spy[-1][0]) == app.spec.parse_age(row.age)
        refused = words("refusal.title") in verdict.inner_text()
        if refused:  # nothing of an answer is left on screen, and no red badge
            expect(why).to_be_hidden()
            no_error_badge(page)
        else:
            expect(page.locator("#estimate")).to_be_visible()
        # beside: the true diagnosis follows the answer at once, before the reasons (measured in one go: the page
        # may be scrolling the answer into view)
        gap = page.evaluate("""() => document.getElementById('truth').getBoundingClientRect().top
            - document.getElementById('verdict').getBoundingClientRect().bottom""")
        assert -10 <= gap < 80, gap  # block margins may overlap a little
        # our own examples are large enough not to be warned about
        assert words("warning.small", width=1, height=1).split("(")[0] not in verdict.inner_text(), row.file
        if row.kind == "not skin" or i == 0:
            shoot(page, f"example-{i}", tmp_path)
    page.locator("input[type=file]").first.set_input_files(str(EXAMPLE))  # a photo of one's own: no example truth
    expect(truth).to_have_text("")


# ---- in the browser's language --------------------------------------------------------------------------------
def visible_words(page) -> str:
    """All the page says to a reader: its text, and its labels for screen readers (alt, aria-label, title,
    placeholder)."""
    return page.evaluate("""() => [document.body.innerText, ...Array.from(document.querySelectorAll(
        '[alt],[aria-label],[title],[placeholder]')).flatMap(e => ['alt', 'aria-label', 'title', 'placeholder']
        .map(a => e.getAttribute(a) || ''))].join('\\n')""")


def english_fragments(lang: str) -> list[str]:
    """Stretches of English that the page in `lang` must not show: each text of ours that the language words
    differently, cut at its placeholders and Markdown, the long pieces that the translation does not also hold
    (the English titles of the cited papers)."""
    ours, out = table(lang), []
    for key, text in table("en").items():
        if ours[key] == text:
            continue
        for piece in re.split(r"\{[^}]*\}|\*\*|\*|\n|^#+ |^- |“|”", text):
            piece = piece.strip(" .,:;()")
            if len(piece) >= 16 and piece not in ours[key]:
                out.append(piece)
    return out


def assert_in_language(page):
    """No English of ours or of Gradio's on a page shown in another language."""
    if page.lang == "en":
        return
    said = visible_words(page)
    english = [piece for piece in english_fragments(page.lang) + GRADIO_ENGLISH if piece in said]
    assert not english, f"English on the {page.lang} page: {english}"


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_page_and_every_answer_read_in_the_browsers_language(app, browser, spy, tmp_path, lang, size):
    from playwright.sync_api import expect
    page = open_page(browser, app, size, lang)
    assert page.evaluate("document.documentElement.lang").split("-")[0] == lang.split("-")[0]
    assert page.title() == words("page.title", lang)
    expect(page.locator("#title h1")).to_have_text(words("page.title", lang))
    for key in ("page.intro", "disclaimer"):
        expect(page.get_by_text(words(key, lang), exact=False).first).to_be_visible()
    for key in ("page.age", "page.sex", "page.site"):  # every control is labelled, in the reader's words
        expect(page.get_by_label(words(key, lang), exact=True)).to_be_visible()
    expect(page.get_by_label(words("page.sex", lang), exact=True)).to_have_value(words("page.sex.unknown", lang))
    for key in ("page.analyze", "page.clear"):
        expect(page.get_by_role("button", name=words(key, lang), exact=True)).to_be_visible()
    for i, row in enumerate(GALLERY.itertuples()):  # captions and the buttons' names, in the reader's words
        thumb = page.locator("#examples button.thumbnail-item").nth(i)
        expect(thumb).to_have_attribute("aria-label", app.caption(row, lang))
    assert_in_language(page)
    shoot(page, "page", tmp_path)

    page.get_by_role("button", name=words("page.analyze", lang), exact=True).click()  # no photo: a message
    toast(page, words("error.no_photo", lang))
    notes = tmp_path / "notes.jpg"
    notes.write_text("these are my notes, not a photo")
    page.locator("input[type=file]").first.set_input_files(str(notes))
    page.get_by_role("button", name=words("page.analyze", lang), exact=True).click()
    toast(page, words("image.unsupported", lang))

    verdict, why = page.locator("#verdict"), page.locator("#why")
    for i, row in enumerate(GALLERY.itertuples()):
        pick(page, spy, i)
        expect(page.locator("#truth")).to_have_text(re.sub(r"\*\*", "", app.truth_text(row, lang)))
        if words("refusal.title", lang) in verdict.inner_text():
            expect(why).to_be_hidden()
        else:
            for c in CLASSES:
                expect(page.locator("#estimate").get_by_test_id(f"{words(f'class.{c}', lang)}-confidence-set")
                       ).to_be_visible()
            alt = page.locator("#heatmap img").first.get_attribute("alt")
            assert alt.startswith((table(lang)["heatmap.alt"].split("{")[0],
                                   table(lang)["heatmap.alt_empty"].split("{")[0])), alt
            how = page.locator("#heatmap-how").inner_text().strip()
            assert how in (words("heatmap.how", lang), words("heatmap.empty", lang)), how
            expect(page.locator("#photo img").first).to_have_attribute("alt", words("page.photo.alt", lang))
        assert_in_language(page)
        if i == 0:
            shoot(page, "answer", tmp_path)

    photo = tmp_path / "my_spot.png"  # a child's photo: the answer says the model barely saw children
    Image.open(EXAMPLE).save(photo)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.get_by_label(words("page.age", lang), exact=True).fill("10")
    analyze(page, spy)
    expect(verdict).to_contain_text(words("caution.age_young", lang))
    assert_in_language(page)
    page.context.close()


# ---- accessible to anyone, offline ----------------------------------------------------------------------------
def serious(page) -> list[str]:
    """axe-core's serious and critical violations of the page as it is now (all its rules, WCAG 2.2 AA included)."""
    from axe_playwright_python.sync_playwright import Axe
    results = Axe().run(page).response
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:5]} {v['help']}"
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", list(SIZES))
def test_no_serious_accessibility_violation(app, browser, spy, tmp_path, size, scheme):
    """axe-core finds nothing serious on the page, before and after an answer (the class bars, the heatmap, its
    key) and after a refusal; the dark scheme is the page's own dark theme."""
    page = open_page(browser, app, size, scheme=scheme)
    assert page.evaluate("document.body.classList.contains('dark')") == (scheme == "dark")
    assert not serious(page), serious(page)
    for i in (0, len(GALLERY) - 1):  # a lesion's answer, then the coffee cup's refusal
        pick(page, spy, i)
        assert not serious(page), serious(page)
    page.get_by_role("button", name=words("page.about")).click()  # the model card's tables, which may scroll
    page.locator("#about-card table").first.wait_for()
    assert not serious(page), serious(page)
    shoot(page, f"axe-{scheme}", tmp_path)
    page.context.close()


def test_keyboard_order_focus_and_the_thumbs_reach(app, browser):
    """Tab goes photo, age, sex, site, Clear, Analyze, then the examples (no gallery toolbar), each stop with a
    visible focus ring. On a phone, Analyze is the wide button on the right and Clear a small one beside it."""
    page = open_page(browser, app, "phone")
    stops = []
    for _ in range(9 + len(GALLERY)):  # the photo's 4 buttons, 3 fields, 2 buttons, the examples
        page.keyboard.press("Tab")
        stops.append(page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
            return {name: e.getAttribute('aria-label') || e.innerText.trim(), where: e.closest('[id]')?.id,
                    ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2}; }"""))
    where = [s["where"] for s in stops]
    assert where == ["photo"] * 4 + ["age", "sex", "site", "clear", "analyze"] + ["examples"] * len(GALLERY), where
    assert [s["name"] for s in stops[-len(GALLERY):]] == [app.caption(r) for r in GALLERY.itertuples()]
    assert not any("download" in s["name"].lower() for s in stops), stops
    assert all(s["ring"] for s in stops), [s for s in stops if not s["ring"]]
    analyze_box = page.locator("#analyze").bounding_box()
    clear_box = page.locator("#clear").bounding_box()
    assert abs(analyze_box["y"] - clear_box["y"]) < 4, "Clear and Analyze share a row"
    assert clear_box["x"] < analyze_box["x"] and analyze_box["width"] > 1.8 * clear_box["width"]
    page.context.close()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_phone_layout_examples_near_values_readable_captions_under_the_pictures(app, browser, spy, lang):
    """At 390 px: the first row of examples within one and a half screens, before and after an answer; every
    dropdown value fits its box in the reader's words; each caption sits under its picture, not on it."""
    page = open_page(browser, app, "phone", lang)

    def first_row_bottom() -> float:
        box = page.locator("#examples button.thumbnail-item").first.bounding_box()
        return box["y"] + box["height"] + page.evaluate("scrollY")

    assert first_row_bottom() < 1.5 * SIZES["phone"]["height"]
    values = {"page.sex": [words(f"page.sex.{k}", lang) for k in ("female", "male", "unknown")],
              "page.site": [words("page.site.unknown", lang)] + [words(f"site.{s}", lang) for s in app.spec.sites]}
    for label, texts in values.items():
        box = page.get_by_label(words(label, lang), exact=True)
        too_long = box.evaluate("""(e, texts) => { const s = getComputedStyle(e), c = document.createElement('canvas')
            .getContext('2d'); c.font = s.font; const room = e.clientWidth - parseFloat(s.paddingLeft)
            - parseFloat(s.paddingRight); return texts.filter(t => c.measureText(t).width > room); }""", texts)
        assert not too_long, f"{label}: cut off at 390 px: {too_long}"
    for thumb in page.locator("#examples button.thumbnail-item").all():
        picture, caption = thumb.locator("img").bounding_box(), thumb.locator(".caption-label").bounding_box()
        assert caption["y"] >= picture["y"] + picture["height"] - 1, "a caption covers its picture"
    pick(page, spy, 0)
    assert first_row_bottom() < 1.5 * SIZES["phone"]["height"]
    page.context.close()


def test_no_request_leaves_the_machine_when_the_page_loads(app, browser):
    """Every request of the page's load goes to the app itself and succeeds: no web fonts, no CDN, no analytics.
    The fonts are the system's (the theme names no font file)."""
    requests = []
    page = open_page(browser, app, "desktop", requests=requests)
    page.wait_for_timeout(2000)  # the page is drawn and answered its load event; Gradio keeps its stream open
    local = app.demo.local_url.rstrip("/")
    urls = [url for url, _ in requests]
    elsewhere = [u for u in urls if not u.startswith((local, "data:", "blob:"))]
    assert not elsewhere, f"requests that leave the machine: {elsewhere}"
    # (Gradio closes the event stream of an answered event: aborted, not failed.)
    failed = [(url, why) for url, why in requests if why is not None and why != "net::ERR_ABORTED"]
    assert not failed, f"requests that failed: {failed}"
    fonts = [u for u in urls if re.search(r"\.(woff2?|ttf|otf)(\?|$)", u)]
    assert not fonts, f"font files fetched: {fonts}"
    assert len(urls) > 5  # the recording did see the page load
    page.context.close()

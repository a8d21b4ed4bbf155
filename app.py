"""Gradio front end: a photo of a skin spot (and, optionally, age, sex and body site) -> a risk level in plain
words, what to do, and why: four class probabilities and a Grad-CAM heatmap. Knows nothing of training.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change it)
    python app.py --share    # also a temporary public gradio.live link

Privacy: the Analyze event turns off Gradio's own pre- and postprocessing. We read the uploaded file ourselves
(so a bad file gets a clear message) and send the heatmap back inline as a data URL, so no picture derived from
the photo is written to disk. Gradio keeps an upload in its upload folder (GRADIO_TEMP_DIR, /tmp/gradio by
default) under the hash of its bytes, so people who upload the same photo share one file: no request may delete
it. Gradio's own cache cleaner (`delete_cache`) deletes every upload UPLOAD_SECONDS after it arrived (env
SKINLESION_UPLOAD_SECONDS, default 300), checking every CLEAN_EVERY_S, and all of them when the server stops.
Gradio's browser-side run history is turned off. Set GRADIO_TEMP_DIR, if at all, before the app is imported.
A report (PDF) is made in memory, on request only; the one file it leaves is the copy Gradio serves for the
download, written into the same upload folder and deleted by the same cleaner on the same schedule.

Memory: the photos kept for a second Analyze are capped in total (SESSION_MB, env SKINLESION_SESSION_MB, default
256), the least recently used let go first; an inline photo (a data URL) is held to the upload limit (MAX_FILE_MB)
by the length of its text, before it is decoded.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import ctypes
import html
import inspect
import io
import json
import os
import secrets
import threading
from datetime import datetime
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from cachetools import TTLCache
from gradio.data_classes import FileData, ImageData
from gradio.i18n import I18nData
from gradio.processing_utils import save_bytes_to_cache
from gradio.utils import get_upload_folder
from PIL import Image

from model import CheckpointError, MetadataSpec, load_classifier, open_image
from model.batching import BatchingRunner
from model.card import short_card
from model.checkpoint import read_card
from model.gradcam import overlay
from model.photo_types import meaning
from model.report import model_info, report
from model.texts import Message, has, language, locales, table, words

# Gradio's run history would keep each request's photo in the browser (read at launch): never.
os.environ["GRADIO_RUN_HISTORY"] = "False"

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
SEXES = {"female": "page.sex.female", "male": "page.sex.male", "prefer not to say": "page.sex.unknown"}  # value: text
# Up to CONCURRENCY requests are worked on at once: each decodes and checks its own photo, and their network
# calls are run together, up to MAX_BATCH at a time. Measured with benchmarks/load_test.py on 2 cores: 8 and 8
# answered about 10 % more requests per second than one network call per request with 2 at once.
CONCURRENCY, MAX_BATCH = 8, 8
SESSION_PHOTO_S = 900  # a session's last photo stays in memory this long after its last Analyze
MAX_FILE_MB = 25  # the largest photo accepted, uploaded (launch's max_file_size) or inline (a data URL)


def upload_seconds() -> int:
    """How long an uploaded file stays in the upload folder (SKINLESION_UPLOAD_SECONDS, default 300)."""
    text = os.environ.get("SKINLESION_UPLOAD_SECONDS", "300")
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"SKINLESION_UPLOAD_SECONDS must be a whole number of seconds (1 or more), got {text!r}.")
    return int(text)


def session_mb() -> int:
    """The memory for all sessions' kept photos together, in MB (SKINLESION_SESSION_MB, default 256)."""
    text = os.environ.get("SKINLESION_SESSION_MB", "256")
    if not text.isdigit():
        raise SystemExit(f"SKINLESION_SESSION_MB must be a whole number of megabytes (0 keeps none), got {text!r}.")
    return int(text)


UPLOAD_SECONDS = upload_seconds()
SESSION_MB = session_mb()
CLEAN_EVERY_S = max(1, min(60, UPLOAD_SECONDS // 5))
UPLOAD_LIFETIME_S = UPLOAD_SECONDS + CLEAN_EVERY_S  # the longest an upload can stay on disk


def load():
    """The classifier, or None and a message for the page when the weights cannot be loaded."""
    weights = os.environ.get("SKINLESION_WEIGHTS")
    try:
        return (load_classifier(weights) if weights else load_classifier()), None
    except CheckpointError as e:
        return None, f"The model could not be loaded, so photos cannot be analysed right now. ({e})"


clf, LOAD_ERROR = load()
if clf is not None:  # requests that arrive together share one network call (model/batching.py)
    clf.runner = BatchingRunner(clf.runner, max_batch=MAX_BATCH)


class SessionPhotos:
    """Each browser session's last photo, as the bytes that were uploaded, in memory for a second Analyze once its
    file is cleaned away. At most `megabytes` in all: a new photo that does not fit lets go of the least recently
    used first. Each goes `seconds` after its last Analyze, or with its session. The page's gr.State holds only
    the session's key into it, so Gradio's own per-session memory stays small."""

    def __init__(self, megabytes: int, seconds: int):
        self.photos = TTLCache(maxsize=megabytes * 2**20, ttl=seconds, getsizeof=lambda kept: len(kept[1]))
        self.lock = threading.Lock()  # up to CONCURRENCY requests are handled at once, in threads

    def put(self, session: str, key: str, data: bytes) -> None:
        with self.lock:
            self.photos.pop(session, None)
            if len(data) <= self.photos.maxsize:  # a photo larger than the whole cap is not kept
                self.photos[session] = (key, data)

    def get(self, session: str | None) -> tuple[str, bytes] | None:
        with self.lock:
            return self.photos.get(session) if session else None

    def drop(self, session: str | None) -> None:
        with self.lock:
            self.photos.pop(session, None)


SESSION_PHOTOS = SessionPhotos(SESSION_MB, SESSION_PHOTO_S)

# ---- texts: model/locales/<language>.json (model/texts.py) --------------------------------------
# The page's fixed texts reach the browser through Gradio's i18n (I18N, below), which shows them in the browser's
# language; what the server writes (an answer, a message) follows the same browser's Accept-Language header.
def reader(request: gr.Request | None) -> str:
    """The language of the person behind a request (model.texts.language); English without one (a program)."""
    return language(request.headers.get("accept-language") if request else None)


def duration(seconds: int, lang: str = "en") -> str:
    if seconds < 120:
        return words("time.seconds", lang, n=seconds)
    return words("time.minutes", lang, n=round(seconds / 60))


def percent(p: float, lang: str = "en") -> str:
    return words("percent", lang, value=100 * p)


def error(text: str, lang: str = "en") -> gr.Error:
    """A message for the person, titled in their language (Gradio's own title is the English "Error")."""
    return gr.Error(text, title=words("error.title", lang), print_exception=False)


def said(e: ValueError, lang: str) -> str:
    """A bad-input message in the reader's language (the library raises texts.Message), else as it was raised."""
    return e.say(lang) if isinstance(e, Message) else str(e)


def class_name(c: str, lang: str = "en") -> str:
    return words(f"class.{c}", lang) if has(f"class.{c}") else clf.names[c]


def site_name(site: str, lang: str = "en") -> str:
    """A canonical body site in plain words ("posterior torso": "Back"); a site new to the texts as it is."""
    return words(f"site.{site}", lang) if has(f"site.{site}") else site.capitalize()


# ---- the example gallery (examples/gallery.csv, chosen by examples/pick_gallery.py) --------------
def gallery_rows() -> pd.DataFrame:
    return pd.read_csv(EXAMPLES / "gallery.csv", dtype=str, keep_default_na=False)


def caption(r, lang: str = "en") -> str:
    """Under a thumbnail: the true diagnosis, short, and the kind of photo ("Melanoma · dermoscopy")."""
    short = words(f"diagnosis.{r.diagnosis}.short", lang)
    return short if r.kind == "not skin" else f"{short} · {words(f'kind.{r.kind}', lang)}"


def truth_text(r, lang: str = "en") -> str:
    """Beside the answer: what the example truly is (gallery.csv's `truth` is the same, in English)."""
    return words(f"example.{r.kind.replace(' ', '_')}", lang, truth=words(f"diagnosis.{r.diagnosis}", lang))


def example_items(lang: str = "en") -> list[tuple[str, str]]:
    return [(str(EXAMPLES / r.file), caption(r, lang)) for r in gallery_rows().itertuples()]


def example_inputs(spec: MetadataSpec, r) -> list:
    """A gallery row as the form's values: [photo, age, sex, site], the site in the dropdown's canonical words."""
    age = spec.parse_age(r.age)
    return [str(EXAMPLES / r.file), "" if age is None else f"{age:g}", spec.parse_sex(r.sex) or "prefer not to say",
            spec.parse_site(r.site) or ""]


# ---- one request ---------------------------------------------------------------------------------
def photo_bytes(photo: dict, session: str | None, lang: str = "en") -> tuple[str, bytes]:
    """The photo in Gradio's raw payload as (key, bytes): a file in the upload folder, or inline base64 (webcam).

    The file is only read, never deleted: identical uploads share it, and Gradio's cache cleaner removes it later.
    `session` is this page's key into SESSION_PHOTOS, for a second Analyze once the file has been cleaned away.
    """
    url = photo.get("url") or ""
    if url.startswith("data:"):
        return url[:64], inline_bytes(url, lang)
    key = photo.get("path") or url
    path = Path(photo.get("path") or "").resolve()
    if Path(get_upload_folder()).resolve() in path.parents and path.is_file():
        return key, path.read_bytes()  # at most max_file_size; kept compressed for a second Analyze
    kept = SESSION_PHOTOS.get(session)
    if kept and kept[0] == key:
        return kept
    raise error(words("photo.gone", lang, duration=duration(UPLOAD_SECONDS, lang)), lang)


def inline_bytes(url: str, lang: str = "en") -> bytes:
    """A data URL's photo, refused undecoded when it is larger than an upload may be: judged by the length of the
    base64 text (4 characters for 3 bytes), so an oversized one costs no more memory than its request did."""
    text = url.partition(",")[2]
    size = len(text) * 3 // 4
    if size > MAX_FILE_MB * 2**20:
        raise error(words("photo.too_large", lang, size_mb=size / 2**20, limit_mb=MAX_FILE_MB), lang)
    try:
        return base64.b64decode(text)
    except binascii.Error:
        raise error(words("photo.damaged", lang), lang) from None


HEATMAP_SIZE = 768  # the heatmap is shown at most this large; a phone photo would make a megabytes-long URL


def heatmap_image(image, cam):
    """The Grad-CAM map over a copy of the photo at most HEATMAP_SIZE pixels wide: drawn small, not shrunk after."""
    w, h = image.size
    scale = HEATMAP_SIZE / max(w, h)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return overlay(image, cam)


def data_url(img, fmt: str = "JPEG") -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def inline_image(img) -> dict:
    """A PIL image as an inline data URL for gr.Image: it is never written to disk."""
    return ImageData(url=data_url(img), orig_name="heatmap.jpg", mime_type="image/jpeg").model_dump()


def colour_key() -> str:
    """The heatmap's colour key: model.gradcam.overlay of a left-to-right ramp on a plain skin tone, as the app
    draws it."""
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    square = overlay(Image.new("RGB", (256, 256), (214, 178, 160)), ramp)
    return data_url(square.crop((0, 112, 256, 144)), "PNG")


def verdict(pred, lang: str = "en", size: tuple[int, int] | None = None, cautions: list[str] = ()) -> str:
    """What a worried person reads first: the risk level, what to do, why that level when the longest bar is not a
    cancer, how far to trust the kind of photo, the values given (`cautions`) and the photo (its `size` fills in
    the warnings)."""
    if not pred.in_scope:
        return f"## {words('refusal.title', lang)}\n{words('refusal.' + pred.refusal_reason, lang)}"
    advice = words(f"risk.{pred.advice_code}", lang) if pred.advice_code else pred.advice
    parts = [f"## {words('risk.title.' + pred.risk, lang)}", f"**{advice}**"]
    cause = clf.risk_cause(pred) if clf else None
    if cause and pred.label in ("benign", "no_lesion"):  # the longest bar must not read as the answer
        level, what, chance, threshold = cause
        parts.append(words(f"answer.why.{what}.{level}", lang, top=class_name(pred.label, lang),
                           chance=percent(chance, lang), threshold=percent(threshold, lang)))
    if pred.photo_type is not None:
        parts.append(meaning(pred.photo_type, lang))
    if cautions:
        parts.append(f"**{words('answer.caution', lang)}**\n" + "\n".join(f"- {c}" for c in cautions))
    warnings = pred.warnings if size is None else [words(f"warning.{code}", lang, width=size[0], height=size[1])
                                                   for code in pred.warning_codes]
    if warnings:
        parts.append(f"**{words('answer.about_photo', lang)}**\n" + "\n".join(f"- {w}" for w in warnings))
    if pred.advice_code == "low":
        parts.append(words("answer.abcde", lang))
    return "\n\n".join(parts)


def caution_lines(age, site, lang: str = "en") -> list[str]:
    """Cautions for the values the model barely saw in training (a child's age, a rare body site)."""
    return [words(f"caution.{code}", lang, site=site_name(spec.parse_site(site) or "", lang))
            for code in spec.rarely_seen(age, site)]


def hottest(cam: np.ndarray) -> str:
    """Where a heatmap is strongest, in a 3x3 grid over the photo's centred square: "middle", "top_left"..."""
    y, x = np.unravel_index(np.argmax(cam), cam.shape)
    row = ("top", "", "bottom")[int((y + 0.5) * 3 / cam.shape[0])]
    col = ("left", "", "right")[int((x + 0.5) * 3 / cam.shape[1])]
    return "_".join(part for part in (row, col) if part) or "middle"


def looked(pred, lang: str = "en") -> dict[str, str]:
    """The heatmap in words: its alt text (the top answer and where the map is strongest) and the sentence under
    it. An empty map (Grad-CAM all zero: no colour at all) gets sentences of its own."""
    label, chance = class_name(pred.label, lang), percent(pred.probabilities[pred.label], lang)
    if not pred.heatmap.any():
        return {"alt": words("heatmap.alt_empty", lang, label=label, chance=chance),
                "how": words("heatmap.empty", lang)}
    region = words(f"region.{hottest(pred.heatmap)}", lang)
    return {"alt": words("heatmap.alt", lang, label=label, chance=chance, region=region),
            "how": words("heatmap.how", lang)}


def _release_memory():
    """Hand freed memory back to the OS: glibc keeps freed blocks (decoded photos, tensors), so RSS would creep."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def predicted(photo, age, sex, site, session=None, lang: str = "en"):
    """(prediction, the photo as decoded, (key, bytes)): the first steps of every endpoint. Bad input: gr.Error, in
    the reader's language."""
    try:
        if clf is None:
            raise error(LOAD_ERROR, lang)
        if not photo or not isinstance(photo, dict):
            raise error(words("error.no_photo", lang), lang)
        key, source = photo_bytes(photo, session, lang)
        try:
            image = open_image(source)
            pred = clf.predict(image, age, sex, site)  # with its Grad-CAM map, from the same forward pass
        except ValueError as e:  # ImageError is a ValueError; the messages are written for people
            raise error(said(e, lang), lang) from None
    finally:
        _release_memory()
    return pred, image, (key, source)


def analyze(photo, age=None, sex=None, site=None, session=None, request: gr.Request = None):
    """Raw Gradio payloads in, raw payloads out (see the module docstring): label, verdict, heatmap, session key,
    and the heatmap in words (for the page: see looked). All in the language of the reader's browser.

    `session` is this browser session's key into SESSION_PHOTOS, which keeps its photo as the bytes that were
    uploaded (compressed, and decoded the same way again), in memory only (never on disk), so that Analyze can run
    again on the same photo, e.g. after the age was changed, once its file is cleaned away.
    """
    lang = reader(request)
    pred, image, (key, source) = predicted(photo, age, sex, site, session, lang)
    session = session or secrets.token_urlsafe(16)
    SESSION_PHOTOS.put(session, key, source)
    if not pred.in_scope:
        return {}, verdict(pred, lang), None, session, None
    label = results.postprocess({class_name(c, lang): p for c, p in pred.probabilities.items()})
    return (label.model_dump(), verdict(pred, lang, image.size, caution_lines(age, site, lang)),
            inline_image(heatmap_image(image, pred.heatmap)), session, looked(pred, lang))


# ---- the API for programs (README: The API) ------------------------------------------------------
def assessment(pred, image) -> dict:
    """One answer as plain JSON: what the page shows, as codes and numbers a program can use."""
    answer = {"risk": pred.risk, "advice": pred.advice, "in_scope": pred.in_scope}
    if not pred.in_scope:
        answer["refusal_reason"] = pred.refusal_reason
    answer.update(probabilities=pred.probabilities, label=pred.label if pred.in_scope else None,
                  photo_type=pred.photo_type,
                  warnings=[{"code": c, "text": t} for c, t in zip(pred.warning_codes, pred.warnings, strict=True)])
    if pred.in_scope:
        answer["heatmap"] = data_url(heatmap_image(image, pred.heatmap), "PNG")
    answer["model"] = model_info(clf.config)
    return answer


def assess(photo: FileData, age: float | None = None, sex: str | None = None, site: str | None = None) -> dict:
    """The answer as one JSON object: risk, advice, in_scope, refusal_reason (only when refused), probabilities
    (by class id), label (None when refused), photo_type, warnings, heatmap (a PNG data URL; absent when refused),
    model (weights_sha256, input_size). Age, sex and site may be left out."""
    pred, image, _ = predicted(photo, age, sex, site)
    return assessment(pred, image)


def report_path(photo, age=None, sex=None, site=None, session=None, lang: str = "en") -> str:
    """The answer as a one-page PDF, made in memory, in the reader's language. The one file written is the copy
    Gradio serves, in its upload folder, where Gradio's cache cleaner deletes it as it does an upload."""
    pred, image, _ = predicted(photo, age, sex, site, session, lang)
    names = {c: class_name(c, lang) for c in clf.classes}
    given_sex = words(SEXES[sex], lang) if sex in SEXES else sex  # the values as the form shows them
    given_site = site_name(spec.parse_site(site), lang) if spec.parse_site(site) else site
    pdf = report(pred, image, names, model_info(clf.config), age, given_sex, given_site, lang=lang)
    return save_bytes_to_cache(pdf, f"skin-spot-report-{datetime.now():%Y-%m-%d-%H%M}.pdf", demo.GRADIO_CACHE)


def report_file(photo: FileData, age: float | None = None, sex: str | None = None,
                site: str | None = None) -> FileData:
    """The same answer as a one-page PDF to take to a doctor: the photo and the heatmap, the risk level and what
    to do, the four probabilities, the kind of photo, the warnings, the date and time, the model, the disclaimer."""
    path = report_path(photo, age, sex, site)
    return FileData(path=path, orig_name=Path(path).name, mime_type="application/pdf")


def api(fn, name: str, result: str) -> None:
    """gr.api(fn): an endpoint typed by fn's signature, so an argument with a default of None is optional. Its
    parameters are named as fn's, and its result `result` (gr.api labels them "1st", "2nd"...)."""
    fn.__signature__ = inspect.signature(fn, eval_str=True)  # gr.api reads the return type unresolved
    dep = gr.api(fn, api_name=name)
    for block_id, label in zip(dep["inputs"], fn.__signature__.parameters, strict=True):
        demo.blocks[block_id].label = label
    demo.blocks[dep["outputs"][0]].label = result


# ---- the page ------------------------------------------------------------------------------------
# Phone first (390 px): the examples right under the form, no thumbnail caption over its picture, dropdowns wide
# enough for their words; the risk level outranks the class bars; a visible focus ring; WCAG AA contrast (the
# theme's orange darkened one step for white text on it, tests/test_browser.py checks with axe-core).
CSS = """
#verdict h2 { font-size: 1.9rem; margin: 0 0 .4rem; }
#estimate .output-class { display: none; }
#about-card table { display: block; overflow-x: auto; }  /* a phone scrolls the card sideways, words stay whole */
#about-card th, #about-card td { word-break: normal; overflow-wrap: normal; hyphens: auto; min-width: 7em; }
#heatmap-key img { width: 100%; max-width: 320px; height: 18px; border-radius: 4px; display: block; }
#heatmap-key .ends { display: flex; justify-content: space-between; max-width: 320px; font-size: .85rem; }
.form-row input { text-overflow: ellipsis; }
#photo .or { color: inherit; }
#examples label[data-testid="block-label"] { position: static !important; margin-bottom: .4rem; }
#examples .grid-wrap { height: auto !important; min-height: 0 !important; max-height: none !important; }
#examples .grid-container { padding-top: 0 !important; grid-template-rows: none !important; }
#examples .thumbnail-item { display: flex; flex-direction: column; height: auto; aspect-ratio: auto; }
#examples .thumbnail-item img { aspect-ratio: 1 / 1; height: auto; flex: none; }
#examples .caption-label { position: static; max-width: none; white-space: normal; overflow: visible; opacity: 1;
  text-overflow: clip; overflow-wrap: anywhere; line-height: 1.25; margin: 0; padding: 3px 3px 5px; border: none;
  border-radius: 0; background: none; color: var(--body-text-color); font-size: .75rem; text-align: left; }
:focus-visible { outline: 3px solid #1d4ed8 !important; outline-offset: 2px; }
.dark :focus-visible { outline-color: #93c5fd !important; }
footer, footer a, footer button { color: var(--body-text-color) !important; opacity: 1 !important; }
#disclaimer { border-left: 4px solid var(--color-accent); padding-left: .8rem; }
"""
# The system's own fonts: the page fetches no font file, from here or elsewhere.
FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Noto Sans", "Helvetica Neue", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "DejaVu Sans Mono", "monospace"]
THEME = gr.themes.Default(font=FONTS, font_mono=MONO).set(
    button_primary_background_fill="*primary_700", button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover="*primary_800", button_primary_background_fill_hover_dark="*primary_800",
    color_accent="*primary_700")


def page_texts(lang: str) -> dict[str, str]:
    """Everything the page shows before an answer, in one language, ready to show: Gradio's i18n picks the
    browser's language. One key a string, so the few texts made of several are put together here."""
    t = {k: v for k, v in table(lang).items() if k.startswith(("page.", "site.", "report.")) or k == "error.load.title"}
    privacy = words("page.privacy", lang, upload=duration(UPLOAD_LIFETIME_S, lang),
                    session=duration(SESSION_PHOTO_S, lang))
    t["page.heading"] = f"# {t['page.title']}\n{t['page.intro']}"
    t["page.disclaimer"] = f"**{words('disclaimer', lang)}**\n\n*{privacy}*"
    t["page.heatmap.how"] = words("heatmap.how", lang)
    key = {k: html.escape(t[f"page.key.{k}"]) for k in ("alt", "none", "most")}
    t["page.key"] = (f'<div id="heatmap-key"><img src="{COLOUR_KEY}" alt="{key["alt"]}"><div class="ends">'
                     f'<span>{key["none"]}</span><span>{key["most"]}</span></div></div>')
    t["page.attribution"] = f"<small>\n\n{t['page.attribution']}\n\n</small>"
    t["page.card"] = short_card(read_card(clf.weights_dir), lang) if clf else LOAD_ERROR
    return t


COLOUR_KEY = colour_key()
I18N = gr.I18n(**{code: page_texts(lang) for code, lang in locales().items()})


def site_label(site: str):
    return I18N(f"site.{site}") if has(f"site.{site}") else site.capitalize()


# A new answer out of sight (on a phone it comes below the form and the examples): bring it into view.
SHOW_ANSWER = """() => { const e = document.getElementById('verdict'); const top = e?.getBoundingClientRect().top;
  if (e && (top < 0 || top > innerHeight / 2)) e.scrollIntoView({block: 'start'}); }"""
# Gradio's own labels for screen readers that its i18n leaves in English, and the texts of ours that replace them.
GRADIO_LABELS = {"Upload file": "upload", "File upload": "upload", "Capture from camera": "camera",
                 "Paste from clipboard": "paste", "Close": "close", "Fullscreen": "fullscreen",
                 "Remove Image": "remove", "Gradio footer navigation": "footer", "Stop Recording": "stop"}
ARIA = {code: {en: words(f"page.aria.{key}", lang) for en, key in GRADIO_LABELS.items()}
        for code, lang in locales().items()}
# When the page opens: the tab's title in the page's language; the answer is read out when it changes; an example's
# button is named by its caption (Gradio names it "Thumbnail 1 of 6"), its picture then left out as decoration; the
# model card's tables, which a phone scrolls sideways, can be scrolled from the keyboard;
# Gradio's English labels (aria-label, title, alt) get the page's language, also on the parts drawn later.
ON_LOAD = """() => { document.title = document.querySelector('#title h1')?.textContent || document.title;
  document.getElementById('verdict')?.setAttribute('aria-live', 'polite');
  const names = ARIA[document.documentElement.lang] || {};
  const name = () => { document.querySelectorAll('#examples button.thumbnail-item').forEach(b => {
      const text = b.querySelector('.caption-label')?.textContent?.trim();
      if (text && b.getAttribute('aria-label') !== text) b.setAttribute('aria-label', text);
      b.querySelector('img')?.setAttribute('alt', ''); });
    document.querySelectorAll('#about-card table').forEach(t => t.setAttribute('tabindex', '0'));  // it may scroll
    for (const attr of ['aria-label', 'title', 'alt'])
      document.querySelectorAll(`[${attr}]`).forEach(e => { const text = names[e.getAttribute(attr)];
        if (text) e.setAttribute(attr, text); }); };
  new MutationObserver(name).observe(document.body, {subtree: true, childList: true, characterData: true});
  name(); }""".replace("ARIA", json.dumps(ARIA, ensure_ascii=False))
# The report is made when the button is pressed; then the browser is told to save it (its link stays shown too).
SAVE_REPORT = """(file) => { if (!file?.url) return; const a = document.createElement('a');
  a.href = file.url; a.download = file.orig_name || 'report.pdf'; document.body.append(a); a.click(); a.remove(); }"""
LAUNCH = {"css": CSS, "theme": THEME, "i18n": I18N,  # launch() options; the tests launch the app with them too
          "max_file_size": f"{MAX_FILE_MB}mb"}

spec = clf.spec if clf else MetadataSpec()
gallery = gallery_rows()
with gr.Blocks(title="Skin spot check", analytics_enabled=False, delete_cache=(CLEAN_EVERY_S, UPLOAD_SECONDS)) as demo:
    gr.Markdown(I18N("page.heading"), elem_id="title")
    if LOAD_ERROR:
        gr.Markdown("## " + I18N("error.load.title") + f"\n{LOAD_ERROR}", elem_id="load-error")
    with gr.Row():
        with gr.Column():
            photo = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label=I18N("page.photo"),
                             alt_text=I18N("page.photo.alt"), elem_id="photo")
            gr.Markdown(I18N("page.tips"))
            # One row on a desktop, one field a row on a phone: every label and value fits its box.
            with gr.Row(elem_classes="form-row"):
                # A text box, not gr.Number: the browser sends a Number box left alone as 0, a newborn's age.
                age = gr.Textbox(label=I18N("page.age"), placeholder=I18N("page.age.placeholder"), max_lines=1,
                                 min_width=150, scale=1, elem_id="age")
                sex = gr.Dropdown([(I18N(key), value) for value, key in SEXES.items()], value="prefer not to say",
                                  label=I18N("page.sex"), min_width=190, scale=1, elem_id="sex")
                site = gr.Dropdown([(I18N("page.site.unknown"), "")] + [(site_label(s), s) for s in spec.sites],
                                   value="", label=I18N("page.site"), min_width=190, scale=1, elem_id="site")
            with gr.Row(elem_id="actions"):  # Analyze wide, under the thumb; Clear small, apart from it
                clear_btn = gr.ClearButton(value=I18N("page.clear"), scale=0, min_width=100, elem_id="clear")
                analyze_btn = gr.Button(I18N("page.analyze"), variant="primary", scale=1, min_width=160,
                                        elem_id="analyze")
            # No toolbar (its "Download All" would be a tab stop): a thumbnail is a button that analyses it.
            examples = gr.Gallery(example_items(), label=I18N("page.examples"), columns=3, height="auto",
                                  allow_preview=False, object_fit="cover", interactive=False, buttons=[],
                                  elem_id="examples")
        with gr.Column():
            answer = gr.Markdown(label="Verdict", elem_id="verdict")  # the label names it in the API
            truth = gr.Markdown(elem_id="truth")
            with gr.Column(visible=False, elem_id="why") as why:
                gr.Markdown("### " + I18N("page.why"))
                results = gr.Label(num_top_classes=4, label="Class probabilities", show_label=False, show_heading=False,
                                   elem_id="estimate")
                # the label names the output in the API, so it stays plain English; the reader's title is above it
                gr.Markdown("#### " + I18N("page.heatmap"), elem_id="heatmap-title")
                heatmap = gr.Image(label="Heatmap", show_label=False, interactive=False, buttons=["fullscreen"],
                                   elem_id="heatmap")  # no share button: it would post the photo's heatmap online
                gr.HTML(I18N("page.key"))
                heatmap_how = gr.Markdown(I18N("page.heatmap.how"), elem_id="heatmap-how")
            with gr.Column(visible=False, elem_id="report-box") as report_box:
                report_btn = gr.Button(I18N("report.button"), elem_id="report-button")
                report_out = gr.File(label=I18N("report.file"), visible=False, interactive=False, elem_id="report")
            gr.Markdown(I18N("page.disclaimer"), elem_id="disclaimer")
    gr.Markdown(I18N("page.attribution"), elem_id="attribution")
    with gr.Accordion(I18N("page.about"), open=False):
        gr.Markdown(I18N("page.card"), elem_id="about-card")

    # this session's key into SESSION_PHOTOS (its photo, in memory, for a second Analyze)
    last_photo = gr.State(None, time_to_live=SESSION_PHOTO_S, delete_callback=SESSION_PHOTOS.drop)
    seen = gr.State(None)  # the heatmap in words (analyze's looked), for its alt text and the sentence under it
    outputs = [results, answer, heatmap, last_photo, seen]

    def show_why(label, seen):  # and the report button, also after a refusal; an earlier report's file goes
        described = (gr.Image(alt_text=seen["alt"]), seen["how"]) if seen else (gr.skip(), gr.skip())
        return gr.Column(visible=bool(label)), gr.Column(visible=True), gr.File(value=None, visible=False), *described

    def show_report(photo, age, sex, site, session, request: gr.Request):
        return gr.File(value=report_path(photo, age, sex, site, session, reader(request)), visible=True)

    def pick_example(evt: gr.SelectData, request: gr.Request):
        r = next(gallery.iloc[[evt.index]].itertuples())
        return *example_inputs(spec, r), truth_text(r, reader(request))

    def in_readers_language(request: gr.Request):  # what the server writes on the page: the gallery's captions
        return gr.Gallery(example_items(reader(request)))

    def start():  # a new answer is coming: nothing of the last one may stay beside it
        return "", gr.Column(visible=False), gr.Column(visible=False)

    shown = [why, report_box, report_out, heatmap, heatmap_how]
    demo.load(in_readers_language, None, examples, api_visibility="private", show_progress="hidden", js=ON_LOAD)
    analyze_btn.click(start, None, [answer, why, report_box], api_visibility="private", show_progress="hidden").then(
        analyze, [photo, age, sex, site, last_photo], outputs, api_name="predict", preprocess=False, postprocess=False,
        show_progress_on=[answer]).success(show_why, [results, seen], shown, api_visibility="private",
                                           show_progress="hidden").then(None, js=SHOW_ANSWER)
    examples.select(pick_example, None, [photo, age, sex, site, truth], api_visibility="private").then(
        start, None, [answer, why, report_box], api_visibility="private", show_progress="hidden").then(
        analyze, [photo, age, sex, site, last_photo], outputs, api_visibility="private", preprocess=False,
        postprocess=False, show_progress_on=[answer]).success(show_why, [results, seen], shown,
                                                              api_visibility="private", show_progress="hidden").then(
        None, js=SHOW_ANSWER)
    for event in (photo.upload, photo.input, photo.clear):  # the person's own photo: not an example any more
        event(lambda: ("", "", gr.Column(visible=False), gr.Column(visible=False)), None,
              [truth, answer, why, report_box], api_visibility="private", show_progress="hidden")
    for event in (age.input, sex.input, site.input):  # the report is of the answer shown: Analyze again first
        event(lambda: gr.Column(visible=False), None, report_box, api_visibility="private", show_progress="hidden")
    report_btn.click(show_report, [photo, age, sex, site, last_photo], report_out, api_visibility="private",
                     preprocess=False, show_progress_on=[report_out]).success(None, report_out, None, js=SAVE_REPORT)
    clear_btn.add([photo, age, sex, site, results, answer, heatmap, truth])
    clear_btn.click(lambda: (None, gr.Column(visible=False), gr.Column(visible=False)), None,
                    [last_photo, why, report_box], api_visibility="private")
    api(assess, "assess", "assessment")
    api(report_file, "report", "report")


def labelled_in_english(get_api_info):
    """Gradio's API description gives a translated label as its key (view_api shows {"key": "page.age", ...}):
    a program reads the English words instead."""
    def described(*args, **kwargs):
        info = get_api_info(*args, **kwargs)
        for endpoint in (e for group in info.values() for e in group.values()):
            for p in endpoint["parameters"] + endpoint["returns"]:
                if isinstance(p.get("label"), I18nData):
                    p["label"] = I18N.translations["en"].get(p["label"].key, p["label"].key)
        return info
    return described


demo.get_api_info = labelled_in_english(demo.get_api_info)
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=32)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", action="store_true", help="also create a temporary public gradio.live link")
    demo.launch(share=parser.parse_args().share, **LAUNCH)

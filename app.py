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
"""
from __future__ import annotations

import argparse
import base64
import ctypes
import io
import os
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
from gradio.data_classes import ImageData
from gradio.utils import get_upload_folder
from PIL import Image

from model import CheckpointError, MetadataSpec, load_classifier, open_image
from model.batching import BatchingRunner
from model.gradcam import overlay
from model.photo_types import meaning
from model.photo_types import name as photo_type_name
from model.texts import words

# Gradio's run history would keep each request's photo in the browser (read at launch): never.
os.environ["GRADIO_RUN_HISTORY"] = "False"

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
SEXES = ["female", "male", "prefer not to say"]
UNKNOWN_SITE = ("Unknown", "")
# Up to CONCURRENCY requests are worked on at once: each decodes and checks its own photo, and their network
# calls are run together, up to MAX_BATCH at a time. Measured with benchmarks/load_test.py on 2 cores: 8 and 8
# answered about 10 % more requests per second than one network call per request with 2 at once.
CONCURRENCY, MAX_BATCH = 8, 8
SESSION_PHOTO_S = 900  # a session's last photo stays in memory this long after its last Analyze


def upload_seconds() -> int:
    """How long an uploaded file stays in the upload folder (SKINLESION_UPLOAD_SECONDS, default 300)."""
    text = os.environ.get("SKINLESION_UPLOAD_SECONDS", "300")
    if not text.isdigit() or int(text) < 1:
        raise SystemExit(f"SKINLESION_UPLOAD_SECONDS must be a whole number of seconds (1 or more), got {text!r}.")
    return int(text)


UPLOAD_SECONDS = upload_seconds()
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

# ---- texts ---------------------------------------------------------------------------------------
def duration(seconds: int) -> str:
    return f"{seconds} seconds" if seconds < 120 else f"{round(seconds / 60)} minutes"


PRIVACY = ("*Privacy: your photo is analysed in memory and nothing is logged. The uploaded file is kept in the "
           f"server's upload folder for at most {duration(UPLOAD_LIFETIME_S)}, then deleted. So that you can press "
           "Analyze again (say, after adding your age), a copy stays in the server's memory, for your page only, for "
           f"{duration(SESSION_PHOTO_S)} after your last Analyze.*")

DISCLAIMER = """**Educational tool, not a medical device and not a diagnosis.** It can be wrong in both directions.
See a dermatologist about any spot that worries you, or that changes, bleeds or itches,
whatever this page says.

""" + PRIVACY

PHOTO_TIPS = """**Tips for a good photo:** fill most of the frame with the spot, hold the camera steady so it is sharp,
use good even daylight (no flash, no harsh shadow), and photograph one spot at a time.
"""

RISK_TITLE = {"high": "Risk: high", "moderate": "Risk: moderate", "low": "Risk: low", "uncertain": "Risk: uncertain"}

ABCDE = """Watch for the ABCDE signs, and see a doctor if any appears:
- **A**symmetry: one half unlike the other
- **B**order: ragged, notched or blurred edge
- **C**olour: several colours or uneven shades
- **D**iameter: larger than about 6 mm (a pencil eraser)
- **E**volving: changing in size, shape or colour, or bleeding or itching
"""

HEATMAP_HOW_TO = ("The coloured patches are the parts of the photo that pushed the model most towards its top answer "
                  "(red most, blue least, no colour: not at all). They show where the model looked, not where the "
                  "disease is: if they sit beside the spot, trust the answer less.")


def attribution() -> str:
    text = (EXAMPLES / "ATTRIBUTION.md").read_text(encoding="utf-8")
    body = text.split("\n", 1)[1].strip()  # drop the "# Example images" title
    return "<small>\n\n" + body + "\n\n</small>"


# ---- the example gallery (examples/gallery.csv, chosen by examples/pick_gallery.py) --------------
KIND = {"dermoscopic": "dermoscopy", "clinical": "phone photo", "not skin": "not skin"}


def gallery_rows() -> pd.DataFrame:
    return pd.read_csv(EXAMPLES / "gallery.csv", dtype=str, keep_default_na=False)


def caption(r) -> str:
    return r.truth.split(" (")[0].split(",")[0] + ("" if r.kind == "not skin" else f" · {KIND[r.kind]}")


def truth_text(r) -> str:
    where = {"dermoscopic": "a dermoscopy image", "clinical": "a phone photo", "not skin": "a picture"}[r.kind]
    return f"**Example, {where}.** True diagnosis: **{r.truth}**."


def example_inputs(spec: MetadataSpec, r) -> list:
    """A gallery row as the form's values: [photo, age, sex, site], the site in the dropdown's canonical words."""
    age = spec.parse_age(r.age)
    return [str(EXAMPLES / r.file), "" if age is None else f"{age:g}", spec.parse_sex(r.sex) or "prefer not to say",
            spec.parse_site(r.site) or ""]


# ---- the model card, from config.json ------------------------------------------------------------
def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.1e}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def with_ci(figures: dict, key: str) -> str:
    """A figure and its 95% interval, "value (low-high)"; "-" when the figure is missing."""
    if figures.get(key) is None:
        return "-"
    low, high = figures[key + "_ci95"][0], figures[key + "_ci95"][1]
    return f"{fmt(figures[key])} ({fmt(low)}-{fmt(high)})"


def about_model(config: dict) -> str:
    """What config.json says about the test metrics, the data and the training; missing keys are skipped."""
    lines = []
    report = config.get("metrics", {}).get("test", {}).get("report", {})
    if report:
        lines.append(f"### Dermoscopy: results on the held-out test split ({report.get('n', '?')} images)")
        labels = {"macro_auc": "Macro AUC (4 classes)", "melanoma_auc": "Melanoma AUC",
                  "melanoma_auc_ci95": "Melanoma AUC, 95% CI", "malignant_auc": "Malignant (any cancer) AUC",
                  "malignant_auc_ci95": "Malignant AUC, 95% CI", "balanced_accuracy": "Balanced accuracy",
                  "ece": "Calibration error (ECE)"}
        lines += ["| Measure | Value |", "|---|---|"]
        lines += [f"| {name} | {fmt(report[k])} |" for k, name in labels.items() if k in report]
        for key, what in [("melanoma_operating_point", "melanoma"), ("malignant_operating_point", "malignant")]:
            op = report.get(key)
            if isinstance(op, dict):
                lines.append(f"| Operating point, {what} (threshold {fmt(op.get('threshold', '?'))}) | "
                             f"sensitivity {fmt(op.get('sensitivity', '?'))}, "
                             f"specificity {fmt(op.get('specificity', '?'))} |")
        rows = [(c, report[c["id"]]) for c in config.get("classes", []) if isinstance(report.get(c["id"]), dict)]
        if rows:
            lines += ["", "| Class | Images | Sensitivity | Specificity |", "|---|---|---|---|"]
            lines += [f"| {c['name']} | {m.get('n', '')} | {fmt(m.get('sensitivity', ''))} | "
                      f"{fmt(m.get('specificity', ''))} |" for c, m in rows]
    by_type = config.get("metrics", {}).get("test", {}).get("by_photo_type", {})
    if by_type:
        lines += ["", "### By kind of photo (test split, 95% intervals)",
                  "| Kind of photo | Images | Cancer vs benign AUC | Cancers flagged | Benign spots called high | "
                  "Photo kind recognised |",
                  "|---|---|---|---|---|---|"]
        for name, r in by_type.items():
            lines.append(f"| {photo_type_name(name)} | {r.get('n', '?')} | {with_ci(r, 'malignant_auc')} | "
                         f"{with_ci(r, 'sensitivity_malignant_flagged')} | {with_ci(r, 'benign_called_high')} | "
                         f"{fmt(r.get('photo_type_accuracy', '-'))} |")
        lines.append("\nPhone photos are few in the training data (446, one clinic in Brazil, 24 melanomas, "
                     "mostly light skin), so their figures have wide intervals.")
    lso = config.get("metrics", {}).get("leave_source_out", {})
    if lso:
        source = next(iter(lso.values()))["held_out_source"]
        lines += ["", f"### A collection it never saw (trained without the {source} images, then tested on them)",
                  "| Recipe | Melanoma AUC, own collections | Melanoma AUC, unseen collection | Drop |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | {fmt(r['melanoma_auc_in_source'])} | {fmt(r['melanoma_auc_held_out'])} | "
                  f"{fmt(r['melanoma_auc_drop'])} |" for name, r in lso.items()]
        lines.append("\nExpect lower figures on photos from clinics and cameras the model never saw.")
    data = config.get("data", {})
    if data:
        lines += ["", "### Data"]
        if "rows" in data:
            lines.append(f"- Images: {data['rows']}")
        if isinstance(data.get("split"), dict):
            lines.append("- Split: " + ", ".join(f"{k} {v}" for k, v in data["split"].items()))
        lines += [f"- {label}: {data[k]}" for k, label in
                  [("split_rule", "Split rule"), ("source", "Source"), ("licence", "Licence")] if k in data]
    training = config.get("training", {})
    if training:
        lines += ["", "### Training"]
        arch = config.get("architecture", {})
        backbone = arch.get("backbone") or training.get("args", {}).get("backbone")
        if backbone:
            lines.append(f"- Network: {backbone} image backbone + metadata MLP")
        lines += [f"- {label}: {training[k]}" for k, label in
                  [("epochs", "Epochs"), ("best_epoch", "Best epoch"), ("seconds", "Training time (s)"),
                   ("hardware", "Hardware"), ("finished", "Finished"), ("command", "Command")] if k in training]
        if "input_size" in config.get("preprocessing", {}):
            lines.append(f"- Input size: {config['preprocessing']['input_size']} pixels")
    return "\n".join(lines) or "config.json holds no metrics, data or training figures."


# ---- one request ---------------------------------------------------------------------------------
def photo_bytes(photo: dict, last) -> tuple[str, bytes]:
    """The photo in Gradio's raw payload as (key, bytes): a file in the upload folder, or inline base64 (webcam).

    The file is only read, never deleted: identical uploads share it, and Gradio's cache cleaner removes it later.
    `last` is this session's previous (key, bytes), for a second Analyze once the file has been cleaned away.
    """
    url = photo.get("url") or ""
    if url.startswith("data:"):
        return url[:64], base64.b64decode(url.split(",", 1)[1])
    key = photo.get("path") or url
    path = Path(photo.get("path") or "").resolve()
    if Path(get_upload_folder()).resolve() in path.parents and path.is_file():
        return key, path.read_bytes()  # at most max_file_size; kept compressed for a second Analyze
    if last and last[0] == key:
        return last
    raise gr.Error(f"This photo is no longer on the server: uploads are deleted {duration(UPLOAD_SECONDS)} after "
                   "they arrive. Please upload it again.", print_exception=False)


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


def verdict(pred) -> str:
    """What a worried person reads first: the risk level, what to do, how far to trust the photo."""
    if not pred.in_scope:
        return f"## {words('refusal.title')}\n{words('refusal.' + pred.refusal_reason)}"
    parts = [f"## {RISK_TITLE[pred.risk]}", f"**{pred.advice}**"]
    if pred.photo_type is not None:
        parts.append(meaning(pred.photo_type))
    if pred.warnings:
        parts.append("**About the photo:**\n" + "\n".join(f"- {w}" for w in pred.warnings))
    if pred.advice_code == "low":
        parts.append(ABCDE)
    return "\n\n".join(parts)


def _release_memory():
    """Hand freed memory back to the OS: glibc keeps freed blocks (decoded photos, tensors), so RSS would creep."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def analyze(photo, age, sex, site, last=None):
    """Raw Gradio payloads in, raw payloads out (see the module docstring): label, verdict, heatmap.

    `last` is this browser session's previous photo, as the bytes that were uploaded (compressed, and decoded
    the same way again), kept in memory only (never on disk), so that Analyze can run again on the same photo,
    e.g. after the age was changed, once its file is cleaned away.
    """
    try:
        if clf is None:
            raise gr.Error(LOAD_ERROR, print_exception=False)
        if not photo:
            raise gr.Error("Please upload a photo of the skin spot first (or take one with the webcam).",
                           print_exception=False)
        key, source = photo_bytes(photo, last)
        try:
            image = open_image(source)
            pred = clf.predict(image, age, sex, site)  # with its Grad-CAM map, from the same forward pass
        except ValueError as e:  # ImageError is a ValueError; the messages are written for people
            raise gr.Error(str(e), print_exception=False) from None
    finally:
        _release_memory()
    if not pred.in_scope:
        return {}, verdict(pred), None, (key, source)
    label = results.postprocess({clf.names[c]: p for c, p in pred.probabilities.items()})
    return label.model_dump(), verdict(pred), inline_image(heatmap_image(image, pred.heatmap)), (key, source)


# ---- the page ------------------------------------------------------------------------------------
# The examples' columns and the form's dropdowns fit a 390 px phone; the risk level outranks the class bars.
CSS = """
#verdict h2 { font-size: 1.9rem; margin: 0 0 .4rem; }
#estimate .output-class { display: none; }
#heatmap-key img { width: 100%; max-width: 320px; height: 18px; border-radius: 4px; display: block; }
#heatmap-key .ends { display: flex; justify-content: space-between; max-width: 320px; font-size: .85rem; }
.form-row input { text-overflow: ellipsis; padding-right: 2rem !important; }
#examples .grid-wrap { height: auto !important; min-height: 0 !important; max-height: none !important; }
#examples .grid-container { padding-top: 2rem; }
#examples .caption-label { white-space: normal; overflow: visible; text-overflow: clip; line-height: 1.2; }
@media (max-width: 640px) { #examples .grid-container { --grid-cols: 3 !important; } }
"""
# After an example is picked the answer appears above the gallery: bring it into view (a phone shows one column).
SHOW_ANSWER = "() => document.getElementById('verdict')?.scrollIntoView({block: 'start'})"
LAUNCH = {"css": CSS, "max_file_size": "25mb"}  # launch() options; the tests launch the app with them too

spec = clf.spec if clf else MetadataSpec()
gallery = gallery_rows()
with gr.Blocks(title="Skin spot check", analytics_enabled=False, delete_cache=(CLEAN_EVERY_S, UPLOAD_SECONDS)) as demo:
    gr.Markdown("# Skin spot check\nUpload a close-up photo of a skin spot to get an educational risk estimate. "
                "It is not a diagnosis.")
    if LOAD_ERROR:
        gr.Markdown(f"## The app is not working right now\n{LOAD_ERROR}", elem_id="load-error")
    with gr.Row():
        with gr.Column():
            photo = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Photo of the spot")
            gr.Markdown(PHOTO_TIPS)
            with gr.Row(elem_classes="form-row"):
                # A text box, not gr.Number: the browser sends a Number box left alone as 0, a newborn's age.
                age = gr.Textbox(label="Age in years (optional)", placeholder="unknown", max_lines=1, min_width=120)
                sex = gr.Dropdown(SEXES, value="prefer not to say", label="Sex (optional)", min_width=160)
                site = gr.Dropdown([UNKNOWN_SITE] + [(s.capitalize(), s) for s in spec.sites], value="",
                                   label="Body site (optional)", min_width=160)
            with gr.Row():
                clear_btn = gr.ClearButton()
                analyze_btn = gr.Button("Analyze", variant="primary")
        with gr.Column():
            answer = gr.Markdown(elem_id="verdict")
            truth = gr.Markdown(elem_id="truth")
            with gr.Column(visible=False, elem_id="why") as why:
                gr.Markdown("### Why: the model's estimate")
                results = gr.Label(num_top_classes=4, show_label=False, show_heading=False, elem_id="estimate")
                heatmap = gr.Image(label="Where the model looked (Grad-CAM)", interactive=False, elem_id="heatmap")
                gr.HTML(f'<div id="heatmap-key"><img src="{colour_key()}" alt="colour key: from no colour (not at all) '
                        f'through blue to red (most)"><div class="ends"><span>not at all</span><span>most</span></div>'
                        f'<p>{HEATMAP_HOW_TO}</p></div>')
            gr.Markdown(DISCLAIMER, elem_id="disclaimer")
    examples = gr.Gallery([(str(EXAMPLES / r.file), caption(r)) for r in gallery.itertuples()],
                          label="Examples: tap one to analyse it; its true diagnosis is shown beside the answer",
                          columns=len(gallery), height="auto", allow_preview=False, object_fit="cover",
                          interactive=False, elem_id="examples")
    gr.Markdown(attribution())
    with gr.Accordion("About the model", open=False):
        gr.Markdown(about_model(clf.config) if clf else LOAD_ERROR)

    last_photo = gr.State(None, time_to_live=SESSION_PHOTO_S)  # this session's photo, in memory, for a second Analyze
    outputs = [results, answer, heatmap, last_photo]

    def show_why(label):
        return gr.Column(visible=bool(label))

    def pick_example(evt: gr.SelectData):
        r = next(gallery.iloc[[evt.index]].itertuples())
        return *example_inputs(spec, r), truth_text(r)

    def start():  # a new answer is coming: nothing of the last one may stay beside it
        return "", gr.Column(visible=False)

    analyze_btn.click(start, None, [answer, why], api_visibility="private", show_progress="hidden").then(
        analyze, [photo, age, sex, site, last_photo], outputs, api_name="predict", preprocess=False, postprocess=False,
        show_progress_on=[answer]).success(show_why, results, why, api_visibility="private", show_progress="hidden")
    examples.select(pick_example, None, [photo, age, sex, site, truth], api_visibility="private").then(
        start, None, [answer, why], api_visibility="private", show_progress="hidden").then(
        analyze, [photo, age, sex, site, last_photo], outputs, api_visibility="private", preprocess=False,
        postprocess=False, show_progress_on=[answer]).success(show_why, results, why, api_visibility="private",
                                                              show_progress="hidden").then(None, js=SHOW_ANSWER)
    for event in (photo.upload, photo.input, photo.clear):  # the person's own photo: not an example any more
        event(lambda: ("", "", gr.Column(visible=False)), None, [truth, answer, why], api_visibility="private",
              show_progress="hidden")
    clear_btn.add([photo, age, sex, site, results, answer, heatmap, truth])
    clear_btn.click(lambda: (None, gr.Column(visible=False)), None, [last_photo, why], api_visibility="private")

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=32)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", action="store_true", help="also create a temporary public gradio.live link")
    demo.launch(share=parser.parse_args().share, **LAUNCH)

"""Gradio front end: a photo of a skin spot (and, optionally, age, sex and body site) -> four class
probabilities, a risk level in plain words, and a Grad-CAM heatmap. Knows nothing of training.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT change it)
    python app.py --share    # also a temporary public gradio.live link

Privacy: the Analyze event turns off Gradio's own pre- and postprocessing. We open the uploaded file
ourselves (so a bad file gets a clear message) and delete it right after the answer, and we send the
heatmap back inline as a data URL, so no picture derived from the photo is written to disk either.
Gradio's browser-side run history is turned off. Set GRADIO_TEMP_DIR (the upload folder), if at all,
before the app is imported.
"""
from __future__ import annotations

import argparse
import base64
import ctypes
import io
import os
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.data_classes import ImageData
from gradio.utils import get_upload_folder
from PIL import Image

from model import CheckpointError, MetadataSpec, load_classifier, open_image
from model.batching import BatchingRunner
from model.classifier import OUT_OF_SCOPE_MESSAGE
from model.gradcam import overlay

# Gradio's run history would keep each request's photo in the browser (read at launch): never.
os.environ["GRADIO_RUN_HISTORY"] = "False"

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
SEXES = ["female", "male", "prefer not to say"]
UNKNOWN_SITE = ("Unknown / prefer not to say", "")
# Up to CONCURRENCY requests are worked on at once: each decodes and checks its own photo, and their network
# calls are run together, up to MAX_BATCH at a time. Measured with benchmarks/load_test.py on 2 cores: 8 and 8
# answered about 10 % more requests per second than one network call per request with 2 at once.
CONCURRENCY, MAX_BATCH = 8, 8


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
DISCLAIMER = """\
**Educational tool, not a medical device and not a diagnosis.** It can be wrong in both directions.
See a dermatologist about any spot that worries you, or that changes, bleeds or itches,
whatever this page says.

*Privacy: your photo is analysed in memory and deleted right after the answer; nothing is stored or logged.*
"""

PHOTO_TIPS = """\
**Tips for a good photo:** fill most of the frame with the spot, hold the camera steady so it is sharp,
use good even daylight (no flash, no harsh shadow), and photograph one spot at a time.
"""

RISK_TITLE = {"high": "Risk: high", "moderate": "Risk: moderate", "low": "Risk: low", "uncertain": "Risk: uncertain"}

ABCDE = """\
Watch for the ABCDE signs, and see a doctor if any appears:
- **A**symmetry: one half unlike the other
- **B**order: ragged, notched or blurred edge
- **C**olour: several colours or uneven shades
- **D**iameter: larger than about 6 mm (a pencil eraser)
- **E**volving: changing in size, shape or colour, or bleeding or itching
"""


def attribution() -> str:
    text = (EXAMPLES / "ATTRIBUTION.md").read_text(encoding="utf-8")
    body = text.split("\n", 1)[1].strip()  # drop the "# Example images" title
    return "<small>\n\n" + body + "\n\n</small>"


def examples(spec: MetadataSpec) -> list[list]:
    """examples.csv rows as [photo, age, sex, site], the site in the dropdown's canonical words."""
    ex = pd.read_csv(EXAMPLES / "examples.csv", dtype=str, keep_default_na=False)
    return [[str(EXAMPLES / r.file), spec.parse_age(r.age), spec.parse_sex(r.sex) or "prefer not to say",
             spec.parse_site(r.site) or ""] for r in ex.itertuples()]


# ---- the model card, from config.json ------------------------------------------------------------
def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.1e}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def about_model(config: dict) -> str:
    """What config.json says about the test metrics, the data and the training; missing keys are skipped."""
    lines = []
    report = config.get("metrics", {}).get("test", {}).get("report", {})
    if report:
        lines.append(f"### Results on the held-out test split ({report.get('n', '?')} images)")
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
                             f"sensitivity {fmt(op.get('sensitivity', '?'))}, specificity {fmt(op.get('specificity', '?'))} |")
        rows = [(c, report[c["id"]]) for c in config.get("classes", []) if isinstance(report.get(c["id"]), dict)]
        if rows:
            lines += ["", "| Class | Images | Sensitivity | Specificity |", "|---|---|---|---|"]
            lines += [f"| {c['name']} | {m.get('n', '')} | {fmt(m.get('sensitivity', ''))} | {fmt(m.get('specificity', ''))} |"
                      for c, m in rows]
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
                  [("epochs", "Epochs"), ("best_epoch", "Best epoch"), ("seconds", "Training time (s)"), ("hardware", "Hardware"),
                   ("finished", "Finished"), ("command", "Command")] if k in training]
        if "input_size" in config.get("preprocessing", {}):
            lines.append(f"- Input size: {config['preprocessing']['input_size']} pixels")
    return "\n".join(lines) or "config.json holds no metrics, data or training figures."


# ---- one request ---------------------------------------------------------------------------------
def photo_source(photo: dict):
    """The image in Gradio's raw payload: a file in the upload folder, or inline base64 (webcam)."""
    url = photo.get("url") or ""
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1])
    return photo["path"]


def forget(photo: dict | None) -> None:
    """Delete the uploaded file and its folder. Only files in Gradio's upload folder, and never the examples."""
    path = photo and photo.get("path")
    if not path:
        return
    path = Path(path).resolve()
    if Path(get_upload_folder()).resolve() not in path.parents or str(path) in EXAMPLE_COPIES:
        return
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass  # not empty: another file lives there


HEATMAP_SIZE = 768  # the heatmap is shown at most this large; a phone photo would make a megabytes-long URL


def heatmap_image(image, cam):
    """The Grad-CAM map over a copy of the photo at most HEATMAP_SIZE pixels wide: drawn small, not shrunk after."""
    w, h = image.size
    scale = HEATMAP_SIZE / max(w, h)
    if scale < 1:
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return overlay(image, cam)


def inline_image(img) -> dict:
    """A PIL image as an inline data URL for gr.Image: it is never written to disk."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return ImageData(url=url, orig_name="heatmap.jpg", mime_type="image/jpeg").model_dump()


def verdict(pred) -> str:
    if not pred.in_scope:
        return f"### No assessment\n{OUT_OF_SCOPE_MESSAGE}"
    top = clf.names[pred.label]
    parts = [f"### {RISK_TITLE[pred.risk]}", pred.advice,
             f"Most likely: **{top}** ({pred.probabilities[pred.label]:.0%})."]
    if pred.risk == "low":
        parts.append(ABCDE)
    if pred.warnings:
        parts.append("**About the photo:**\n" + "\n".join(f"- {w}" for w in pred.warnings))
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
    e.g. after the age was changed, once its file is deleted.
    """
    try:
        if clf is None:
            raise gr.Error(LOAD_ERROR, print_exception=False)
        if not photo:
            raise gr.Error("Please upload a photo of the skin spot first (or take one with the webcam).",
                           print_exception=False)
        try:
            key = photo.get("path") or photo.get("url")
            source = photo_source(photo)
            if isinstance(source, str) and Path(source).is_file():
                source = Path(source).read_bytes()  # at most max_file_size; kept compressed for a second Analyze
            elif last and last[0] == key:
                source = last[1]
            image = open_image(source)
            pred = clf.predict(image, age, sex, site)  # with its Grad-CAM map, from the same forward pass
        except ValueError as e:  # ImageError is a ValueError; the messages are written for people
            raise gr.Error(str(e), print_exception=False) from None
    finally:
        forget(photo)
        _release_memory()
    if not pred.in_scope:
        return {}, verdict(pred), None, (key, source)
    label = results.postprocess({clf.names[c]: p for c, p in pred.probabilities.items()})
    return label.model_dump(), verdict(pred), inline_image(heatmap_image(image, pred.heatmap)), (key, source)


# ---- the page ------------------------------------------------------------------------------------
spec = clf.spec if clf else MetadataSpec()
with gr.Blocks(title="Skin spot check", analytics_enabled=False) as demo:
    gr.Markdown("# Skin spot check\nUpload a close-up photo of a skin spot to get an educational risk estimate.")
    gr.Markdown(DISCLAIMER, elem_id="disclaimer")
    if LOAD_ERROR:
        gr.Markdown(f"## The app is not working right now\n{LOAD_ERROR}", elem_id="load-error")
    with gr.Row():
        with gr.Column():
            photo = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"], label="Photo of the spot")
            gr.Markdown(PHOTO_TIPS)
            with gr.Row():
                age = gr.Number(label="Age in years (optional)", minimum=spec.age_range[0], maximum=spec.age_range[1])
                sex = gr.Dropdown(SEXES, value="prefer not to say", label="Sex (optional)")
                site = gr.Dropdown([UNKNOWN_SITE] + [(s.capitalize(), s) for s in spec.sites], value="",
                                   label="Body site (optional)")
            with gr.Row():
                clear_btn = gr.ClearButton()
                analyze_btn = gr.Button("Analyze", variant="primary")
        with gr.Column():
            results = gr.Label(num_top_classes=4, label="Model's estimate", elem_id="estimate")
            answer = gr.Markdown(label="Verdict", elem_id="verdict")
            heatmap = gr.Image(label="Where the model looked (Grad-CAM)", interactive=False, elem_id="heatmap")
    gr.Examples(examples(spec), [photo, age, sex, site], label="Example images (click one, then Analyze)")
    gr.Markdown(attribution())
    with gr.Accordion("About the model", open=False):
        gr.Markdown(about_model(clf.config) if clf else LOAD_ERROR)

    last_photo = gr.State(None, time_to_live=900)  # this session's photo, in memory, for a second Analyze
    analyze_btn.click(analyze, [photo, age, sex, site, last_photo], [results, answer, heatmap, last_photo], api_name="predict",
                      preprocess=False, postprocess=False)
    clear_btn.add([photo, age, sex, site, results, answer, heatmap])
    clear_btn.click(lambda: None, None, last_photo, api_visibility="private")

# Gradio copies the example images into its cache; those copies must survive forget().
EXAMPLE_COPIES = {str(Path(p).resolve()) for block in demo.blocks.values() for p in getattr(block, "keep_in_cache", ())}
demo.queue(default_concurrency_limit=CONCURRENCY, max_size=32)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", action="store_true", help="also create a temporary public gradio.live link")
    demo.launch(share=parser.parse_args().share, max_file_size="25mb")

"""A one-page PDF of one answer, to take to a doctor: the photo and the heatmap, the risk level and what to do,
the four probabilities, the kind of photo, the warnings, when and by which model, and the disclaimer.

    pdf = report(pred, image, clf.names, model_info(clf.config), age="55", sex="male", site="back")  # bytes

Made in memory with matplotlib's PDF backend (a dependency already); nothing is written to disk. The text is
embedded as TrueType, so it can be searched, copied and read aloud. The words come from model/texts.py.
"""
from __future__ import annotations

import io
import textwrap
import threading
from datetime import datetime

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from PIL import Image

from .classifier import Prediction
from .gradcam import overlay
from .photo_types import meaning
from .photo_types import name as photo_type_name
from .texts import number, words

A4 = (8.27, 11.69)  # inches
THUMBNAIL = 480     # pixels, the longer side of each picture
WRAP = 95           # characters a line of body text
STYLE = {"pdf.fonttype": 42, "font.family": "DejaVu Sans"}  # TrueType: text a reader can search and copy
_LOCK = threading.Lock()  # matplotlib's settings (rc_context) are global: one report at a time


def model_info(config: dict) -> dict:
    """What identifies the model that gave an answer: its weights' sha256 and its input size, from config.json."""
    return {"weights_sha256": config.get("weights_sha256"), "input_size": config["preprocessing"]["input_size"]}


def pictures(pred: Prediction, image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """A thumbnail of the photo, and the heatmap drawn over it (None when no assessment was made)."""
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    return thumb, None if pred.heatmap is None else overlay(thumb, pred.heatmap)


def sections(pred: Prediction, names: dict[str, str], size: tuple[int, int], lang: str) -> list[tuple[str, str]]:
    """(heading, text) pairs below the verdict, in reading order."""
    if not pred.in_scope:
        return [(words("report.what_to_do", lang), words(f"refusal.{pred.refusal_reason}", lang))]
    width, height = size
    warnings = [words(f"warning.{code}", lang, width=width, height=height) for code in pred.warning_codes]
    kind = (f"{photo_type_name(pred.photo_type, lang)}. {meaning(pred.photo_type, lang)}" if pred.photo_type
            else words("report.photo_type_unknown", lang))
    return [(words("report.what_to_do", lang), words(f"risk.{pred.advice_code}", lang)),
            (words("report.probabilities", lang),
             "\n".join(f"{names[c]}: " + words("percent.one_decimal", lang, value=number(100 * p, 1, lang))
                       for c, p in pred.probabilities.items())),
            (words("report.photo_type", lang), kind),
            (words("report.warnings", lang),
             "\n".join(f"- {w}" for w in warnings) or words("report.no_warnings", lang))]


def wrapped(text: str) -> str:
    return "\n".join(textwrap.fill(line, WRAP, subsequent_indent="  " if line.startswith("- ") else "")
                     for line in text.split("\n"))


def report(pred: Prediction, image: Image.Image, names: dict[str, str], model: dict, age=None, sex=None, site=None,
           when: datetime | None = None, lang: str = "en") -> bytes:
    """The PDF as bytes. `image` is the photo as decoded for the answer; age, sex and site as they were given."""
    with _LOCK, rc_context(STYLE):
        buf = io.BytesIO()
        page(pred, image, names, model, (age, sex, site), when, lang).savefig(
            buf, format="pdf", metadata={"Title": words("report.title", lang), "Creator": "Skin spot check"})
    return buf.getvalue()


def page(pred: Prediction, image: Image.Image, names: dict[str, str], model: dict, given: tuple, when, lang: str):
    """The report's page as a matplotlib Figure (A4)."""
    when = (when or datetime.now()).astimezone()
    photo, heatmap = pictures(pred, image)
    title = words(f"risk.title.{pred.risk}", lang) if pred.in_scope else words("refusal.title", lang)
    unknown = words("report.unknown", lang)
    given = words("report.given", lang, **{k: (str(v).strip() or unknown) if v is not None else unknown
                                          for k, v in zip(("age", "sex", "site"), given, strict=True)})
    made = words("report.made", lang, when=when.strftime("%Y-%m-%d %H:%M %Z"),
                 sha=(model["weights_sha256"] or "?")[:12], size=model["input_size"])
    fig = Figure(figsize=A4)
    fig.text(0.07, 0.955, words("report.title", lang), fontsize=17, weight="bold", va="top")
    for x, picture, label in ((0.07, photo, "report.photo"), (0.52, heatmap, "report.heatmap")):
        ax = fig.add_axes((x, 0.66, 0.41, 0.25))
        ax.set_axis_off()
        ax.set_title(words(label, lang), fontsize=10, loc="left")
        if picture is None:
            ax.text(0.5, 0.5, words("report.no_heatmap", lang), ha="center", va="center", fontsize=9)
        else:
            ax.imshow(np.asarray(picture), interpolation="bilinear")
    y = 0.635
    fig.text(0.07, y, title, fontsize=16, weight="bold", va="top")
    y -= 0.04
    for heading, text in sections(pred, names, image.size, lang):
        fig.text(0.07, y, heading, fontsize=11, weight="bold", va="top")
        body = wrapped(text)
        fig.text(0.07, y - 0.02, body, fontsize=9, va="top", linespacing=1.4)
        y -= 0.035 + 0.0155 * (body.count("\n") + 1)
    fig.text(0.07, y, wrapped(given), fontsize=9, va="top")
    fig.text(0.07, 0.115, words("report.disclaimer_title", lang), fontsize=11, weight="bold", va="top")
    fig.text(0.07, 0.095, wrapped(words("disclaimer", lang)), fontsize=9, va="top", linespacing=1.4)
    fig.text(0.07, 0.035, made, fontsize=8, color="#555555", va="top")
    return fig

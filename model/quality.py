"""Cheap image-quality checks on one small thumbnail. They warn; they never block a prediction."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageStat

from .texts import words

MIN_GOOD_SIDE = 224  # a photo with a shorter side gets the "small photo" warning
FLAT_STDDEV = 4.0  # a thumbnail whose every channel varies less than this (grey levels) is a solid colour
DARK_MEAN = 50  # a mean grey level (0-255) below this: "very dark"
BRIGHT_MEAN = 220  # a mean grey level above this: "very bright"
WHITE_LEVEL, WHITE_SHARE = 250, 0.3  # more than WHITE_SHARE of the pixels at WHITE_LEVEL or above: "overexposed"
SKIN_CR, SKIN_CB = (133, 180), (70, 135)  # the skin-tone box in YCbCr (Cr and Cb ranges, inclusive)
# The wide box (a gate's `skin_fraction_wide_min`): the box, plus, at the dark and the light ends of luma (under
# SKIN_WIDE_LUMA[0] or over SKIN_WIDE_LUMA[1]), where the chroma of skin shrinks towards neutral, every pixel that
# is warm: Cr at least SKIN_WIDE_WARMTH over Cb (neutral grey has Cr = Cb = 128). The Monk Skin Tone reference
# colours 1, 9 and 10 (f6ede4 at luma 238, 3a312a at 50, 292420 at 37) lie at Cr 130-133, on or under the box's
# floor of 133, and at Cr - Cb = 5 to 11.
SKIN_WIDE_LUMA, SKIN_WIDE_WARMTH = (72, 208), 3
# Sharpness = strongest gradients / intensity range, on a 256-pixel thumbnail. On the training images the
# 1st percentile is 0.066; the same images blurred (Gaussian, sigma 3 px) have a median of 0.05.
BLUR_THRESHOLD = 0.06
# The dark spot must be at least this much darker (grey levels) than the rest to count as a spot, and its centre
# farther than OFF_CENTRE of the shorter side from the photo's centre to get the warning (see spot_offset).
# Chosen on the validation split: 2.0 % of its lesion photos (dermoscopy, centred) get the warning; of the same
# lesions shrunk into the corner of a 600-pixel photo of plain skin, 92 %.
SPOT_CONTRAST = 20.0
OFF_CENTRE = 0.3
SPOT_MIN_SHARE, SPOT_MAX_SHARE = 0.003, 0.5  # the spot must cover this share of the thumbnail to count as one


def thumbnail(img: Image.Image, side: int = 256) -> Image.Image:
    small = img.convert("RGB") if img.mode != "RGB" else img.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return small


def sharpness(grey: np.ndarray) -> float:
    gx, gy = np.diff(grey, axis=1)[:-1], np.diff(grey, axis=0)[:, :-1]
    lo, hi = np.percentile(grey, [1, 99])
    return float(np.percentile(np.hypot(gx, gy), 99.5) / (hi - lo + 1e-6))


def skin_fractions(small: Image.Image) -> tuple[float, float]:
    """Shares of pixels in a broad skin-tone range of YCbCr (any skin colour under white light, dermoscopy
    included): the box's, and the wide box's (the darkest and the lightest skin too, see SKIN_WIDE_LUMA)."""
    ycc = np.asarray(small.convert("YCbCr"), dtype=np.float32)
    y, cb, cr = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    box = (cr >= SKIN_CR[0]) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]) & (cb <= SKIN_CB[1])
    ends = (y < SKIN_WIDE_LUMA[0]) | (y > SKIN_WIDE_LUMA[1])
    wide = box | (ends & (cr - cb >= SKIN_WIDE_WARMTH) & (cr <= SKIN_CR[1]) & (cb >= SKIN_CB[0]))
    return float(box.mean()), float(wide.mean())


def skin_fraction(small: Image.Image, wide: bool = False) -> float:
    """The box's share of skin-toned pixels (`wide`: the wide box's), see skin_fractions."""
    return skin_fractions(small)[wide]


def otsu(values: np.ndarray) -> float:
    """The grey level that best splits `values` (0-255) into two classes (Otsu's method)."""
    hist = np.bincount(np.clip(values, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * levels)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    return float(np.argmax(w0 * w1 * (mean0 - mean1) ** 2)) + 0.5


def spot_offset(small: Image.Image) -> float | None:
    """How far the dark spot lies from the photo's centre, as a share of the shorter side; None if no spot stands out.

    The spot: the pixels darker than Otsu's split of a lightly blurred grey thumbnail, weighted by how much
    darker. It counts only when it is a minority of the photo and clearly darker than the rest (a plain patch
    of skin has no spot). Dark dermoscope corners are symmetric, so they do not move the centre of mass much.
    """
    grey = np.asarray(small.convert("L").filter(ImageFilter.BoxBlur(2)), dtype=np.float32)
    t = otsu(grey)
    dark = grey < t
    share = float(dark.mean())
    if not SPOT_MIN_SHARE <= share <= SPOT_MAX_SHARE or float(grey[~dark].mean() - grey[dark].mean()) < SPOT_CONTRAST:
        return None
    ys, xs = np.nonzero(dark)
    weight = t - grey[dark]
    h, w = grey.shape
    cy, cx = float((ys * weight).sum() / weight.sum()) + 0.5, float((xs * weight).sum() / weight.sum()) + 0.5
    return float(np.hypot(cx - w / 2, cy - h / 2) / min(w, h))


@dataclass
class Quality:
    warning_codes: list[str]  # "small", "dark", "bright", "blurred", "off_centre" (texts: warning.<code>)
    flat: bool              # a solid colour or nearly so
    skin_fraction: float
    sharpness: float
    spot_offset: float | None = None  # see spot_offset
    size: tuple[int, int] = (0, 0)    # the photo's width and height
    skin_fraction_wide: float = 0.0   # the same share in the wide box (see skin_fraction)

    def warnings(self, lang: str = "en") -> list[str]:
        """The warnings in plain words."""
        width, height = self.size
        return [words(f"warning.{code}", lang, width=width, height=height) for code in self.warning_codes]


def check(img: Image.Image) -> Quality:
    """Warning codes, and the numbers the out-of-scope gate's cheap checks use."""
    small = thumbnail(img)
    flat = max(ImageStat.Stat(small).stddev) < FLAT_STDDEV  # per-channel spread, from PIL's histograms
    grey = np.asarray(small.convert("L").resize((256, 256), Image.Resampling.BILINEAR), dtype=np.float32)
    sharp = sharpness(grey)
    warnings = []
    if min(img.size) < MIN_GOOD_SIDE:
        warnings.append("small")
    mean = float(grey.mean())
    if mean < DARK_MEAN:
        warnings.append("dark")
    elif mean > BRIGHT_MEAN or (grey >= WHITE_LEVEL).mean() > WHITE_SHARE:
        warnings.append("bright")
    if not flat and sharp < BLUR_THRESHOLD:
        warnings.append("blurred")
    offset = None if flat else spot_offset(small)
    if offset is not None and offset > OFF_CENTRE:
        warnings.append("off_centre")
    box, wide = skin_fractions(small)  # one colour conversion for both
    return Quality(warnings, flat, box, sharp, offset, img.size, wide)

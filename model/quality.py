"""Cheap image-quality checks on one small thumbnail. They warn; they never block a prediction."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MIN_GOOD_SIDE = 224
# Sharpness = strongest gradients / intensity range, on a 256-pixel thumbnail. On the training images the
# 1st percentile is 0.066; the same images blurred (Gaussian, sigma 3 px) have a median of 0.05.
BLUR_THRESHOLD = 0.06


def thumbnail(img: Image.Image, side: int = 256) -> Image.Image:
    small = img.convert("RGB") if img.mode != "RGB" else img.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return small


def sharpness(grey: np.ndarray) -> float:
    gx, gy = np.diff(grey, axis=1)[:-1], np.diff(grey, axis=0)[:, :-1]
    lo, hi = np.percentile(grey, [1, 99])
    return float(np.percentile(np.hypot(gx, gy), 99.5) / (hi - lo + 1e-6))


def skin_fraction(small: Image.Image) -> float:
    """Share of pixels in a broad skin-tone range of YCbCr (any skin colour under white light, dermoscopy included)."""
    ycc = np.asarray(small.convert("YCbCr"), dtype=np.float32)
    cb, cr = ycc[..., 1], ycc[..., 2]
    return float(((cr >= 133) & (cr <= 180) & (cb >= 70) & (cb <= 135)).mean())


@dataclass
class Quality:
    warnings: list[str]
    flat: bool              # a solid colour or nearly so
    skin_fraction: float
    sharpness: float


def check(img: Image.Image) -> Quality:
    """Warnings in plain words, and the numbers the out-of-scope gate's cheap checks use."""
    small = thumbnail(img)
    rgb = np.asarray(small, dtype=np.float32)
    flat = float(rgb.reshape(-1, 3).std(0).max()) < 4.0
    grey = np.asarray(small.convert("L").resize((256, 256), Image.Resampling.BILINEAR), dtype=np.float32)
    sharp = sharpness(grey)
    warnings = []
    if min(img.size) < MIN_GOOD_SIDE:
        warnings.append(f"The photo is small ({img.size[0]}x{img.size[1]} pixels); a sharper, larger photo gives a more reliable answer.")
    mean = float(grey.mean())
    if mean < 50:
        warnings.append("The photo is very dark; take it in good, even light.")
    elif mean > 220 or (grey >= 250).mean() > 0.3:
        warnings.append("The photo is very bright or overexposed; avoid a flash or direct sunlight on the spot.")
    if not flat and sharp < BLUR_THRESHOLD:
        warnings.append("The photo looks blurred; hold the camera steady and let it focus on the spot.")
    return Quality(warnings, flat, skin_fraction(small), sharp)

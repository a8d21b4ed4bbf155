"""Cheap image-quality checks. They warn; they never block a prediction of an in-scope image."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

MIN_GOOD_SIDE = 224


def grey_array(img: Image.Image, side: int = 256) -> np.ndarray:
    small = img.convert("L")
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32)


def sharpness(img: Image.Image) -> float:
    """Variance of the Laplacian on a 256-pixel thumbnail: low means blurred."""
    lap = np.asarray(img.convert("L").resize((256, 256), Image.Resampling.BILINEAR)
                     .filter(ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], 1, 128)), dtype=np.float32)
    return float(lap.var())


def quality_warnings(img: Image.Image, blur_threshold: float = 20.0) -> list[str]:
    grey = grey_array(img)
    warnings = []
    if min(img.size) < MIN_GOOD_SIDE:
        warnings.append(f"The photo is small ({img.size[0]}x{img.size[1]} pixels); a sharper, larger photo gives a more reliable answer.")
    mean = float(grey.mean())
    if mean < 50:
        warnings.append("The photo is very dark; take it in good, even light.")
    elif mean > 220 or (grey >= 250).mean() > 0.3:
        warnings.append("The photo is very bright or overexposed; avoid a flash or direct sunlight on the spot.")
    if sharpness(img) < blur_threshold:
        warnings.append("The photo looks blurred; hold the camera steady and let it focus on the spot.")
    return warnings


def is_flat(img: Image.Image, min_std: float = 4.0) -> bool:
    """A solid colour or nearly so: nothing to look at."""
    return float(np.asarray(img.convert("RGB").resize((64, 64)), dtype=np.float32).std(axis=(0, 1)).max()) < min_std

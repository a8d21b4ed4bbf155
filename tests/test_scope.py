"""The Monk Skin Tone recolouring that training/scope_check.py sweeps with (its figures: docs/model_card.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torchvision.transforms.v2 import functional as F

from model.image import open_image
from training.skin_tone import MST, recolour

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def lesion_photos() -> list[Image.Image]:
    rows = pd.read_csv(EXAMPLES / "examples.csv")
    photos = [open_image(EXAMPLES / f) for f in rows.loc[rows["label4"] != "no_lesion", "file"]]
    return photos + [open_image(p) for p in sorted(EXAMPLES.glob("gallery_phone_*"))]


def toned(photo: Image.Image, shade: str) -> Image.Image:
    return F.to_pil_image(recolour(F.pil_to_tensor(photo), shade))


def test_recolouring_puts_the_surrounding_skin_at_the_shade():
    """The outer ring's median colour becomes the Monk Skin Tone colour (within JPEG-free rounding)."""
    photo = lesion_photos()[0]
    for shade in (MST[0], MST[4], MST[-1]):
        ring = np.asarray(toned(photo, shade), dtype=np.float32)[:8].reshape(-1, 3)
        target = np.array([int(shade[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)
        assert np.abs(np.median(ring, 0) - target).max() <= 12, shade

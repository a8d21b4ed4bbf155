"""The gate refuses only what is not skin, whatever the skin tone, and ink does not read as cancer
(the full figures: python -m training.scope_check, in the model card)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from torchvision.transforms.v2 import functional as F

from model.image import open_image
from model.quality import skin_fraction
from training.ink import ellipse_around_spot
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


def test_skin_colour_is_found_at_every_shade():
    """The skin measure sees skin on the example photos recoloured to each of the ten shades, and little of it in
    blue sky, green leaves, grey and white."""
    for photo in lesion_photos():
        for shade in MST:
            assert skin_fraction(toned(photo, shade)) >= 0.3, shade
    for colour in [(90, 150, 230), (40, 140, 60), (128, 128, 128), (250, 250, 250), (0, 0, 0)]:
        assert skin_fraction(Image.new("RGB", (64, 64), colour)) == 0, colour


def test_no_lesion_is_refused_at_any_shade(shipped):
    """The example lesions, in scope as they are, stay in scope recoloured to every Monk Skin Tone shade."""
    photos = [p for p, r in zip(lesion_photos(), shipped.predict_batch(lesion_photos()), strict=True) if r.in_scope]
    assert photos
    for shade in MST:
        answers = shipped.predict_batch([toned(p, shade) for p in photos])
        assert all(r.in_scope for r in answers), (shade, [r.refusal_reason for r in answers])


def test_an_ink_ellipse_does_not_raise_the_chance_of_cancer(shipped):
    """A blue marker ellipse around benign example spots (the biopsy mark of the phone photos) moves their
    malignant probability by little on average."""
    rows = pd.read_csv(EXAMPLES / "examples.csv")
    photos = [open_image(EXAMPLES / f) for f in rows.loc[rows["label4"] == "benign", "file"]]
    before = shipped.predict_batch(photos)
    after = shipped.predict_batch([ellipse_around_spot(p) for p in photos])
    rise = [a.malignant_probability - b.malignant_probability for a, b in zip(after, before, strict=True)]
    assert all(a.in_scope for a in after)
    assert np.mean(rise) <= 0.05, rise

"""Reading an image safely, and the one preprocessing transform that evaluation and the app share.

Aspect ratio: the training images are square (the public copies squashed their 4:3 originals), and a
user's photo can have any shape. We crop the largest centred square and resize it, so the lesion keeps
its proportions; training adds random crops with aspect jitter (3/4 to 4/3) so the model does not depend
on the squashing of the training copies.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

MAX_PIXELS = 40_000_000      # ~ a 7000x6000 photo; anything larger is refused from the header alone
MIN_SIDE = 16
MAX_ASPECT = 20.0
SUPPORTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"


class ImageError(ValueError):
    """An image the app cannot use; the message is meant for the person who sent it."""


def open_image(source) -> Image.Image:
    """A path, bytes or PIL image -> an RGB PIL image with EXIF orientation applied.

    The size is checked from the header before any pixel is decoded, so a decompression bomb costs nothing.
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (bytes, bytearray)):
            fp = io.BytesIO(source)
            if not source:
                raise ImageError("The file is empty. Please choose a photo (" + SUPPORTED + ").")
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"No image file at {path}.")
            if path.stat().st_size == 0:
                raise ImageError("The file is empty. Please choose a photo (" + SUPPORTED + ").")
            fp = path
        try:
            img = Image.open(fp)
        except UnidentifiedImageError:
            raise ImageError(f"This file is not an image we can read. Please use {SUPPORTED}"
                             " (HEIC or SVG: please convert to JPEG first).") from None
        except Image.DecompressionBombError:
            raise ImageError("This image declares too many pixels to be a photo; please send a smaller one.") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"This image is too large ({w}x{h} pixels). Please send one under {MAX_PIXELS // 1_000_000} megapixels.")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"This image is too small ({w}x{h} pixels). Please send a photo at least 224 pixels wide.")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageError(f"This image is a thin strip ({w}x{h} pixels), not a photo of a skin spot.")
    try:
        img.seek(0)  # animated GIF/WebP: the first frame
        img.load()
        img = ImageOps.exif_transpose(img)
        img = to_rgb(img)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"This image file is damaged or incomplete and cannot be read ({e}). Please send it again.") from None
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent areas become white; 16-bit grey is scaled, not clipped."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np
        a = np.asarray(img, dtype=np.float32)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(a.max()), 1.0)
        img = Image.fromarray((a / hi * 255).clip(0, 255).astype("uint8"), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def center_square(img):
    """The largest centred square of a PIL image or a (C, H, W) tensor."""
    return F.center_crop(img, min(F.get_size(img)))


def _interpolation(name: str) -> v2.InterpolationMode:
    return v2.InterpolationMode(name)


def eval_transform(pre: dict) -> v2.Compose:
    """The inference transform (PIL RGB -> normalised tensor), built from config.json's `preprocessing`."""
    size = pre["input_size"]
    return v2.Compose([
        v2.Lambda(center_square),
        v2.Resize((size, size), interpolation=_interpolation(pre["interpolation"]), antialias=True),
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(pre["mean"], pre["std"]),
    ])


def train_transform(pre: dict, strength: float = 1.0) -> v2.Compose:
    """Augmentation for dermoscopy: any rotation or flip, crops with aspect jitter, colour and blur jitter.

    `strength` scales the photometric and crop jitter (0 = flips only).
    """
    size, s = pre["input_size"], strength
    ops = [
        v2.Lambda(center_square),
        v2.RandomResizedCrop(size, scale=(1 - 0.5 * min(s, 1.0), 1.0), ratio=(3 / 4, 4 / 3),
                             interpolation=_interpolation(pre["interpolation"]), antialias=True),
        v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
    ]
    if s > 0:
        ops += [
            v2.RandomApply([v2.RandomRotation(180)], p=0.5 * min(s, 1.0)),
            v2.ColorJitter(0.25 * s, 0.25 * s, 0.2 * s, 0.04 * s),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2 * min(s, 1.0)),
        ]
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre["mean"], pre["std"])]
    return v2.Compose(ops)

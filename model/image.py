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

from .quality import MIN_GOOD_SIDE
from .texts import Message

MAX_PIXELS = 40_000_000      # ~ a 7000x6000 photo; anything larger is refused from the header alone
MIN_SIDE = 16  # smaller photos are refused; from here up to MIN_GOOD_SIDE they are analysed with a warning
DECODE_SIDE = 1024  # JPEGs are decoded at no less than this (the model needs 160; the heatmap is shown small)
MAX_ASPECT = 20.0
# Pillow's names for those ("JPEG" also opens the multi-picture JPEGs some phones write). Any other format
# Pillow could parse (EPS, PSD, ICO...) is refused: fewer decoders facing uploads, and EPS would start Ghostscript.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


class ImageError(Message):
    """An image the app cannot use; the message is meant for the person who sent it (texts: image.<code>)."""

    def __init__(self, code: str, **values):
        super().__init__(f"image.{code}", **values)
        self.code = code


def open_image(source) -> Image.Image:
    """A path, bytes or PIL image -> an RGB PIL image with EXIF orientation applied.

    The size is checked from the header before any pixel is decoded, so a decompression bomb costs nothing.
    """
    if isinstance(source, Image.Image):
        return _checked_rgb(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError("missing", path=path)
        if path.stat().st_size == 0:
            raise ImageError("empty")
        fp = path
    try:
        img = Image.open(fp, formats=FORMATS)
    except UnidentifiedImageError:
        raise ImageError(_unsupported(source)) from None
    except Image.DecompressionBombError:
        raise ImageError("bomb") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # a header cut short or garbled
        raise ImageError("damaged", detail=e) from None
    with img:  # we opened the file, so we close it, also when the image is refused
        return _checked_rgb(img)


def _unsupported(source) -> str:
    """Why the file is not an image we read, naming the format when people often send it by mistake (iPhone
    photos, drawings): an ImageError code."""
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:512])
    else:
        with open(source, "rb") as f:
            head = f.read(512)
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "heic"
    if b"<svg" in head.lower():
        return "svg"
    return "unsupported"


def _checked_rgb(img: Image.Image) -> Image.Image:
    """Size checks from the header, then decode the first frame, apply EXIF orientation, convert to RGB."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError("too_large", width=w, height=h, megapixels=MAX_PIXELS // 1_000_000)
    if max(w, h) > MAX_ASPECT * min(w, h):  # before the size check: a 4000x3 strip is not "too small"
        raise ImageError("strip", width=w, height=h)
    if min(w, h) < MIN_SIDE:
        raise ImageError("too_small", width=w, height=h, min_side=MIN_SIDE, good_side=MIN_GOOD_SIDE)
    try:
        img.seek(0)  # animated GIF/WebP: the first frame
        if img.format == "JPEG":  # a phone photo: let libjpeg decode at 1/2..1/8 scale, still >= DECODE_SIDE
            img.draft(None, (DECODE_SIDE, DECODE_SIDE))
        img.load()
        img = ImageOps.exif_transpose(img)  # always a new image, so the caller may close the original
        img = to_rgb(img)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError("damaged", detail=e) from None
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


class RandomRot90(torch.nn.Module):
    """A random multiple of 90 degrees: with the flips, all 8 orientations, lossless and nearly free."""

    def forward(self, x):
        return torch.rot90(x, int(torch.randint(4, ()).item()), dims=(-2, -1))


def train_transform(pre: dict, strength: float = 1.0) -> v2.Compose:
    """Augmentation for dermoscopy (orientation carries no meaning): the 8 rotations/flips, crops with aspect
    jitter, brightness/contrast/saturation and blur jitter. Works on uint8 (C, H, W) tensors.

    Chosen for speed on a CPU: arbitrary-angle rotation and hue jitter cost ~10x the rest together.
    `strength` scales the photometric and crop jitter (0 = flips and rotations only).
    """
    size, s = pre["input_size"], strength
    ops = [
        v2.Lambda(center_square),
        v2.RandomResizedCrop(size, scale=(1 - 0.5 * min(s, 1.0), 1.0), ratio=(3 / 4, 4 / 3),
                             interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomHorizontalFlip(), RandomRot90(),
    ]
    if s > 0:
        ops += [
            v2.ColorJitter(0.25 * s, 0.25 * s, 0.2 * s),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2 * min(s, 1.0)),
        ]
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(pre["mean"], pre["std"])]
    return v2.Compose(ops)

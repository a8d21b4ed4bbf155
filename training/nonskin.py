"""The gate's learned non-skin measure (model/ood.py): what the pictures that are not skin look like.

A distance to the lesions knows only the lesions; a cat's fur or a stained slide can lie as near them as a real
photo. The measure is a logistic regression on the style, fitted on the train split's photos (and some of them
recoloured to a random Monk Skin Tone shade, so that dark skin counts as skin) against a folder of pictures that
are not skin. training.calibrate and training.gate_choice fit it with --non-skin FOLDER.

The folder must share no picture with the non-skin sets that measure the gate (training/ood_check.py: scikit-learn,
scikit-image, gradio, matplotlib, networkx and sympy pictures). The project's figures use Debian's clip-art and
wallpaper packages, GPL and CC licensed, none of them shipped (docs/training.md):

    apt-get download tuxpaint-stamps-default gnome-backgrounds plasma-workspace-wallpapers
    for f in *.deb; do dpkg -x "$f" nonskin; done        # then: --non-skin nonskin/usr/share

Each picture is used whole and in CROPS random crops (transparent ones over a random plain colour), and drawn
shapes (gradients, discs, stripes; seeded apart from ood_check's) are added to them.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from model import ood
from model.image import open_image
from training.inference import picture_outputs
from training.skin_tone import MST, recolour

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
CROPS = 2            # random crops of each picture, besides the whole
SIDE = 448           # pictures are shrunk to this side first: the network sees 160-224 px
DRAWN = 200          # drawn shapes added to the folder's pictures
RECOLOURED = 1500    # train photos recoloured to a random MST shade, added to the skin side
SEED = 2             # ood_check's synthetic pictures use seeds 0 (test) and 1 (development)


def flatten(img: Image.Image, rng: random.Random) -> Image.Image:
    """RGB; a transparent picture over a random plain colour."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        colour = tuple(rng.randrange(256) for _ in range(3)) + (255,)
        img = Image.alpha_composite(Image.new("RGBA", img.size, colour), img)
    return img.convert("RGB")


def crops(img: Image.Image, n: int, rng: random.Random) -> list[Image.Image]:
    w, h = img.size
    out = []
    for _ in range(n):
        f = rng.uniform(0.3, 0.7)
        cw, ch = max(8, int(w * f)), max(8, int(h * f))
        x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
        out.append(img.crop((x, y, x + cw, y + ch)))
    return out


def drawn(n: int, rng: random.Random) -> list[Image.Image]:
    """Gradients, discs and stripes in random colours."""
    def colour():
        return tuple(rng.randrange(256) for _ in range(3))
    out = []
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    for i in range(n):
        kind = i % 3
        if kind == 0:   # linear or radial gradient between two colours
            t = np.hypot(xx - rng.random(), yy - rng.random()) if rng.random() < 0.5 else (xx + yy * rng.random()) / 2
            t = (t / max(t.max(), 1e-6))[..., None]
            a, b = np.array(colour()), np.array(colour())
            out.append(Image.fromarray((a * (1 - t) + b * t).astype(np.uint8)))
            continue
        img = Image.new("RGB", (256, 256), colour())
        draw = ImageDraw.Draw(img)
        if kind == 1:   # one to three discs
            for _ in range(rng.randint(1, 3)):
                r, cx, cy = rng.randint(20, 110), rng.randint(40, 216), rng.randint(40, 216)
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour())
        else:           # stripes
            width = rng.randint(4, 40)
            for x in range(0, 256, 2 * width):
                draw.rectangle((x, 0, x + width, 256), fill=colour())
            img = img.rotate(rng.uniform(0, 180))
        out.append(img)
    return out


def pictures(folder: Path | str, crops_each: int = CROPS, shapes: int = DRAWN, seed: int = SEED
             ) -> list[Image.Image]:
    """The non-skin pictures: every image file under `folder` (recursively) whole and in random crops, and
    drawn shapes. Files that cannot be read are skipped."""
    rng = random.Random(seed)
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    out = []
    for path in files:
        try:
            with Image.open(path) as im:
                im.thumbnail((SIDE, SIDE))
                img = flatten(im, rng)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if min(img.size) < 16:
            continue
        out += [img, *crops(img, crops_each, rng)]
    if not out:
        raise SystemExit(f"{folder} holds no picture (.png, .jpg, .jpeg, .webp) to fit the non-skin measure on.")
    return out + drawn(shapes, rng)


def recoloured(paths, n: int = RECOLOURED, seed: int = SEED) -> list[Image.Image]:
    """`n` of the photos at `paths`, each recoloured to a random Monk Skin Tone shade."""
    rng = random.Random(seed)
    out = []
    for path in rng.sample(list(paths), min(n, len(paths))):
        img = open_image(path)
        img.thumbnail((SIDE, SIDE))
        out.append(to_pil_image(recolour(pil_to_tensor(img), rng.choice(MST))))
    return out


def measure(model, pre: dict, spec, train_style: np.ndarray, train_paths, other: list[Image.Image]
            ) -> dict[str, torch.Tensor]:
    """The non-skin measure's tensors ("nonskin." keys, model/ood.py): the train split's style and that of
    recoloured train photos against the style of `other`."""
    toned = picture_outputs(model, recoloured(train_paths), pre, spec)["style"].numpy()
    not_skin = picture_outputs(model, other, pre, spec)["style"].numpy()
    return ood.fit_nonskin(np.concatenate([train_style, toned]), not_skin)

"""Marker-pen ink drawn on training images, so that ink cannot stand for a diagnosis.

In PAD-UFES-20 a surgical marker circles the lesions booked for biopsy, so a circle of blue or purple ink
means "cancer" to a network that is shown it only on those photos. MarkerInk draws the same kinds of marks
(an ellipse around the middle, strokes, dots) in blue, purple or black on images of every class.
"""
from __future__ import annotations

import random

import torch
from PIL import Image, ImageDraw
from torchvision.transforms.v2 import functional as TF

INKS = ((35, 60, 190), (110, 45, 150), (25, 25, 30))  # blue, purple, black surgical markers (RGB)


class MarkerInk:
    def __init__(self, width=(0.008, 0.03), opacity=(0.55, 0.95)):
        self.width, self.opacity = width, opacity

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """A uint8 (3, H, W) tensor -> the same with one to three marks drawn on it."""
        pil = TF.to_pil_image(image)
        w, h = pil.size
        overlay = Image.new("RGBA", pil.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        colour = tuple(max(0, min(255, c + random.randint(-20, 20))) for c in random.choice(INKS))
        alpha = int(255 * random.uniform(*self.opacity))
        line = max(1, round(random.uniform(*self.width) * min(w, h)))
        for _ in range(random.randint(1, 3)):
            kind = random.random()
            if kind < 0.5:  # an ellipse around the spot, the biopsy mark
                cx, cy = w * random.uniform(0.4, 0.6), h * random.uniform(0.4, 0.6)
                rx, ry = w * random.uniform(0.2, 0.48), h * random.uniform(0.2, 0.48)
                draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=colour + (alpha,), width=line)
            elif kind < 0.85:  # a stroke of a few segments
                points = [(random.uniform(0, w), random.uniform(0, h))]
                for _ in range(random.randint(1, 4)):
                    x, y = points[-1]
                    points.append((x + random.uniform(-0.3, 0.3) * w, y + random.uniform(-0.3, 0.3) * h))
                draw.line(points, fill=colour + (alpha,), width=line, joint="curve")
            else:  # a dot or two
                for _ in range(random.randint(1, 2)):
                    x, y, r = random.uniform(0, w), random.uniform(0, h), line * random.uniform(1, 2.5)
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=colour + (alpha,))
        return TF.pil_to_tensor(Image.alpha_composite(pil.convert("RGBA"), overlay).convert("RGB"))


def ellipse_around_spot(image, colour=INKS[0], radius: float = 0.38, width: float = 0.015):
    """A PIL photo with one marker ellipse around its centre, where the spot is: the biopsy mark of the ink
    check (training/scope_check.py)."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    w, h = out.size
    line = max(1, round(width * min(w, h)))
    draw.ellipse([w * (0.5 - radius), h * (0.5 - radius), w * (0.5 + radius), h * (0.5 + radius)],
                 outline=colour, width=line)
    return out

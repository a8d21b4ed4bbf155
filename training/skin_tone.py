"""Recolour a photo to another skin tone: the Monk Skin Tone (MST) scale's ten reference colours.

The recolouring is a per-channel gain in linear light that maps the median colour of the photo's outer ring
(the skin around the spot) onto the target colour; the spot gets the same gain, as it would under that skin.
Training draws it at random (the phone photos are mostly of light skin), and the skin-tone sweep of
training/scope_check.py measures the gate and the AUCs at every shade with it.
"""
from __future__ import annotations

import random

import torch

# Monk Skin Tone scale, MST 1 (lightest) to MST 10 (darkest), as sRGB hex colours (Monk 2019, Google).
MST = ["f6ede4", "f3e7db", "f7ead0", "eadaba", "d7bd96", "a07e56", "825c43", "604134", "3a312a", "292420"]
RING = 0.12  # the outer ring: this share of the side on each edge


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def hex_rgb(code: str) -> torch.Tensor:
    return torch.tensor([int(code[i:i + 2], 16) for i in (0, 2, 4)], dtype=torch.float32) / 255


def ring_colour(linear: torch.Tensor) -> torch.Tensor:
    """The median linear colour (3,) of the outer ring's pixels, less its darkest quarter (a dermatoscope's
    black rim, shadows)."""
    _, h, w = linear.shape
    b = max(1, round(RING * min(h, w)))
    ring = torch.cat([linear[:, :b].flatten(1), linear[:, -b:].flatten(1), linear[:, b:-b, :b].flatten(1),
                      linear[:, b:-b, -b:].flatten(1)], 1)
    luminance = ring.mean(0)
    keep = luminance >= luminance.quantile(0.25)
    return ring[:, keep].median(1).values.clamp_min(1e-4)


def recolour(image: torch.Tensor, target: str) -> torch.Tensor:
    """A uint8 (3, H, W) photo -> the same photo with its surrounding skin at the colour `target` (hex)."""
    linear = srgb_to_linear(image.float() / 255)
    gain = srgb_to_linear(hex_rgb(target)) / ring_colour(linear)
    out = linear_to_srgb(linear * gain[:, None, None])
    return (out * 255).round().to(torch.uint8)


class RandomSkinTone:
    """Training augmentation: recolour to a random MST shade."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return recolour(image, random.choice(MST))

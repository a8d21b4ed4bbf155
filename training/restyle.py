"""Make a dermoscopic image look like an ordinary phone photo of the same spot.

Phone photos have few melanomas (24 in the training data), so what the model knows of melanoma on a phone
has to come from dermoscopy. A dermoscopic image differs from a phone photo in ways that have nothing to do
with the lesion: the dermatoscope's dark round vignette, the spot filling the frame, even light from a ring
of LEDs, sharp focus, no JPEG artefacts, neutral colour, a lens pressed flat onto the skin. PhoneStyle undoes
each of these at random, on uint8 (3, H, W) tensors, before the ordinary training transform.
"""
from __future__ import annotations

import math
import random

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


class PhoneStyle:
    def __init__(self, inner=(0.6, 0.85), spot_scale=(0.4, 0.9), light=0.35, cast=0.12, p_blur=0.5,
                 jpeg_quality=(35, 90), perspective=0.15):
        self.inner, self.spot_scale, self.light, self.cast = inner, spot_scale, light, cast
        self.p_blur, self.perspective = p_blur, perspective
        self.jpeg = v2.JPEG(jpeg_quality)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _, h, w = image.shape
        # 1. no vignette: keep the middle of the field of view, where the dermatoscope's dark rim is not
        image = TF.center_crop(image, [int(random.uniform(*self.inner) * min(h, w))] * 2).float()
        skin = torch.cat([image[:, :4].flatten(1), image[:, -4:].flatten(1), image[:, :, :4].flatten(1),
                          image[:, :, -4:].flatten(1)], 1).median(1).values.view(3, 1, 1)  # the surrounding skin
        # 2. the spot smaller in the frame: shrink it onto skin of the surrounding colour, inside a soft-edged disc
        side = int(random.uniform(*self.spot_scale) * h)
        top, left = random.randint(0, h - side), random.randint(0, w - side)
        spot = torch.zeros(3, h, w)
        spot[:, top:top + side, left:left + side] = TF.resize(image, [side, side], antialias=True)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        r = torch.hypot(ys - top - side / 2, xs - left - side / 2) / (side / 2)  # 1 at the middle of each edge
        mask = ((1 - r) / 0.4).clamp(0, 1)[None]
        grain = TF.resize(torch.randn(1, 4, 4), [h, w], antialias=True) * 0.04  # skin is not one flat colour
        image = mask * spot + (1 - mask) * skin * (1 + grain)
        # 3. mild perspective: a phone is held at an angle, a dermatoscope pressed flat
        corners = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
        moved = [[x + random.uniform(-1, 1) * self.perspective * w / 2,
                  y + random.uniform(-1, 1) * self.perspective * h / 2] for x, y in corners]
        image = TF.perspective(image, corners, moved, fill=skin.flatten().tolist())
        # 4. uneven light (a gradient across the photo) and a colour cast (white balance)
        angle = random.uniform(0, 2 * math.pi)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        gradient = 1 + random.uniform(0, self.light) * (math.cos(angle) * xs + math.sin(angle) * ys) / math.sqrt(2)
        gains = torch.tensor([random.uniform(1 - self.cast, 1 + self.cast) for _ in range(3)]).view(3, 1, 1)
        image = (image * gradient * gains).clamp(0, 255).to(torch.uint8)
        # 5. blur (focus, hand shake) and JPEG compression
        if random.random() < self.p_blur:
            image = TF.gaussian_blur(image, [7, 7], [random.uniform(0.3, 2.0)])
        return self.jpeg(image)

"""Grad-CAM on the last spatial feature maps of the backbone (conv_head only sees the pooled 1x1 map)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# A perceptual blue -> green -> yellow -> red ramp; avoids importing matplotlib in the app.
_RAMP = np.array([[0, 0, 128], [0, 90, 255], [0, 200, 170], [170, 230, 40], [255, 200, 0], [230, 40, 0]], np.float32)


def gradcam(model, maps: torch.Tensor, meta: torch.Tensor, targets: torch.Tensor | None = None) -> np.ndarray:
    """(B, H', W') Grad-CAM maps in [0, 1], one per image, for class `targets` (default: the predicted ones).

    `maps` are the last spatial feature maps, from the runner's single forward pass. Grad-CAM needs the
    gradient of the class logit with respect to them, and everything after them is the small head (global
    pool, conv_head, the fusion with the metadata, the linear layer): back-propagating through the head
    alone gives exactly the gradient a backward pass through the whole network would, at a tiny fraction
    of its cost. In eval mode the images of a batch are independent, so one backward pass of the summed
    target logits gives each image its own gradient.
    """
    with torch.inference_mode(False), torch.enable_grad():  # callable from inside predict's inference mode
        maps = maps.clone().float().requires_grad_(True)   # a clone is an ordinary tensor autograd can track
        logits = model.forward_head(model.pool_maps(maps), meta.clone().float())
        targets = logits.argmax(1) if targets is None else targets.clone()
        grad, = torch.autograd.grad(logits.gather(1, targets.view(-1, 1)).sum(), maps)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps.detach()).sum(1))
    peak = cam.amax(dim=(1, 2), keepdim=True)
    cam = torch.where(peak > 0, cam / peak.clamp_min(1e-12), cam)
    return cam.cpu().numpy()


def colorize(cam: np.ndarray) -> np.ndarray:
    x = np.clip(cam, 0, 1) * (len(_RAMP) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_RAMP) - 2)
    frac = (x - lo)[..., None]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).astype(np.uint8)


def overlay(img: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Heatmap over the photo, same size as the photo. The map covers the centred square the model saw.
    Built from the small map with PIL resizes and one composite, so a 12-megapixel photo stays cheap."""
    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    colour = Image.fromarray(colorize(cam)).resize((s, s), Image.Resampling.BILINEAR)
    weight = (alpha * np.clip(cam * 1.5, 0, 1) * 255).astype(np.uint8)  # faint where the model did not look
    mask = Image.fromarray(weight, "L").resize((s, s), Image.Resampling.BILINEAR)
    out = img.convert("RGB") if img.mode != "RGB" else img.copy()
    out.paste(Image.composite(colour, out.crop(box), mask), box[:2])
    return out

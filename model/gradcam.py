"""Grad-CAM on the last spatial block of the backbone (conv_head only sees the pooled 1x1 map)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# A perceptual blue -> green -> yellow -> red ramp; avoids importing matplotlib in the app.
_RAMP = np.array([[0, 0, 128], [0, 90, 255], [0, 200, 170], [170, 230, 40], [255, 200, 0], [230, 40, 0]], np.float32)


def gradcam(model, image: torch.Tensor, meta: torch.Tensor, target: int | None = None) -> tuple[np.ndarray, int]:
    """(H', W') map in [0, 1] for class `target` (default: the predicted one) and the class used."""
    layer = model.backbone.blocks[-1]
    store = {}

    def hook(_module, _inputs, output):
        if not output.requires_grad:  # a predict() running in another thread (inference mode): not ours
            return
        store["act"] = output
        output.register_hook(lambda g: store.__setitem__("grad", g))

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            image = image.detach().requires_grad_(True)  # makes the graph reach the hooked block in eval mode
            logits = model(image, meta)
            target = int(logits.argmax(1)[0]) if target is None else target
            model.zero_grad(set_to_none=True)
            logits[0, target].backward()
    finally:
        handle.remove()
    act, grad = store["act"][0], store["grad"][0]
    weights = grad.mean(dim=(1, 2), keepdim=True)
    cam = F.relu((weights * act).sum(0))
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam.detach().cpu().numpy(), target


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

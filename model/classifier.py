"""The public API: load_classifier() -> Classifier with predict / predict_batch / explain.

    from model import load_classifier
    clf = load_classifier()
    r = clf.predict(image, age=None, sex=None, site=None)
    r.probabilities    # {"melanoma": p, "other_cancer": p, "benign": p, "no_lesion": p}
    clf.explain(image) # the photo with the Grad-CAM heatmap of the predicted class over it
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import ood, skin_measure
from .checkpoint import CONFIG_FILE, DEFAULT_WEIGHTS, CheckpointError, load_model, metadata_spec
from .gradcam import gradcam, overlay
from .image import eval_transform, open_image
from .photo_types import fitted
from .quality import check
from .runtime import optimize, optimize_module
from .texts import words


@dataclass
class Prediction:
    probabilities: dict[str, float]
    label: str                          # class id with the highest probability
    risk: str                           # "high" | "moderate" | "low" | "uncertain" | "out_of_scope"
    advice: str                         # in English; model/texts.py has it in other languages under advice_code
    in_scope: bool = True
    warnings: list[str] = field(default_factory=list)       # in English, one per warning code
    ood_distance: float | None = None
    photo_type: str | None = None       # "dermoscopic" | "clinical"; None for weights without a photo-type head
    warning_codes: list[str] = field(default_factory=list)  # see model/quality.py
    refusal_reason: str | None = None   # why it is out of scope, a code of ood.REFUSALS; None when in scope
    advice_code: str = ""               # the texts key after "risk.": the risk, or "no_lesion"
    # Grad-CAM of the predicted class, (H', W') in [0, 1] over the centred square the model saw; None when
    # out of scope. gradcam.overlay(photo, heatmap) draws it over the photo (or a thumbnail of it).
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def malignant_probability(self) -> float:
        return self.probabilities["melanoma"] + self.probabilities["other_cancer"]


# for weights whose config.json lacks fitted thresholds: never "high", "moderate" from an even chance
DEFAULT_THRESHOLDS = {"melanoma_high": float("inf"), "malignant_high": float("inf"),
                      "melanoma": 0.5, "malignant": 0.5, "uncertain_max_prob": 0.5}


def risk_cause(probs: dict[str, float], thresholds: dict) -> tuple[str, str, float, float] | None:
    """What makes the risk "high" or "moderate": (level, "melanoma" or "malignant", its chance, the threshold it
    reached), the melanoma threshold checked first; None when no chance of a cancer reaches a threshold."""
    th = {**DEFAULT_THRESHOLDS, **thresholds}
    chances = {"melanoma": probs["melanoma"], "malignant": probs["melanoma"] + probs["other_cancer"]}
    for level, suffix in (("high", "_high"), ("moderate", "")):
        for cause, chance in chances.items():
            if chance >= th[cause + suffix]:
                return level, cause, chance, th[cause + suffix]
    return None


def risk_level(probs: dict[str, float], thresholds: dict) -> str:
    """high / moderate / uncertain / low from the class probabilities and a set of thresholds."""
    cause = risk_cause(probs, thresholds)
    if cause is not None:
        return cause[0]
    if max(probs.values()) < {**DEFAULT_THRESHOLDS, **thresholds}["uncertain_max_prob"]:
        return "uncertain"
    return "low"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Classifier:
    def __init__(self, model, config: dict, ood_tensors: dict | None = None, device: str = "auto"):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.classes = [c["id"] for c in config["classes"]]
        self.names = {c["id"]: c["name"] for c in config["classes"]}
        self.spec = metadata_spec(config)
        self.transform = eval_transform(config["preprocessing"])
        self.photo_types = list(config.get("photo_types", []))
        self.ood = {k: v.to(self.device) for k, v in (ood_tensors or {}).items()}
        if self.ood and config.get("ood", {}).get("level") != ood.LEVEL:
            raise CheckpointError("These weights' out-of-scope gate was fitted on other features than this version "
                             "measures. Fit it again: python -m training.calibrate --run <the training run>.")
        # The fast path (ONNX Runtime on CPU, see runtime.py); Grad-CAM uses self.model's small head only.
        self.runner = optimize(self.model, config["preprocessing"]["input_size"], self.device)
        # the gate's ImageNet non-skin measure, where the weights have one (skin_measure.py), on the same path
        self.skin, self.skin_side = None, None
        if (measure := skin_measure.from_weights(config.get("ood", {}), self.ood)) is not None:
            module, self.skin_side = measure[0].to(self.device), measure[1]
            example = (torch.rand(1, 3, self.skin_side, self.skin_side, device=self.device),)
            self.skin = optimize_module(module, example, ("image",), ("score",), self.device)

    # ---- inputs ---------------------------------------------------------------------------------
    def _prepare(self, images, ages, sexes, sites):
        """Validate everything first (a bad value raises ValueError with a message for people), then tensors."""
        pils = [open_image(im) for im in images]
        meta = [self.spec.encode(a, s, t) for a, s, t in zip(ages, sexes, sites, strict=True)]
        x = torch.stack([self.transform(im) for im in pils]).to(self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return pils, x, torch.tensor(meta, dtype=torch.float32, device=self.device)

    # ---- outputs --------------------------------------------------------------------------------
    def _skin_scores(self, pils: list[Image.Image]) -> torch.Tensor | None:
        """The ImageNet non-skin score of each picture (None when the weights have no such measure)."""
        if self.skin is None:
            return None
        x = torch.stack([skin_measure.squashed(im, self.skin_side) for im in pils]).to(self.device)
        return self.skin(x)[0].float().cpu()

    def _distance(self, style: torch.Tensor, features: torch.Tensor) -> torch.Tensor | None:
        return ood.score({"style": style, "features": features.float()}, self.ood) if self.ood else None

    def fitted(self, section: str, photo_type: str | None) -> dict:
        """config[section] with the values fitted for this photo type on top (model/photo_types.py)."""
        return fitted(self.config, section, photo_type)

    def risk(self, probs: dict[str, float], photo_type: str | None = None) -> str:
        """Risk level from the validation-chosen thresholds in config.json (see training/calibrate.py),
        those of the photo's type where the weights have them."""
        return risk_level(probs, self.fitted("thresholds", photo_type))

    def risk_cause(self, pred: Prediction) -> tuple[str, str, float, float] | None:
        """Which chance of a cancer set this answer's risk level, and the threshold it reached (see risk_cause)."""
        return risk_cause(pred.probabilities, self.fitted("thresholds", pred.photo_type)) if pred.in_scope else None

    def _result(self, img: Image.Image, p: np.ndarray, distance, heatmap: np.ndarray, photo_type,
                nonskin=None, imagenet=None) -> Prediction:
        probs = {c: float(v) for c, v in zip(self.classes, p, strict=True)}
        label = max(probs, key=probs.get)
        q = check(img)
        d = None if distance is None else float(distance)
        reason = ood.refusal(q, d, self.fitted("ood", photo_type), None if nonskin is None else float(nonskin),
                             None if imagenet is None else float(imagenet))
        risk = self.risk(probs, photo_type) if reason is None else "out_of_scope"
        advice = "no_lesion" if risk == "low" and label == "no_lesion" else risk
        return Prediction(probs, label, risk, words(f"risk.{advice}"), reason is None, q.warnings(), d,
                          photo_type=photo_type, warning_codes=q.warning_codes, refusal_reason=reason,
                          advice_code=advice, heatmap=heatmap if reason is None else None)

    def _photo_types(self, feats: torch.Tensor) -> list[str | None]:
        logits = self.model.forward_photo_type(feats.float()) if self.photo_types else None
        if logits is None:
            return [None] * len(feats)
        return [self.photo_types[i] for i in logits.argmax(1).tolist()]

    # ---- API ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_batch(self, images, ages=None, sexes=None, sites=None) -> list[Prediction]:
        n = len(images)
        ages, sexes, sites = (list(v) if v is not None else [None] * n for v in (ages, sexes, sites))
        if not len(ages) == len(sexes) == len(sites) == n:
            raise ValueError("ages, sexes and sites must have one entry per image.")
        if n == 0:
            return []
        pils, x, meta = self._prepare(images, ages, sexes, sites)
        maps, feats, style, logits = self.runner(x, meta)
        types = self._photo_types(feats)
        calibration = [self.fitted("calibration", t) for t in types]
        temperature = torch.tensor([[c.get("temperature", 1.0)] for c in calibration], device=logits.device)
        logits = logits.float() / temperature
        probs = torch.softmax(logits, 1).cpu().numpy()
        dist = self._distance(style, feats)
        nonskin = ood.nonskin(style, self.ood) if self.ood else None
        imagenet = self._skin_scores(pils)
        cams = gradcam(self.model, maps, meta, logits.argmax(1))
        return [self._result(img, p, None if dist is None else dist[i], cam, t,
                             None if nonskin is None else nonskin[i], None if imagenet is None else imagenet[i])
                for i, (img, p, cam, t) in enumerate(zip(pils, probs, cams, types, strict=True))]

    def predict(self, image, age=None, sex=None, site=None) -> Prediction:
        return self.predict_batch([image], [age], [sex], [site])[0]

    def explain(self, image, age=None, sex=None, site=None, target: str | None = None) -> Image.Image:
        """Grad-CAM of the predicted class (or `target`) over the photo, as an RGB image of the photo's size."""
        pils, x, meta = self._prepare([image], [age], [sex], [site])
        with torch.inference_mode():
            maps, *_ = self.runner(x, meta)
        targets = None if target is None else torch.tensor([self.classes.index(target)], device=self.device)
        return overlay(pils[0], gradcam(self.model, maps, meta, targets)[0])


def load_classifier(weights_dir: str | Path = DEFAULT_WEIGHTS, device: str = "auto") -> Classifier:
    """The classifier of a weights folder; a folder that cannot be used raises CheckpointError, whatever is wrong."""
    model, config, ood_tensors = load_model(weights_dir)
    try:
        clf = Classifier(model, config, ood_tensors, device)
    except (KeyError, TypeError, ValueError) as e:  # a section of config.json without the values it needs
        raise CheckpointError(f"{Path(weights_dir) / CONFIG_FILE} lacks what this version of the code needs "
                              f"({type(e).__name__}: {e}).") from None
    clf.weights_dir = Path(weights_dir)  # where its record (the model card's figures) is: checkpoint.read_card
    return clf

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

from . import ood
from .checkpoint import DEFAULT_WEIGHTS, load_model, metadata_spec
from .gradcam import gradcam, overlay
from .image import eval_transform, open_image
from .quality import check
from .runtime import optimize

RISK_TEXT = {
    "high": "High concern: please see a dermatologist soon (within a few weeks).",
    "moderate": "Some concern: have this spot checked by a doctor or dermatologist.",
    "low": "Low concern: keep an eye on it. See a doctor if it changes in size, shape or colour, "
           "bleeds or itches, or looks different from your other moles (the ABCDE signs).",
    "uncertain": "The model is unsure about this photo: have the spot checked by a doctor to be safe.",
    "out_of_scope": "This does not look like a close-up photo of skin, so no assessment was made.",
}
PHOTO_TYPE_NAMES = {"dermoscopic": "Dermoscopy image", "clinical": "Phone or camera photo"}
# What the kind of photo means for how far to trust the answer, in plain words (the app shows it).
PHOTO_TYPE_TEXT = {
    "dermoscopic": "This looks like a dermoscopy image (taken through a skin magnifier with its own light). "
                   "Most of the photos the model learned from are of this kind.",
    "clinical": "This looks like an ordinary camera or phone photo. The model learned from far fewer of these "
                "(a few hundred, from one clinic in Brazil), so treat its answer as a rough guide and let a "
                "doctor look at the spot if you are worried.",
}
OUT_OF_SCOPE_MESSAGE = ("This picture does not look like a close-up of a skin spot, so the model will not guess. "
                        "Please upload a sharp, well-lit close-up of the spot, filling most of the frame.")


@dataclass
class Prediction:
    probabilities: dict[str, float]
    label: str                          # class id with the highest probability
    risk: str                           # "high" | "moderate" | "low" | "uncertain" | "out_of_scope"
    advice: str
    in_scope: bool = True
    warnings: list[str] = field(default_factory=list)
    ood_distance: float | None = None
    photo_type: str | None = None       # "dermoscopic" | "clinical"; None for weights without a photo-type head
    # Grad-CAM of the predicted class, (H', W') in [0, 1] over the centred square the model saw; None when
    # out of scope. gradcam.overlay(photo, heatmap) draws it over the photo (or a thumbnail of it).
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def malignant_probability(self) -> float:
        return self.probabilities["melanoma"] + self.probabilities["other_cancer"]


# for weights whose config.json lacks fitted thresholds: never "high", "moderate" from an even chance
DEFAULT_THRESHOLDS = {"melanoma_high": float("inf"), "malignant_high": float("inf"),
                      "melanoma": 0.5, "malignant": 0.5, "uncertain_max_prob": 0.5}


def risk_level(probs: dict[str, float], thresholds: dict) -> str:
    """high / moderate / uncertain / low from the class probabilities and a set of thresholds."""
    th = {**DEFAULT_THRESHOLDS, **thresholds}
    mel, mal = probs["melanoma"], probs["melanoma"] + probs["other_cancer"]
    if mel >= th["melanoma_high"] or mal >= th["malignant_high"]:
        return "high"
    if mel >= th["melanoma"] or mal >= th["malignant"]:
        return "moderate"
    if max(probs.values()) < th["uncertain_max_prob"]:
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
            raise ValueError("These weights' out-of-scope gate was fitted on other features than this version "
                             "measures. Fit it again: python -m training.calibrate --run <the training run>.")
        # The fast path (ONNX Runtime on CPU, see runtime.py); Grad-CAM uses self.model's small head only.
        self.runner = optimize(self.model, config["preprocessing"]["input_size"], self.device)

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
    def _distance(self, style: torch.Tensor) -> torch.Tensor | None:
        return ood.distance(style, self.ood) if self.ood else None

    def fitted(self, section: str, photo_type: str | None) -> dict:
        """config[section] with the values fitted for this photo type (config[section]["by_photo_type"]) on top."""
        values = self.config.get(section, {})
        return {**values, **values.get("by_photo_type", {}).get(photo_type, {})}

    def risk(self, probs: dict[str, float], photo_type: str | None = None) -> str:
        """Risk level from the validation-chosen thresholds in config.json (see training/calibrate.py),
        those of the photo's type where the weights have them."""
        return risk_level(probs, self.fitted("thresholds", photo_type))

    def _result(self, img: Image.Image, p: np.ndarray, distance, heatmap: np.ndarray, photo_type) -> Prediction:
        probs = {c: float(v) for c, v in zip(self.classes, p, strict=True)}
        label = max(probs, key=probs.get)
        q = check(img)
        d = None if distance is None else float(distance)
        in_scope = ood.in_scope(q, d, self.fitted("ood", photo_type))
        risk = self.risk(probs, photo_type) if in_scope else "out_of_scope"
        return Prediction(probs, label, risk, RISK_TEXT[risk], in_scope, q.warnings, d, photo_type=photo_type,
                          heatmap=heatmap if in_scope else None)

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
        # the label-mix offset of a photo type whose network was trained with one (training/train.py)
        offset = torch.tensor([c.get("logit_offset", [0.0] * len(self.classes)) for c in calibration],
                              device=logits.device)
        logits = (logits.float() + offset) / temperature
        probs = torch.softmax(logits, 1).cpu().numpy()
        dist = self._distance(style)
        cams = gradcam(self.model, maps, meta, logits.argmax(1))
        return [self._result(img, p, None if dist is None else dist[i], cam, t)
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
    model, config, ood_tensors = load_model(weights_dir)
    return Classifier(model, config, ood_tensors, device)

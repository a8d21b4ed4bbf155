"""The out-of-scope gate ("ood" in config.json and in the code): fitted by training/calibrate.py, applied by
the Classifier and measured by training/evaluate.py and training/scope_check.py, all with the functions below.

A picture is refused (Prediction.in_scope False, risk "out_of_scope", with a refusal reason) when it fails the
limits of the photo type the head chose: cheap checks (flat picture, too little skin colour, pixel noise) and
the style distance: the Mahalanobis distance to the nearest (class, photo type) centre, in a whitened PCA space
of the within-group covariance of the train split, under a quantile of the validation distances of that type.

The style is the mean and standard deviation over space of each channel at a middle level of the backbone
(LEVEL): what textures and colours the picture is made of. The pooled features at the end of the network are
shaped by the four classes and by every change of the training recipe, so alone they served worse (the
comparison is in docs/model_card.md). Weights may measure both ("spaces" in config.json's ood section): each
space's distance is divided by its scale (the median train distance in that space), and the gate's distance is
the larger of the two, so a picture far from the lesions in either space is refused.

A distance only knows the lesions, and furred animals, stained tissue or a portrait can lie as near them as a
real photo. Weights may also hold a learned non-skin measure ("nonskin." tensors, fitted by training/nonskin.py):
a logistic regression on the style, lesions of the train split against pictures that are not skin. Where they
do, the distance and the non-skin measure each get half the refused share of validation lesions (SPLIT_QUANTILE),
and a picture over either limit is refused. Weights may further hold an ImageNet non-skin measure (skin_measure.py,
limit `imagenet_max`), checked the same way.
"""
from __future__ import annotations

import numpy as np
import torch

from .quality import Quality

LEVEL = 3                 # the backbone feature level whose style the gate measures (timm's feature_info index)
COMPONENTS = 256          # whitened PCA components of the distance
QUANTILE = 0.995          # validation distances under the threshold: ~0.5 % of real lesions refused
SKIN_QUANTILE = 0.01      # train and validation skin-coloured share under the limit
SHARPNESS_QUANTILE = 0.995  # train and validation sharpness (pixel noise) under the limit
SPLIT_QUANTILE = 1 - (1 - QUANTILE) / 2  # each of two learned measures: half of the refused share
NONSKIN = "nonskin."      # the non-skin measure's tensors: mean, std, weight, bias


def style(maps: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature maps -> (B, 2C): the mean and standard deviation over space of each channel."""
    return torch.cat([maps.mean((2, 3)), maps.flatten(2).std(2)], 1)


def fit(features: np.ndarray, groups: np.ndarray, components: int = COMPONENTS) -> dict[str, torch.Tensor]:
    """The gate's tensors (saved beside the network's) from train-split features, one centre per group present
    (a group: a class, or a class and photo type)."""
    from sklearn.covariance import LedoitWolf
    names, index = np.unique(groups, return_inverse=True)
    mean = features.mean(0)
    group_means = np.stack([features[index == g].mean(0) for g in range(len(names))])
    cov = LedoitWolf().fit(features - group_means[index]).covariance_
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:components]
    projection = (vecs[:, order] / np.sqrt(vals[order])).T                # (k, D): whitening projection
    centres = (group_means - mean) @ projection.T
    return {"mean": torch.from_numpy(mean), "projection": torch.from_numpy(projection.astype(np.float32)),
            "centres": torch.from_numpy(centres.astype(np.float32))}


def distance(features: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Root-mean-square whitened distance of each row of features to the nearest centre."""
    z = (features.float() - tensors["mean"]) @ tensors["projection"].T
    d = ((z[:, None, :] - tensors["centres"][None]) ** 2).sum(-1)
    return torch.sqrt(d.min(1).values / z.shape[1])


SPACES = ("style", "features")  # what the gate can measure: the style of LEVEL, the pooled features


def fit_spaces(spaces: dict[str, np.ndarray], groups: np.ndarray, components: int = COMPONENTS) -> dict:
    """The gate's tensors for each space in `spaces` (name -> train-split rows): the style's under their plain
    names, another space's under "<name>.", each with its "scale", the median of its train distances."""
    out = {}
    for name, x in spaces.items():
        tensors = fit(x, groups, components)
        tensors["scale"] = distance(torch.from_numpy(x), tensors).median().reshape(1)
        out.update({(k if name == "style" else f"{name}.{k}"): v for k, v in tensors.items()})
    return out


def space(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor] | None:
    """One space's tensors out of the gate's (None when the weights do not measure it)."""
    prefix = "" if name == "style" else name + "."
    found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
    return found if "centres" in found else None


def score(inputs: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The gate's distance of each row: over the spaces the weights measure (of `inputs`, name -> rows), the
    largest distance over its space's scale. Weights made before spaces had scales: the plain style distance."""
    out = None
    for name, x in inputs.items():
        t = space(tensors, name)
        if t is None:
            continue
        d = distance(x, t) / (t["scale"].to(x.device) if "scale" in t else 1.0)
        out = d if out is None else torch.maximum(out, d)
    if out is None:
        raise ValueError(f"the gate measures none of {sorted(inputs)}")
    return out


def fit_nonskin(skin: np.ndarray, other: np.ndarray, c: float = 0.05) -> dict[str, torch.Tensor]:
    """The non-skin measure's tensors: a class-balanced logistic regression on standardised style rows, `skin`
    (train-split photos) against `other` (pictures that are not skin)."""
    from sklearn.linear_model import LogisticRegression
    x = np.concatenate([skin, other]).astype(np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    y = np.r_[np.zeros(len(skin)), np.ones(len(other))]
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit((x - mean) / std, y)
    return {NONSKIN + k: torch.tensor(v, dtype=torch.float32).reshape(-1) for k, v in
            (("mean", mean), ("std", std), ("weight", lr.coef_[0]), ("bias", lr.intercept_))}


def nonskin(style: torch.Tensor, tensors: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The non-skin logit of each style row (higher: less like skin), or None when the weights have no measure."""
    if NONSKIN + "weight" not in tensors:
        return None
    z = (style.float() - tensors[NONSKIN + "mean"]) / tensors[NONSKIN + "std"]
    return z @ tensors[NONSKIN + "weight"] + tensors[NONSKIN + "bias"]


def fit_limits(distances: np.ndarray, qualities: list[Quality], nonskin_scores: np.ndarray | None = None
               ) -> dict[str, float]:
    """The limits of one photo type: the distance threshold from its validation images' distances (and the
    non-skin limit from their non-skin scores, where the weights have the measure; each then at SPLIT_QUANTILE),
    and the cheap checks' limits from `qualities` (skin-coloured share at its 1st percentile, sharpness at its
    99.5th)."""
    quantile = QUANTILE if nonskin_scores is None else SPLIT_QUANTILE
    extra = {} if nonskin_scores is None else {"nonskin_max": float(np.quantile(nonskin_scores, quantile))}
    return {"threshold": float(np.quantile(distances, quantile)), **extra,
            "skin_fraction_min": float(np.quantile([q.skin_fraction for q in qualities], SKIN_QUANTILE)),
            "sharpness_max": float(np.quantile([q.sharpness for q in qualities], SHARPNESS_QUANTILE))}


REFUSALS = ("flat", "no_skin", "noise", "unlike_training")  # refusal codes (texts: refusal.<code>), in check order


def refusal(q: Quality, d: float | None, limits: dict, nonskin_score: float | None = None,
            imagenet_score: float | None = None) -> str | None:
    """Why one photo type's limits refuse a picture (a code of REFUSALS), or None when they let it through:
    flat, too little skin colour or a style the non-skin measure (or the ImageNet one, skin_measure.py) takes
    for no skin, pixel noise, or a style far from every training group (where the weights have the gate)."""
    if q.flat:
        return "flat"
    if q.skin_fraction < limits.get("skin_fraction_min", 0.0) \
            or q.skin_fraction_wide < limits.get("skin_fraction_wide_min", 0.0):
        return "no_skin"
    if q.sharpness > limits.get("sharpness_max", float("inf")):
        return "noise"
    if nonskin_score is not None and nonskin_score > limits.get("nonskin_max", float("inf")):
        return "no_skin"
    if imagenet_score is not None and imagenet_score > limits.get("imagenet_max", float("inf")):
        return "no_skin"
    threshold = limits.get("threshold")
    if d is not None and threshold is not None and d > threshold:
        return "unlike_training"
    return None

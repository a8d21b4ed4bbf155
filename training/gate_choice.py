"""What the out-of-scope gate measures (model/ood.py: the style, the pooled features, or both), chosen without the
test split: on the development non-skin pictures (training.ood_check --set development) and the validation rows.

    python -m training.calibrate --run runs/long3 --no-test --gate-spaces style features
    python -m training.gate_choice --weights runs/long3/weights --data ../shared/data/skin-lesions \
        ../shared/data/isic2017 --clinical-data ../shared/data/skin-photos runs/phone-skin

The weights must be calibrated with every space. For each choice of spaces, each photo type's distance threshold
is refitted as calibration fits it (ood.QUANTILE of that type's validation distances); a picture is refused when
the cheap checks of its photo type refuse it or its distance is over that type's threshold. The rule, written
before its figures (docs/training.md): the choice that refuses the most development pictures; among equals, the
one with fewer spaces. Then calibrate again with the chosen --gate-spaces.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from model import ood
from model.checkpoint import NO_LESION, load_model, metadata_spec
from model.image import eval_transform, open_image
from model.photo_types import fitted
from model.quality import check
from model.runtime import run_all
from training.data import PHOTO_TYPES, SkinDataset
from training.evaluate import split_rows
from training.inference import network_outputs
from training.ood_check import development_images

CHOICES = (("style",), ("features",), ("style", "features"))


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


def photo_type_names(config) -> list[str]:
    """The weights' photo types; a network without the photo-type head answers everything as the first type."""
    return list(config.get("photo_types") or PHOTO_TYPES[:1])


def photo_types_of(logits, names, n: int) -> np.ndarray:
    logits = np.zeros((n, 1)) if logits is None else np.asarray(logits)
    return np.array([names[i] for i in logits.argmax(1)])


def only(tensors: dict, spaces) -> dict:
    """The gate's tensors of `spaces` alone."""
    keep = {}
    for name in spaces:
        keep.update({(k if name == "style" else f"{name}.{k}"): v for k, v in ood.space(tensors, name).items()})
    return keep


def verdicts(config, tensors, spaces, val: dict, pictures: dict) -> dict:
    """Refitted thresholds and what they refuse, for one choice of spaces."""
    names = photo_type_names(config)
    gate = only(tensors, spaces)
    score = {who: ood.score({k: part[k] for k in spaces}, gate).numpy()
             for who, part in (("val", val), ("dev", pictures))}
    threshold = {t: float(np.quantile(score["val"][val["type"] == t], ood.QUANTILE)) for t in names
                 if (val["type"] == t).any()}

    def refused(who, part):
        far = np.array([score[who][i] > threshold.get(t, threshold[names[0]]) for i, t in enumerate(part["type"])])
        return far | part["cheap_refused"]

    val_refused, dev_refused = refused("val", val), refused("dev", pictures)
    lesion = val["lesion"]
    return {"spaces": list(spaces), "thresholds": threshold,
            "development_refused": int(dev_refused.sum()), "development_pictures": int(len(dev_refused)),
            "development_not_refused": [n for n, r in zip(pictures["names"], dev_refused, strict=True) if not r],
            "val_lesions_refused": {t: float(val_refused[lesion & (val["type"] == t)].mean()) for t in threshold}}


def cheap_refused(config, images, types) -> np.ndarray:
    return np.array([ood.refusal(check(im), None, fitted(config, "ood", t)) is not None
                     for im, t in zip(images, types, strict=True)])


def main(args):
    weights = Path(args.weights)
    model, config, tensors = load_model(weights)
    if ood.space(tensors, "features") is None:
        raise SystemExit(f"{weights} has no gate on the pooled features: calibrate with --gate-spaces style features")
    spec, pre = metadata_spec(config), config["preprocessing"]
    names = photo_type_names(config)
    rows = split_rows(args.data, args.clinical_data, spec, weights / "split.csv", "val")
    out = network_outputs(model, SkinDataset(rows, None, eval_transform(pre), spec))
    val_types = photo_types_of(out.photo_logits, names, len(rows))
    val = {"style": torch.from_numpy(out.style), "features": torch.from_numpy(out.features), "type": val_types,
           "lesion": rows["label"].to_numpy() != NO_LESION,
           "cheap_refused": cheap_refused(config, [open_image(p) for p in rows["path"]], val_types)}
    dev = development_images()
    pictures = picture_outputs(model, list(dev.values()), pre, spec)
    dev_types = photo_types_of(pictures["photo_logits"].numpy(), names, len(dev))
    pictures.update(type=dev_types, names=list(dev), cheap_refused=cheap_refused(config, list(dev.values()), dev_types))
    results = [verdicts(config, tensors, spaces, val, pictures) for spaces in CHOICES]
    best = max(results, key=lambda r: (r["development_refused"], -len(r["spaces"])))
    report = {"weights": str(weights), "choices": results, "chosen": best["spaces"],
              "rule": "most development pictures refused; among equals, fewer spaces"}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a weights folder calibrated with --gate-spaces style features")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--clinical-data", nargs="*", default=[])
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    main(p.parse_args())

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

With --non-skin FOLDER (training/nonskin.py), each choice is also tried with the learned non-skin measure, fitted
here on the train split against that folder's pictures: the distance and the non-skin measure then each get half
the refused share (ood.SPLIT_QUANTILE), and the measure counts as one more space among equals. A choice with it
is shipped by calibrating again with --non-skin FOLDER.
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
from training import nonskin
from training.data import PHOTO_TYPES, SkinDataset
from training.evaluate import split_rows
from training.inference import network_outputs, picture_outputs
from training.ood_check import development_images

CHOICES = (("style",), ("features",), ("style", "features"))


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


def verdicts(config, tensors, spaces, val: dict, pictures: dict, non_skin: bool = False) -> dict:
    """Refitted thresholds and what they refuse, for one choice of spaces (and the non-skin measure, whose
    scores are then val["nonskin"] and pictures["nonskin"])."""
    names = photo_type_names(config)
    gate = only(tensors, spaces)
    quantile = ood.SPLIT_QUANTILE if non_skin else ood.QUANTILE
    score = {who: ood.score({k: part[k] for k in spaces}, gate).numpy()
             for who, part in (("val", val), ("dev", pictures))}
    threshold = {t: float(np.quantile(score["val"][val["type"] == t], quantile)) for t in names
                 if (val["type"] == t).any()}
    nonskin_max = {t: float(np.quantile(val["nonskin"][val["type"] == t], quantile)) for t in threshold} \
        if non_skin else {}

    def refused(who, part):
        out = part["cheap_refused"].copy()
        for i, t in enumerate(part["type"]):
            t = t if t in threshold else names[0]
            out[i] |= score[who][i] > threshold[t] or (non_skin and part["nonskin"][i] > nonskin_max[t])
        return out

    val_refused, dev_refused = refused("val", val), refused("dev", pictures)
    lesion = val["lesion"]
    return {"spaces": list(spaces), "non_skin": non_skin, "thresholds": threshold, "nonskin_max": nonskin_max,
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
    non_skin = getattr(args, "non_skin", None)
    if non_skin:
        train_rows = split_rows(args.data, args.clinical_data, spec, weights / "split.csv", "train")
        train = network_outputs(model, SkinDataset(train_rows, None, eval_transform(pre), spec))
        measure = nonskin.measure(model, pre, spec, train.style, train_rows["path"].to_numpy(),
                                  nonskin.pictures(non_skin))
        val["nonskin"] = ood.nonskin(val["style"], measure).numpy()
        pictures["nonskin"] = ood.nonskin(pictures["style"], measure).numpy()
    results = [verdicts(config, tensors, spaces, val, pictures, with_measure) for with_measure in
               ((False, True) if non_skin else (False,)) for spaces in CHOICES]
    best = max(results, key=lambda r: (r["development_refused"], -len(r["spaces"]) - r["non_skin"]))
    report = {"weights": str(weights), "choices": results, "chosen": best["spaces"],
              "chosen_non_skin": best["non_skin"], "non_skin_pictures": non_skin,
              "rule": "most development pictures refused; among equals, fewer spaces (the non-skin measure counts "
                      "as one)"}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a weights folder calibrated with --gate-spaces style features")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--clinical-data", nargs="*", default=[])
    p.add_argument("--non-skin", default=None, metavar="FOLDER",
                   help="also try each choice with the learned non-skin measure fitted on this folder's pictures "
                        "(training/nonskin.py)")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    main(p.parse_args())

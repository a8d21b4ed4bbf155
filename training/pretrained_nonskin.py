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
The test non-skin pictures are not read. With --write FOLDER, the weights folder with the measure built into its
gate (model/skin_measure.py) is written there and measured again as the app answers (the "app" figures).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model import load_classifier, skin_measure
from model.checkpoint import (
    NO_LESION,
    OOD_PREFIX,
    WEIGHTS_FILE,
    read_config,
    read_record,
    sha256,
    write_config,
    write_record,
)
from training import nonskin
from training.evaluate import split_rows
from training.ood_check import development_images

SIDE = skin_measure.SIDE
SKIN_ROWS = 3000    # train-split photos on the skin side (besides nonskin.RECOLOURED recoloured ones)
PICTURES = 5000     # non-skin pictures on the other side, drawn from --pictures
QUANTILE = 0.9975   # the limit: this quantile of each photo type's validation scores
BATCH = 64
ANY = "any photo type"  # the limit's key for weights without a photo-type head


@torch.inference_mode()
def embed(measure: skin_measure.SkinMeasure, images: list, side: int = SIDE) -> np.ndarray:
    """The measure's features of each picture (a path or a PIL image), squashed as the app squashes it."""
    return np.concatenate([measure.features(x).float().numpy() for x in skin_measure.batches(images, side, BATCH)])


def fit_measure(skin: np.ndarray, other: np.ndarray):
    """Higher score: less like skin."""
    x, y = np.concatenate([skin, other]), np.r_[np.zeros(len(skin)), np.ones(len(other))]
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000)).fit(x, y)


def gate_verdicts(clf, images: list) -> tuple[np.ndarray, list[str]]:
    """(refused by the weights' own gate, photo type the app gives) for each picture."""
    results = [r for i in range(0, len(images), BATCH) for r in clf.predict_batch(images[i:i + BATCH])]
    return np.array([not r.in_scope for r in results]), [r.photo_type or ANY for r in results]


def write(weights: Path, out: Path, tensors: dict, limits: dict, backbone: str, side: int, note: str) -> None:
    """A copy of the weights folder `weights` at `out` with the measure in its gate: its tensors among the gate's,
    `ood.imagenet` and each photo type's `imagenet_max` in config.json (the first type's at the top)."""
    if out.resolve() != weights.resolve():
        shutil.copytree(weights, out, dirs_exist_ok=True)
    own = OOD_PREFIX + skin_measure.PREFIX
    state = {k: v for k, v in load_file(str(weights / WEIGHTS_FILE)).items() if not k.startswith(own)}
    state.update({OOD_PREFIX + k: v.float().contiguous() for k, v in tensors.items()})
    save_file(state, str(out / WEIGHTS_FILE))
    settings = read_config(weights)
    section = settings.setdefault("ood", {})
    section["imagenet"] = {"backbone": backbone, "side": side}
    first = (settings.get("photo_types") or [None])[0]
    for photo_type, limit in limits.items():
        where = section if photo_type in (ANY, first) else section.setdefault("by_photo_type", {}).setdefault(
            photo_type, {})
        where["imagenet_max"] = limit
    settings["weights_sha256"] = sha256(out / WEIGHTS_FILE)
    write_config(out, settings)
    record = read_record(weights)
    record.setdefault("notes", {}).setdefault("ood", {})["imagenet_measure"] = note
    write_record(out, record)


def refused_by_group(val: pd.DataFrame, refused: np.ndarray) -> dict[str, dict]:
    """The share of validation lesions refused, per photo type and per collection."""
    lesion = (val["label4"] != NO_LESION).to_numpy()
    out = {}
    for rows_of in (val["photo_type"], val["source_group"]):
        for value in sorted(rows_of.unique()):
            m = (rows_of == value).to_numpy() & lesion
            out[value] = {"lesions": int(m.sum()), "refused": float(refused[m].mean())}
    return out


def measure(args) -> dict:
    clf = load_classifier(args.weights)
    split = Path(args.weights) / "split.csv"
    train = split_rows(args.data, args.clinical_data, None, split, "train")
    val = split_rows(args.data, args.clinical_data, None, split, "val")
    net = skin_measure.backbone(args.backbone)
    features = skin_measure.SkinMeasure(net)
    rows = train.sample(n=min(args.skin_rows, len(train)), random_state=0)
    side = args.side
    skin = np.concatenate([embed(features, rows["path"].tolist(), side),
                           embed(features, nonskin.recoloured(train["path"].tolist(), args.recoloured), side)])
    pictures = nonskin.pictures(args.pictures)
    random.Random(0).shuffle(pictures)
    model = fit_measure(skin, embed(features, pictures[:args.other], side))

    val_scores = model.decision_function(embed(features, val["path"].tolist(), side))
    val_gate, val_types = gate_verdicts(clf, val["path"].tolist())
    types = pd.Series(val_types)
    limits = {t: float(np.quantile(val_scores[(types == t).to_numpy()], QUANTILE)) for t in sorted(types.unique())}

    def over(scores, photo_types):
        return np.array([s > limits.get(t, np.inf) for s, t in zip(scores, photo_types, strict=True)])

    dev = development_images()
    dev_gate, dev_types = gate_verdicts(clf, list(dev.values()))
    dev_over = over(model.decision_function(embed(features, list(dev.values()), side)), dev_types)
    names = np.array(list(dev))
    val_over = over(val_scores, val_types)
    gate, both, alone = (refused_by_group(val, r) for r in (val_gate, val_gate | val_over, val_over))
    by = {k: {"lesions": gate[k]["lesions"], "refused_by_gate": gate[k]["refused"],
              "refused_with_measure": both[k]["refused"], "refused_by_measure": alone[k]["refused"]} for k in gate}
    report = {"weights": str(args.weights), "backbone": args.backbone, "side": side, "quantile": QUANTILE,
              "fitted_on": {"skin": len(skin), "not_skin": min(args.other, len(pictures))}, "limits": limits,
              "development": {"pictures": len(dev), "refused_by_gate": int(dev_gate.sum()),
                              "refused_by_measure": int(dev_over.sum()),
                              "refused_with_measure": int((dev_gate | dev_over).sum()),
                              "through_gate": names[~dev_gate].tolist(),
                              "through_both": names[~(dev_gate | dev_over)].tolist()},
              "validation_lesions": by}
    if args.write:  # the weights with the measure built in, answered as the app answers
        note = (f"ImageNet non-skin measure (model/skin_measure.py): class-balanced logistic regression on the pooled "
                f"features of the frozen {args.backbone} (each picture squashed to {side} px), {len(skin)} train-split "
                f"photos ({len(skin) - len(rows)} of them recoloured to a random MST shade) against "
                f"{report['fitted_on']['not_skin']} pictures that are not skin; each photo type's limit at the "
                f"{QUANTILE} quantile of its validation rows (the type the app gives)")
        out = Path(args.write)
        write(Path(args.weights), out, skin_measure.tensors(model, net, args.backbone), limits, args.backbone, side,
              note)
        app = load_classifier(out)
        app_dev, _ = gate_verdicts(app, list(dev.values()))
        app_val, _ = gate_verdicts(app, val["path"].tolist())
        report["app"] = {"weights": str(out), "development_refused": int(app_dev.sum()),
                         "development_through": names[~app_dev].tolist(),
                         "validation_lesions": refused_by_group(val, app_val)}
    return report


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
    p.add_argument("--out", default=None, help="write the figures to this JSON file")
    p.add_argument("--write", default=None,
                   help="also write the weights folder with the measure in its gate here, and measure it as the app")
    return p


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    torch.set_num_threads(2)
    report = measure(args)
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")

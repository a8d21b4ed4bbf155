"""Does the app refuse only what is not a close-up of skin, and answer alike whatever the skin tone or ink?

    python -m training.scope_check --weights weights/ --data ../shared/data/skin-lesions ../shared/data/isic2017 \
        --clinical-data ../shared/data/skin-photos runs/phone-skin

On the weights folder's test split, every photo answered as the app answers it (Classifier.predict_batch):
- refusals: phone and dermoscopic lesions refused, phone melanomas against other phone lesions, ISIC 2017
  images refused and taken for phone photos, the photo type recognised per type, and why photos were refused;
- the skin-tone sweep: lesion photos recoloured to each Monk Skin Tone shade (training/skin_tone.py): refused
  share and malignant-vs-benign AUC per shade, against the photos as they are;
- the ink check: benign photos with a blue marker ellipse drawn around the spot: the mean rise of their
  malignant probability;
- plain skin: the plain-skin crops of phone photos (training/skin_crops.py) answered "no lesion";
- non-skin pictures refused (training/ood_check.py's set).
The figures go into the weights folder's metrics record under "scope" (--no-write prints only).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.transforms.v2 import functional as F

from model import load_classifier, open_image
from model.checkpoint import save_metrics
from training.data import read_sources
from training.ink import ellipse_around_spot
from training.metrics import auc
from training.ood_check import natural_images, synthetic_images
from training.skin_tone import MST, recolour

BATCH = 32


def answers(clf, images, rows=None):
    """Predictions of PIL images, with the rows' age, sex and site where rows are given, in batches."""
    out = []
    for i in range(0, len(images), BATCH):
        batch = images[i:i + BATCH]
        meta = (None, None, None) if rows is None else (
            list(rows[c].iloc[i:i + BATCH]) for c in ("age_value", "sex_value", "site_value"))
        out += clf.predict_batch(batch, *meta)
    return out


def malignant(preds) -> np.ndarray:
    return np.array([p.probabilities["melanoma"] + p.probabilities["other_cancer"] for p in preds])


def refused_share(preds) -> float:
    return float(np.mean([not p.in_scope for p in preds])) if preds else float("nan")


def sweep(clf, rows, images, labels) -> dict:
    """Refused share and malignant-vs-benign AUC at each shade, and for the photos as they are."""
    is_cancer, is_benign = np.isin(labels, [0, 1]), labels == 2
    out = {}
    for shade in [None, *MST]:
        toned = images if shade is None else [F.to_pil_image(recolour(F.pil_to_tensor(im), shade)) for im in images]
        preds = answers(clf, toned, rows)
        score = malignant(preds)
        both = is_cancer | is_benign
        out[shade or "original"] = {"refused": refused_share(preds),
                                    "malignant_auc": auc(is_cancer[both], score[both]) if is_cancer.any() else None}
    base = out["original"]["malignant_auc"]
    for shade in MST:
        if base is not None:
            out[shade]["auc_change"] = out[shade]["malignant_auc"] - base
    return out


def main(args):
    clf = load_classifier(args.weights)
    split = pd.read_csv(Path(args.weights) / "split.csv", dtype=str).set_index("image_id")["split"]
    df = read_sources(args.data, args.clinical_data, skip_bad_rows=True, spec=clf.spec, check_images=False)
    df = df[df["image_id"].map(split) == args.split].reset_index(drop=True)
    images = [open_image(p) for p in df["path"]]
    preds = answers(clf, images, df)
    lesion = (df["label"] != 3).to_numpy()
    phone = (df["photo_type"] == "clinical").to_numpy()
    crop = df["source"].str.startswith("derived: corner crop").to_numpy()
    isic17 = (df["source_group"] == "ISIC 2017").to_numpy()
    sel = lambda m: [p for p, keep in zip(preds, m, strict=True) if keep]  # noqa: E731
    mel = (df["label"] == 0).to_numpy()
    figures = {
        "split": args.split,
        "phone_lesions_refused": refused_share(sel(phone & lesion)),
        "phone_melanomas_refused": refused_share(sel(phone & mel)),
        "phone_other_lesions_refused": refused_share(sel(phone & lesion & ~mel)),
        "dermoscopic_lesions_refused": refused_share(sel(~phone & lesion)),
        "isic2017_refused": refused_share(sel(isic17)),
        "isic2017_taken_for_phone": float(np.mean([p.photo_type == "clinical" for p in sel(isic17)])),
        "photo_type_recognised": {
            "dermoscopic": float(np.mean([p.photo_type == "dermoscopic" for p in sel(~phone)])),
            "clinical": float(np.mean([p.photo_type == "clinical" for p in sel(phone)]))},
        "refusal_reasons": dict(Counter(p.refusal_reason for p in preds if not p.in_scope)),
        "plain_skin_phone_crops_no_lesion": float(np.mean([p.label == "no_lesion" for p in sel(crop)])),
        "plain_skin_phone_crops": int(crop.sum()),
    }
    rng = np.random.default_rng(0)
    labels = df["label"].to_numpy()
    for kind, mask in (("phone", phone & lesion), ("dermoscopic", ~phone & lesion)):
        index = np.flatnonzero(mask)
        if len(index) > args.sweep_limit:
            index = np.sort(rng.choice(index, args.sweep_limit, replace=False))
        figures[f"skin_tone_sweep_{kind}"] = {"n": int(len(index)), **sweep(
            clf, df.iloc[index], [images[i] for i in index], labels[index])}
    benign = np.flatnonzero(labels == 2)
    if len(benign) > args.sweep_limit:
        benign = np.sort(rng.choice(benign, args.sweep_limit, replace=False))
    inked = answers(clf, [ellipse_around_spot(images[i]) for i in benign], df.iloc[benign])
    rise = malignant(inked) - malignant([preds[i] for i in benign])
    figures["ink_benign"] = {"n": int(len(benign)), "malignant_rise_mean": float(rise.mean()),
                             "malignant_rise_phone": float(rise[phone[benign]].mean()) if phone[benign].any() else None,
                             "refused_inked": refused_share(inked)}
    if args.non_skin:
        non_skin = natural_images() | synthetic_images()
        ns = clf.predict_batch(list(non_skin.values()))
        figures["non_skin_refused"] = f"{sum(not p.in_scope for p in ns)}/{len(ns)}"
    print(json.dumps(figures, indent=1))
    if args.write:
        save_metrics(args.weights, "scope", figures)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--clinical-data", nargs="*", default=[])
    p.add_argument("--split", default="test")
    p.add_argument("--sweep-limit", type=int, default=200, help="photos per kind in the sweep and the ink check")
    p.add_argument("--no-non-skin", dest="non_skin", action="store_false",
                   help="leave out the 56 non-skin test pictures (e.g. while a rule on validation is undecided)")
    p.add_argument("--no-write", dest="write", action="store_false")
    torch.set_num_threads(2)
    main(p.parse_args())

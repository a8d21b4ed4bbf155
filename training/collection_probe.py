"""How well a network's features tell the dermoscopy collections apart: the shortcut a model that learns the
lesion should not have.

    python -m training.collection_probe --weights runs/long5/weights --baseline weights \
        --split runs/long5/split.csv --data ../shared/data/skin-lesions ../shared/data/isic2017

A class-balanced logistic regression predicts the collection (HAM10000, ISIC archive, ISIC 2017) from the pooled
features of the validation split's dermoscopic lesions, in folds grouped by lesion; the figure is its balanced
accuracy (chance: one over the number of collections). Each weights folder is measured on the same rows; the
figures are printed (and written with --out), nothing else is changed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model.checkpoint import NO_LESION, load_model, metadata_spec
from model.image import eval_transform
from training.data import PHOTO_TYPES, SkinDataset
from training.evaluate import split_rows
from training.inference import network_outputs

FOLDS = 5


def probe(features: np.ndarray, collections: np.ndarray, groups: np.ndarray, folds: int = FOLDS) -> float:
    """Balanced accuracy of predicting `collections` from `features`, out of fold (folds grouped by `groups`)."""
    predicted = np.empty(len(collections), dtype=object)
    for train, held in GroupKFold(min(folds, len(set(groups)))).split(features, collections, groups):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000))
        predicted[held] = clf.fit(features[train], collections[train]).predict(features[held])
    return float(balanced_accuracy_score(collections, predicted))


def measure(weights: Path, rows) -> dict:
    model, config, _ = load_model(weights)
    spec, pre = metadata_spec(config), config["preprocessing"]
    out = network_outputs(model, SkinDataset(rows, None, eval_transform(pre), spec))
    collections = rows["source_group"].to_numpy()
    return {"weights": str(weights), "balanced_accuracy": probe(out.features, collections,
                                                                 rows["lesion_id"].to_numpy())}


def main(args):
    spec = metadata_spec(load_model(args.weights)[1])
    rows = split_rows(args.data, [], spec, Path(args.split or Path(args.weights) / "split.csv"), args.split_name)
    rows = rows[(rows["photo_type"] == PHOTO_TYPES[0]) & (rows["label"] != NO_LESION)].reset_index(drop=True)
    counts = rows["source_group"].value_counts()
    if len(counts) < 2:
        raise SystemExit(f"the {args.split_name} rows hold one collection only ({', '.join(counts.index)}): "
                         "the probe needs two or more")
    report = {"split": args.split_name, "rows": {k: int(v) for k, v in counts.items()},
              "chance": 1 / len(counts), "folds": FOLDS,
              "probes": [measure(Path(w), rows) for w in [args.weights, *args.baseline]]}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--baseline", nargs="*", default=[], help="other weights folders measured on the same rows")
    p.add_argument("--data", nargs="+", required=True, help="the dermoscopy folders")
    p.add_argument("--split", default=None, help="split.csv (default: the one in --weights)")
    p.add_argument("--split-name", default="val")
    p.add_argument("--out", default=None)
    main(p.parse_args())

"""Does metadata help, and is a photo without it answered as well as by an image-only model?

    python -m training.metadata_ablation --weights weights/ --data ../shared/data/skin-lesions

On the test rows that have age, sex and site, four answers side by side:
  network, with metadata        the shipped model as the app runs it
  network, metadata hidden      the same photos with every field "unknown" (a photo-only request)
  image-only head               a head trained without metadata on the shipped backbone's image features
  image + metadata head         the same kind of head with the metadata encoding added to its input
The two heads are multinomial logistic regressions fitted on the train split (features of the frozen
backbone, standardised), their strength chosen on the validation split: the same recipe with and without
metadata, so their difference is what metadata adds on top of these image features. Writes the figures into
config.json (metrics.metadata_ablation) and prints them.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from model.checkpoint import load_model, metadata_spec, save_metrics
from training.data import encode_metadata, read_sources
from training.evaluate import outputs_from_disk, summary_line
from training.fitting import fit_head, softmax
from training.metrics import classification_report, melanoma_scores

C_GRID = (0.001, 0.01, 0.1, 1.0)


def fit_head_by_validation(train_x, train_y, val_x, val_y):
    """training.fitting's head (standardised inputs, logistic regression), C chosen by validation melanoma AUC."""
    best = None
    for c in C_GRID:
        head = fit_head(train_x, train_y, None, c)
        y_bin, score = melanoma_scores(val_y, head(val_x))
        auc = roc_auc_score(y_bin, score) if 0 < y_bin.sum() < len(y_bin) else 0.0  # a tiny split may lack melanoma
        if best is None or auc > best[0]:
            best = (auc, c, head)
    return best[2], best[1]


def ablation(weights: Path | str, data: Path | str) -> dict:
    weights = Path(weights)
    model, config, _ = load_model(weights)
    spec, pre = metadata_spec(config), config["preprocessing"]
    t = config.get("calibration", {}).get("temperature", 1.0)
    df = read_sources([data], skip_bad_rows=True, spec=spec, check_images=False)
    split = pd.read_csv(weights / "split.csv", dtype=str).set_index("image_id")["split"]
    df["split"] = df["image_id"].map(split)
    parts = {name: df[df["split"] == name].reset_index(drop=True) for name in ("train", "val", "test")}
    feats, logits = {}, {}
    for name, part in parts.items():
        print(f"features of the {name} split ({len(part)} images)...", flush=True)
        out = outputs_from_disk(model, part, pre, spec)
        feats[name], logits[name] = out.features, out.logits
    test = parts["test"]
    has_meta = (test["age_value"].notna() & test["sex_value"].notna() & test["site_value"].notna()).values
    y = test["label"].values[has_meta]
    hidden = outputs_from_disk(model, test[has_meta], pre, spec, hide_metadata=True).logits

    y_train, y_val = parts["train"]["label"].values, parts["val"]["label"].values
    image_only, c_image = fit_head_by_validation(feats["train"], y_train, feats["val"], y_val)
    with_meta = {name: np.concatenate([feats[name], encode_metadata(parts[name], spec)], 1) for name in parts}
    image_meta, c_meta = fit_head_by_validation(with_meta["train"], y_train, with_meta["val"], y_val)

    answers = {
        "network_with_metadata": softmax(logits["test"][has_meta] / t),
        "network_metadata_hidden": softmax(hidden / t),
        "image_only_head": image_only(feats["test"][has_meta]),
        "image_and_metadata_head": image_meta(with_meta["test"][has_meta]),
    }
    results = {"rows": int(has_meta.sum()), "head_C": {"image_only": c_image, "image_and_metadata": c_meta},
               **{name: summary_line(classification_report(y, p)) for name, p in answers.items()}}
    save_metrics(weights, "metadata_ablation", results)
    print(json.dumps(results, indent=1))
    return results


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=Path("weights"))
    p.add_argument("--data", type=Path, required=True)
    return p


if __name__ == "__main__":
    ablation(**vars(get_args_parser().parse_args()))

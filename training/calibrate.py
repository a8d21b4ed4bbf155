"""After training: calibrate on the validation split, fit the out-of-scope gate, ship a weights folder.

    python -m training.calibrate --run runs/phone     # a run trained with --no-finalize

- temperature: one scalar T minimising the validation NLL of softmax(logits / T);
- thresholds: melanoma and malignant probabilities at validation sensitivity 0.90 ("have it checked") and
  at validation specificity 0.95 ("see a dermatologist soon");
- out-of-scope gate: Mahalanobis distance of the backbone's pooled features to the nearest (class, photo type)
  centre, in a whitened PCA space of the within-group covariance (train split); the threshold is the 99th
  percentile of the validation distances, so ~1 % of real lesions would be refused.
Each is fitted per photo type (dermoscopic, clinical) on that type's validation rows; config.json keeps the
dermoscopic values at the top of each section and the others under "by_photo_type".
The test split is touched only by training/evaluate.py, which runs last.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from model.checkpoint import CLASSES, load_model, save_weights
from model.image import eval_transform
from training.data import PHOTO_TYPES, SkinDataset
from training.metrics import (NO_LESION, malignant_scores, melanoma_scores, threshold_for_sensitivity,
                              threshold_for_specificity)

OOD_COMPONENTS = 256
OOD_QUANTILE = 0.99
SENSITIVITY = 0.90       # "have it checked"
SPECIFICITY = 0.95       # "see a dermatologist soon"
UNCERTAIN_MAX_PROB = 0.5


@torch.inference_mode()
def features_and_logits(model, ds, batch_size: int = 64):
    feats, logits = [], []
    for image, meta, _, _, _ in DataLoader(ds, batch_size):
        f = model.forward_features(image)
        feats.append(f)
        logits.append(model.forward_head(f, meta))
    return torch.cat(feats).numpy(), torch.cat(logits).float().numpy()


def softmax(z):
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits, y) -> float:
    grid = np.exp(np.linspace(np.log(0.3), np.log(5.0), 400))
    nll = [-np.log(softmax(logits / t)[np.arange(len(y)), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def fit_ood(train_feats, train_groups, k: int = OOD_COMPONENTS) -> dict:
    """Whitened PCA of the within-group scatter (a group: a class, or a class and photo type); returns the
    tensors for model.ood.distance, one centre per group present."""
    from sklearn.covariance import LedoitWolf
    groups, index = np.unique(train_groups, return_inverse=True)
    mean = train_feats.mean(0)
    group_means = np.stack([train_feats[index == g].mean(0) for g in range(len(groups))])
    cov = LedoitWolf().fit(train_feats - group_means[index]).covariance_
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:k]
    proj = (vecs[:, order] / np.sqrt(vals[order])).T                # (k, D): whitening projection
    centres = (group_means - mean) @ proj.T
    return {"mean": torch.from_numpy(mean), "projection": torch.from_numpy(proj.astype(np.float32)),
            "centres": torch.from_numpy(centres.astype(np.float32))}


def ood_distance(feats: np.ndarray, ood: dict) -> np.ndarray:
    z = (feats - ood["mean"].numpy()) @ ood["projection"].numpy().T
    d = ((z[:, None, :] - ood["centres"].numpy()[None]) ** 2).sum(-1)
    return np.sqrt(d.min(1) / z.shape[1])


def fit_thresholds(y, p, base: dict | None = None) -> dict:
    """Operating points on validation rows: "have it checked" at sensitivity 0.90, "see a dermatologist soon"
    at specificity 0.95. With `base` (the dermoscopy thresholds) only what the rows can support is fitted:
    phone photos have few melanomas, so their melanoma thresholds stay those of dermoscopy, and only the
    "soon" one is raised where phone photos of other lesions would otherwise cross it."""
    mel_y, mel_s = melanoma_scores(y, p)
    mal_y, mal_s = malignant_scores(y, p)
    if base is None:
        return {"melanoma": threshold_for_sensitivity(mel_y, mel_s, SENSITIVITY),
                "malignant": threshold_for_sensitivity(mal_y, mal_s, SENSITIVITY),
                "melanoma_high": threshold_for_specificity(mel_y, mel_s, SPECIFICITY),
                "malignant_high": threshold_for_specificity(mal_y, mal_s, SPECIFICITY),
                "uncertain_max_prob": UNCERTAIN_MAX_PROB}
    lesion = y != NO_LESION
    return {"malignant": threshold_for_sensitivity(mal_y, mal_s, SENSITIVITY),
            "malignant_high": threshold_for_specificity(mal_y, mal_s, SPECIFICITY),
            "melanoma_high": max(base["melanoma_high"], threshold_for_specificity(mel_y[lesion], mel_s[lesion], SPECIFICITY))}


def fit_cheap_checks(paths) -> dict:
    """Limits of the gate's cheap checks from validation images: the skin-coloured share at its 1st percentile,
    the sharpness (pixel noise) at its 99.5th, so each refuses about 1 % or 0.5 % of real lesions."""
    from model.image import open_image
    from model.quality import check
    q = [check(open_image(p)) for p in paths]
    return {"skin_fraction_min": float(np.quantile([x.skin_fraction for x in q], 0.01)),
            "sharpness_max": float(np.quantile([x.sharpness for x in q], 0.995))}


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def calibrate(model, df, split, cache, spec, pre) -> tuple[dict, dict]:
    """(config sections: calibration, thresholds, ood; the gate's tensors), fitted on the validation split,
    per photo type where the data has more than one (the first type's values are the defaults)."""
    transform = eval_transform(pre)
    parts = {}
    for name in ("train", "val"):
        m = (split == name).to_numpy(copy=True)
        parts[name] = SkinDataset(df[m], cache[torch.from_numpy(m)], transform, spec)
    tr_f, _ = features_and_logits(model, parts["train"])
    va_f, va_logits = features_and_logits(model, parts["val"])
    y_tr, y_va = parts["train"].labels.numpy(), parts["val"].labels.numpy()
    kind_tr, kind_va = parts["train"].photo_types.numpy(), parts["val"].photo_types.numpy()
    paths_va = parts["val"].df["path"].to_numpy()
    # the gate: one centre per (class, photo type), so phone photos are not measured against dermoscopy
    ood = fit_ood(tr_f, y_tr + len(CLASSES) * kind_tr)
    d_va = ood_distance(va_f, ood)
    sections = {"calibration": {"fitted_on": "validation split"},
                "thresholds": {"chosen_on": f"validation split: sensitivity {SENSITIVITY} for the plain thresholds, "
                                            f"specificity {SPECIFICITY} for the _high ones"},
                "ood": {"method": f"Mahalanobis distance to the nearest (class, photo type) centre, whitened PCA "
                                  f"({OOD_COMPONENTS} components) of the train-split backbone features",
                        "quantile_on_val": OOD_QUANTILE}}
    for k, name in enumerate(PHOTO_TYPES):
        m = kind_va == k
        if not m.any():
            continue
        t = fit_temperature(va_logits[m], y_va[m])
        p = softmax(va_logits[m] / t)
        fitted = {"calibration": {"temperature": t},
                  "thresholds": fit_thresholds(y_va[m], p, None if k == 0 else sections["thresholds"]),
                  "ood": {"threshold": float(np.quantile(d_va[m], OOD_QUANTILE)), **fit_cheap_checks(paths_va[m])}}
        for section, values in fitted.items():
            if k == 0:
                sections[section].update(values)
            else:
                sections[section].setdefault("by_photo_type", {})[name] = values
    return sections, ood


def finalize(run: Path, args, df, split, cache, seconds: float, out: Path | None = None, command: str | None = None):
    """Calibrate the best epoch on the validation split, ship it as a weights folder, evaluate it on test."""
    model, config, _ = load_model(run / "best")
    from model.checkpoint import metadata_spec
    sections, ood = calibrate(model, df, split, cache, metadata_spec(config), config["preprocessing"])
    if command is None and sys.argv[0].endswith("train.py"):
        command = "python -m training.train " + " ".join(sys.argv[1:])
    folders = {"dermoscopic": [str(d) for d in args.data], "clinical": [str(d) for d in getattr(args, "clinical_data", [])]}
    config.update(
        **sections,
        training={**config.get("training", {}), "command": command, "args": vars(args), "seed": args.seed,
                  "epochs": args.epochs, "seconds": round(seconds), "hardware": hardware(), "torch": torch.__version__,
                  "git_commit": git_commit(), "finished": time.strftime("%Y-%m-%d %H:%M")},
        data={"folders": folders, "rows": int(len(df)),
              "rows_by_photo_type": {k: int(v) for k, v in df["photo_type"].value_counts().items()},
              "split": {k: int(v) for k, v in split.value_counts().items()},
              "split_rule": "by lesion_id (the patient for phone photos; rows without one are their own lesion), "
                            "stratified by the lesion's most serious label, 70/15/15, seeded",
              "hidden_metadata": df.attrs.get("hidden_metadata", {}),
              "licence": "HAM10000 (Tschandl et al. 2018) and ISIC Archive images, CC BY-NC; PAD-UFES-20 "
                         "(Pacheco et al. 2020), CC BY 4.0; see README"})
    out = Path(out or run / "weights")
    save_weights(model, out, config, extra=ood)
    (out / "split.csv").write_bytes((run / "split.csv").read_bytes())
    print(f"calibrated: {json.dumps(sections, indent=1)}\nweights in {out}")
    from training.evaluate import evaluate
    evaluate(out, args.data, getattr(args, "clinical_data", []), split_file=out / "split.csv", summary=run / "summary.csv")


def main(args):
    """Finalize a run trained with --no-finalize: the same data folders, split and image cache as training."""
    from model.checkpoint import metadata_spec
    from training.data import load_images, read_sources
    run = Path(args.run)
    train_args = argparse.Namespace(**json.loads((run / "args.json").read_text()))
    spec = metadata_spec(load_model(run / "best")[1])
    df = read_sources(train_args.data, getattr(train_args, "clinical_data", []), skip_bad_rows=True, spec=spec)
    split = pd.read_csv(run / "split.csv", dtype=str).set_index("image_id")["split"]
    split = df["image_id"].map(split).rename("split")
    cache = load_images(df["path"], train_args.cache_size or max(train_args.size, 224))
    summary = pd.read_csv(run / "summary.csv")
    from training.train import command_line
    finalize(run, train_args, df, split, cache, seconds=float(summary["epoch_s"].sum()),
             command=f"{command_line(vars(train_args))}; python -m training.calibrate --run {run}")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder of training.train (best/, split.csv, args.json)")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

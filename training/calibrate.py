"""After training: calibrate on the validation split, fit the out-of-scope gate, ship a weights folder.

- temperature: one scalar T minimising the validation NLL of softmax(logits / T);
- thresholds: melanoma and malignant probabilities at validation sensitivity 0.90 ("have it checked") and
  at validation specificity 0.95 ("see a dermatologist soon");
- out-of-scope gate: Mahalanobis distance of the backbone's pooled features to the nearest class centre,
  in a whitened PCA space of the within-class covariance (train split); the threshold is the 99th percentile
  of the validation distances, so ~1 % of real lesions would be refused.
The test split is touched only by training/evaluate.py, which runs last.
"""
from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from model.checkpoint import load_model, save_weights
from model.image import eval_transform
from training.data import SkinDataset
from training.metrics import (MEL, OTHER, NO_LESION, malignant_scores, melanoma_scores,
                              threshold_for_sensitivity, threshold_for_specificity)

OOD_COMPONENTS = 256
OOD_QUANTILE = 0.99


@torch.inference_mode()
def features_and_logits(model, ds, batch_size: int = 64):
    feats, logits = [], []
    for image, meta, _, _ in DataLoader(ds, batch_size):
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


def fit_ood(train_feats, train_y, k: int = OOD_COMPONENTS) -> dict:
    """Whitened PCA of the within-class scatter; returns tensors for model.ood.distance."""
    from sklearn.covariance import LedoitWolf
    mean = train_feats.mean(0)
    centred = train_feats - np.stack([train_feats[train_y == c].mean(0) for c in range(train_y.max() + 1)])[train_y]
    cov = LedoitWolf().fit(centred).covariance_
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1][:k]
    proj = (vecs[:, order] / np.sqrt(vals[order])).T                # (k, D): whitening projection
    z = (train_feats - mean) @ proj.T
    centres = np.stack([z[train_y == c].mean(0) for c in range(train_y.max() + 1)])
    return {"mean": torch.from_numpy(mean), "projection": torch.from_numpy(proj.astype(np.float32)),
            "centres": torch.from_numpy(centres.astype(np.float32))}


def ood_distance(feats: np.ndarray, ood: dict) -> np.ndarray:
    z = (feats - ood["mean"].numpy()) @ ood["projection"].numpy().T
    d = ((z[:, None, :] - ood["centres"].numpy()[None]) ** 2).sum(-1)
    return np.sqrt(d.min(1) / z.shape[1])


def fit_cheap_checks(paths) -> dict:
    """Limits of the gate's cheap checks from the validation images: the skin-coloured share at its 1st percentile,
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


def finalize(run: Path, args, df, split, cache, seconds: float, out: Path | None = None):
    model, config, _ = load_model(run / "best")
    from model.checkpoint import metadata_spec
    spec, pre = metadata_spec(config), config["preprocessing"]
    transform = eval_transform(pre)
    parts = {}
    for name in ("train", "val"):
        m = torch.from_numpy((split == name).to_numpy(copy=True))
        parts[name] = SkinDataset(df[m.numpy()], cache[m], transform, spec)
    tr_f, _ = features_and_logits(model, parts["train"])
    va_f, va_logits = features_and_logits(model, parts["val"])
    y_tr, y_va = parts["train"].labels.numpy(), parts["val"].labels.numpy()

    t = fit_temperature(va_logits, y_va)
    p_va = softmax(va_logits / t)
    mel_y, mel_s = melanoma_scores(y_va, p_va)
    mal_y, mal_s = malignant_scores(y_va, p_va)
    thresholds = {
        "melanoma": threshold_for_sensitivity(mel_y, mel_s, 0.90),
        "malignant": threshold_for_sensitivity(mal_y, mal_s, 0.90),
        "melanoma_high": threshold_for_specificity(mel_y, mel_s, 0.95),
        "malignant_high": threshold_for_specificity(mal_y, mal_s, 0.95),
        "uncertain_max_prob": 0.5,
        "chosen_on": "validation split: sensitivity 0.90 for the plain thresholds, specificity 0.95 for the _high ones",
    }
    ood = fit_ood(tr_f, y_tr)
    d_va = ood_distance(va_f, ood)
    ood_cfg = {"method": f"Mahalanobis distance to the nearest class centre, whitened PCA ({OOD_COMPONENTS} components) of the train-split backbone features",
               "threshold": float(np.quantile(d_va, OOD_QUANTILE)), "quantile_on_val": OOD_QUANTILE,
               **fit_cheap_checks(df["path"][(split == "val").values])}
    command = "python -m training.train " + " ".join(sys.argv[1:]) if sys.argv[0].endswith("train.py") else None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    config.update(
        calibration={"temperature": t, "fitted_on": "validation split"},
        thresholds=thresholds, ood=ood_cfg,
        training={**config.get("training", {}), "command": command, "args": vars(args), "seed": args.seed,
                  "epochs": args.epochs, "seconds": round(seconds), "hardware": hardware(), "torch": torch.__version__,
                  "git_commit": commit, "finished": time.strftime("%Y-%m-%d %H:%M")},
        data={"source": str(args.data), "rows": int(len(df)), "split": {k: int(v) for k, v in split.value_counts().items()},
              "split_rule": "by lesion_id (rows without one are their own lesion), stratified by the lesion's most serious label, 70/15/15, seeded",
              "licence": "HAM10000 (Tschandl et al. 2018) and ISIC Archive images, CC BY-NC; see README"})
    out = Path(out or run / "weights")
    save_weights(model, out, config, extra=ood)
    (out / "split.csv").write_bytes((run / "split.csv").read_bytes())
    print(f"calibrated: T={t:.3f}; thresholds {thresholds}; ood threshold {ood_cfg['threshold']:.3f}; weights in {out}")
    from training.evaluate import evaluate
    evaluate(out, args.data, split_file=out / "split.csv", summary=run / "summary.csv")

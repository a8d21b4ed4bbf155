"""Evaluate a weights folder on the test split and write the figures into its record.json and PNG plots.

    python -m training.evaluate --weights weights/ --data ../shared/data/skin-lesions \
        --clinical-data ../shared/data/skin-photos runs/phone-skin

Uses the split saved in the weights folder (split.csv), so the test rows are the ones training never saw.
Images go through the same loading and transform as the app (model.image), one by one from disk.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model import ood, skin_measure
from model.checkpoint import BENIGN, CLASSES, MEL, NO_LESION, OTHER, load_model, metadata_spec, save_metrics
from model.classifier import Classifier
from model.image import eval_transform, open_image
from model.quality import check
from training.data import DIAGNOSES, PHOTO_TYPES, SkinDataset, read_sources
from training.fitting import softmax
from training.inference import Outputs, network_outputs
from training.metrics import (
    auc,
    bootstrap_ci,
    classification_report,
    ece,
    grouped_interval,
    malignant_scores,
    melanoma_scores,
    roc_points,
    sens_spec,
)


def outputs_from_disk(model, df: pd.DataFrame, pre: dict, spec, hide_metadata: bool = False,
                      tta: bool = False) -> Outputs:
    """The network over df's images, each opened from disk and transformed as the app does."""
    return network_outputs(model, SkinDataset(df, None, eval_transform(pre), spec, hide_metadata=hide_metadata),
                           tta=tta)


def summary_line(rep: dict) -> dict:
    keys = ("macro_auc", "melanoma_auc", "malignant_auc", "balanced_accuracy", "balanced_accuracy_lesions", "ece")
    return {k: round(rep[k], 4) for k in keys} | {"no_lesion_recall": round(rep["no_lesion"]["sensitivity"], 4)}


def as_app_answers(clf, df: pd.DataFrame, batch_size: int = 32) -> pd.DataFrame:
    """The rows of df answered exactly as the app answers them (Classifier.predict_batch): photo type,
    per-type calibration and thresholds, the out-of-scope gate. One row per image: probabilities, risk,
    in_scope, photo_type."""
    rows = []
    for i in range(0, len(df), batch_size):
        part = df.iloc[i:i + batch_size]
        preds = clf.predict_batch(*(list(part[c]) for c in ("path", "age_value", "sex_value", "site_value")))
        rows += [{**r.probabilities, "risk": r.risk, "in_scope": r.in_scope, "photo_type": r.photo_type} for r in preds]
    return pd.DataFrame(rows, index=df.index)


def photo_type_report(df: pd.DataFrame, answers: pd.DataFrame) -> dict:
    """Figures of one photo type as a user meets them, with 95 % intervals from resampling lesions (patients).

    flagged: the answer says to see a doctor (risk moderate or high); a refused photo is not flagged."""
    y = df["label"].to_numpy()
    groups = df["lesion_id"].where(df["lesion_id"] != "", df["image_id"]).to_numpy()
    p = answers[[c["id"] for c in CLASSES]].to_numpy()
    mal_prob = p[:, MEL] + p[:, OTHER]
    malignant, benign, lesion = np.isin(y, [MEL, OTHER]), y == BENIGN, y != NO_LESION
    flagged = answers["risk"].isin(["moderate", "high"]).to_numpy()
    high = (answers["risk"] == "high").to_numpy()
    refused = ~answers["in_scope"].to_numpy(bool)

    def share(mask, of):
        return lambda i: mask[i][of[i]].mean() if of[i].any() else np.nan

    def auc_of(pos, neg, score):
        return lambda i: auc(pos[i][pos[i] | neg[i]], score[i][pos[i] | neg[i]])

    stats = {"malignant_auc": auc_of(malignant, benign, mal_prob),
             "melanoma_auc": auc_of(y == MEL, lesion & (y != MEL), p[:, MEL]),
             "sensitivity_malignant_flagged": share(flagged, malignant),
             "benign_called_high": share(high, benign),
             "benign_flagged": share(flagged, benign),
             "lesions_refused": share(refused, lesion),
             "no_lesion_recall": share(p.argmax(1) == NO_LESION, y == NO_LESION)}
    everything = np.arange(len(y))
    out = {"n": int(len(y)), "n_by_class": {c["id"]: int((y == k).sum()) for k, c in enumerate(CLASSES)},
           "lesions_patients": int(len(set(groups[lesion])))}
    for name, stat in stats.items():
        value = stat(everything)
        out[name] = None if np.isnan(value) else float(value)
        out[name + "_ci95"] = None if np.isnan(value) else grouped_interval(stat, groups)
    if "diagnosis_index" in df:  # which benign (and malignant) diagnoses get "see a doctor": BKL and DF, not NV?
        dx = df["diagnosis_index"].to_numpy()
        out["flagged_by_diagnosis"] = {
            DIAGNOSES[k]: {"n": int((dx == k).sum()), "flagged": float(flagged[dx == k].mean())}
            for k in np.unique(dx) if 0 <= k < len(DIAGNOSES) and DIAGNOSES[k] != "NONE"}
    if answers["photo_type"].notna().all():
        out["photo_type_accuracy"] = float((answers["photo_type"] == df["photo_type"]).mean())
    out["ece"] = ece(y, p)
    return out


def split_rows(data, clinical_data, spec, split_file: Path, split_name: str) -> pd.DataFrame:
    """The rows of every folder that the split file puts in split_name."""
    data = [data] if isinstance(data, (str, Path)) else data
    every = read_sources(data, clinical_data, skip_bad_rows=True, spec=spec, check_images=False)
    split = pd.read_csv(split_file, dtype=str).set_index("image_id")["split"]
    every = every[every["image_id"].map(split) == split_name].reset_index(drop=True)
    if every.empty:
        raise SystemExit(f"no {split_name} rows: is the split file made for this data?")
    return every


def main_report(y, logits, t: float, thresholds: dict) -> tuple[dict, np.ndarray, np.ndarray]:
    """(the report with intervals and operating points, calibrated probabilities, raw probabilities)."""
    p_raw, p = softmax(logits), softmax(logits / t)
    rep = classification_report(y, p)
    rep["ece_before_calibration"] = ece(y, p_raw)
    rep["melanoma_auc_ci95"] = bootstrap_ci(y, p, melanoma_scores)
    rep["malignant_auc_ci95"] = bootstrap_ci(y, p, malignant_scores)
    for name, fn in (("melanoma", melanoma_scores), ("malignant", malignant_scores)):
        if name in thresholds:
            sensitivity, specificity = sens_spec(*fn(y, p), thresholds[name])
            rep[f"{name}_operating_point"] = {"threshold": thresholds[name], "sensitivity": sensitivity,
                                              "specificity": specificity}
    return rep, p, p_raw


def metadata_report(model, df, pre, spec, p, t: float) -> dict | None:
    """The rows that have all three fields, answered with them and with them hidden."""
    has_meta = (df["age_value"].notna() & df["sex_value"].notna() & df["site_value"].notna()).values
    if not has_meta.any():
        return None
    y = df["label"].values[has_meta]
    hidden = outputs_from_disk(model, df[has_meta], pre, spec, hide_metadata=True).logits
    return {"rows_with_metadata": int(has_meta.sum()),
            "with_metadata": summary_line(classification_report(y, p[has_meta])),
            "metadata_hidden": summary_line(classification_report(y, softmax(hidden / t)))}


def ood_report(df, out, ood_tensors: dict, limits: dict) -> dict:
    """The out-of-scope gate on dermoscopic test rows (`out`: their network outputs), with the dermoscopic
    limits: what it refuses, and by which test."""
    y = df["label"].values
    cheap_ok = np.array([ood.refusal(check(open_image(path)), None, limits) is None for path in df["path"]])
    inputs = {"style": torch.from_numpy(out.style), "features": torch.from_numpy(out.features)}
    far = ood.score(inputs, ood_tensors).numpy() > limits["threshold"]
    nonskin = ood.nonskin(inputs["style"], ood_tensors)
    if nonskin is not None:  # the learned non-skin measure refuses as a cheap check does ("no_skin")
        cheap_ok &= nonskin.numpy() <= limits.get("nonskin_max", np.inf)
    if (found := skin_measure.from_weights(limits, ood_tensors)) is not None:  # and so does the ImageNet one
        cheap_ok &= skin_measure.scores(*found, list(df["path"])) <= limits.get("imagenet_max", np.inf)
    refused, lesion = far | ~cheap_ok, y != NO_LESION
    return {"threshold": limits["threshold"],
            "test_lesions_refused": float(refused[lesion].mean()),
            "test_lesions_refused_by_distance": float(far[lesion].mean()),
            "test_lesions_refused_by_cheap_checks": float((~cheap_ok)[lesion].mean()),
            "test_all_refused": float(refused.mean())}


def evaluate(weights: Path | str, data, clinical_data=(), split_file: Path | str | None = None,
             tta: bool = False, split_name: str = "test") -> tuple[dict, tuple]:
    """The figures of a weights folder on one split (its dermoscopic rows, and every photo type and collection
    as the app answers them), and the arrays (labels, probabilities, raw probabilities) its plots need.
    Writes nothing: see write_evaluation."""
    weights = Path(weights)
    model, config, ood_tensors = load_model(weights)
    spec, pre = metadata_spec(config), config["preprocessing"]
    every = split_rows(data, clinical_data, spec, Path(split_file or weights / "split.csv"), split_name)
    # the main report: the dermoscopic rows (all rows when the split holds none, e.g. a held-out phone source)
    df = every[every["photo_type"] == PHOTO_TYPES[0]].reset_index(drop=True)
    if df.empty:
        df = every
    y = df["label"].values
    t = config.get("calibration", {}).get("temperature", 1.0)
    out = outputs_from_disk(model, df, pre, spec)
    rep, p, p_raw = main_report(y, out.logits, t, config.get("thresholds", {}))
    results = {"split": split_name, "n": int(len(df)), "temperature": t, "report": rep}
    if tta:
        tta_logits = outputs_from_disk(model, df, pre, spec, tta=True).logits
        results["tta"] = summary_line(classification_report(y, softmax(tta_logits / t)))
    if (metadata := metadata_report(model, df, pre, spec, p, t)) is not None:
        results["metadata"] = metadata
    if ood_tensors:
        results["ood"] = ood_report(df, out, ood_tensors, config["ood"])
    answers = as_app_answers(Classifier(model, config, ood_tensors, device="cpu"), every)
    results["by_photo_type"] = {name: photo_type_report(every[every["photo_type"] == name],
                                                        answers[every["photo_type"] == name])
                                for name in PHOTO_TYPES if (every["photo_type"] == name).any()}
    dermoscopic = every["photo_type"] == PHOTO_TYPES[0]
    sources = every.loc[dermoscopic, "source_group"].unique()
    if len(sources) > 1:  # an unseen clinic may be more like the weaker one
        results["by_source"] = {}
        for source in sources:
            rows = dermoscopic & (every["source_group"] == source)
            results["by_source"][source] = photo_type_report(every[rows], answers[rows])
    print(json.dumps({"test": summary_line(rep), "melanoma_auc_ci95": rep["melanoma_auc_ci95"],
                      "malignant_auc_ci95": rep["malignant_auc_ci95"], "ece_before": rep["ece_before_calibration"],
                      **{k: results[k] for k in ("metadata", "ood", "tta", "by_photo_type", "by_source")
                         if k in results},
                      **{k: rep[k] for k in ("melanoma_operating_point", "malignant_operating_point") if k in rep}},
                     indent=1))
    return results, (y, p, p_raw)


def write_evaluation(weights: Path, results: dict, arrays, summary=None) -> None:
    """What the CLIs write: the figures into the record under their split's name, and the plots (test only)."""
    save_metrics(weights, results["split"], results)
    if results["split"] == "test":
        plots(weights, *arrays, results["report"], summary)


def plots(out: Path, y, p, p_raw, rep, summary=None):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [c["name"] for c in CLASSES]
    fig, ax = plt.subplots(figsize=(5, 5))
    curves = (("Melanoma vs rest", melanoma_scores, "melanoma_auc"),
              ("Malignant vs benign", malignant_scores, "malignant_auc"))
    for label, fn, key in curves:
        fpr, tpr = roc_points(*fn(y, p))
        ax.plot(fpr, tpr, label=f"{label} (AUC {rep[key]:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, test split")
    ax.legend(loc="lower right")
    fig.savefig(out / "roc.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    cm = np.array(rep["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(cm / cm.sum(1, keepdims=True), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(j, i, cm[i, j], ha="center", va="center", color="black")
    ax.set(xticks=range(4), yticks=range(4), xticklabels=names, yticklabels=names, xlabel="predicted", ylabel="true",
           title="Confusion matrix, test split")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.savefig(out / "confusion_matrix.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    for probs, label in ((p_raw, "before"), (p, "after temperature")):
        conf, correct = probs.max(1), probs.argmax(1) == y
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(conf, edges) - 1, 0, 9)
        xs = [conf[idx == b].mean() for b in range(10) if (idx == b).any()]
        ys = [correct[idx == b].mean() for b in range(10) if (idx == b).any()]
        ax.plot(xs, ys, "o-", label=f"{label} (ECE {ece(y, probs):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="confidence", ylabel="accuracy", title="Reliability, test split")
    ax.legend()
    fig.savefig(out / "reliability.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    if summary and Path(summary).is_file():
        s = pd.read_csv(summary)
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].plot(s["epoch"], s["train_loss"], label="train loss")
        ax[0].set(xlabel="epoch", title="Training loss")
        for c in ("val_macro_auc", "val_melanoma_auc", "val_malignant_auc", "val_balanced_accuracy"):
            ax[1].plot(s["epoch"], s[c], label=c.removeprefix("val_"))
        ax[1].set(xlabel="epoch", title="Validation")
        ax[1].legend()
        fig.savefig(out / "training_curves.png", dpi=110, bbox_inches="tight")
        plt.close(fig)


def main(args):
    results, arrays = evaluate(args.weights, args.data, args.clinical_data, args.split, tta=args.tta,
                               split_name=args.split_name)
    if args.write:
        write_evaluation(Path(args.weights), results, arrays)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights")
    p.add_argument("--data", required=True, nargs="+", help="folder(s) of dermoscopic images")
    p.add_argument("--clinical-data", nargs="*", default=[], help="folder(s) of clinical (phone) photos")
    p.add_argument("--split", default=None, help="split.csv (default: the one in the weights folder)")
    p.add_argument("--split-name", default="test")
    p.add_argument("--tta", action="store_true", help="also report the four-flip test-time augmentation")
    p.add_argument("--no-write", dest="write", action="store_false", help="print only; leave the record as it is")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

"""Metrics on a split: scikit-learn for the curves, a few lines for what it does not have (ECE, bootstrap)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score, roc_curve

from model.checkpoint import BENIGN, CLASS_IDS, MEL, NO_LESION, OTHER

LESION_CLASSES = [MEL, OTHER, BENIGN]


def class_weights(y: np.ndarray, num_classes: int, power: float = 0.5) -> np.ndarray:
    """Per-class weights ~ 1/frequency**power, mean 1 over the samples (power 0.5: square-root balancing)."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, counts, 1) ** -power
    return (w / (w[y].mean() if len(y) else 1)).astype(np.float32)


def auc(y_true, score):
    return float(roc_auc_score(y_true, score)) if 0 < np.sum(y_true) < len(y_true) else float("nan")


def melanoma_scores(y, p):
    return (y == MEL).astype(int), p[:, MEL]


def malignant_scores(y, p):
    """Malignant (melanoma + other cancer) vs benign, on the lesions (no-lesion rows left out)."""
    keep = y != NO_LESION
    return np.isin(y[keep], [MEL, OTHER]).astype(int), p[keep][:, MEL] + p[keep][:, OTHER]


def ece(y, p, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence (equal-width bins)."""
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(total)


def sens_spec(y_bin, score, threshold):
    pos, neg = y_bin == 1, y_bin == 0
    return float((score[pos] >= threshold).mean()), float((score[neg] < threshold).mean())


def threshold_for_sensitivity(y_bin, score, target: float = 0.90) -> float:
    """The highest threshold whose sensitivity is >= target (so specificity is as high as it can be)."""
    pos = np.sort(score[y_bin == 1])[::-1]
    k = int(np.ceil(target * len(pos))) - 1
    return float(pos[max(k, 0)])


def threshold_for_specificity(y_bin, score, target: float = 0.95) -> float:
    neg = np.sort(score[y_bin == 0])
    return float(neg[min(int(np.ceil(target * len(neg))), len(neg) - 1)])


def classification_report(y: np.ndarray, p: np.ndarray) -> dict:
    y, p = np.asarray(y), np.asarray(p)
    pred = p.argmax(1)
    report = {"n": int(len(y))}
    cm = confusion_matrix(y, pred, labels=range(len(CLASS_IDS)))
    aucs = []
    for c, name in enumerate(CLASS_IDS):
        tp, fn = cm[c, c], cm[c].sum() - cm[c, c]
        fp = cm[:, c].sum() - tp
        tn = cm.sum() - tp - fn - fp
        aucs.append(auc((y == c).astype(int), p[:, c]))
        report[name] = {"n": int(cm[c].sum()), "sensitivity": float(tp / max(tp + fn, 1)),
                        "specificity": float(tn / max(tn + fp, 1)), "auc": aucs[-1]}
    report["macro_auc"] = float(np.nanmean(aucs))
    report["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
    lesion = np.isin(y, LESION_CLASSES)
    lesion_pred = np.array(LESION_CLASSES)[p[lesion][:, LESION_CLASSES].argmax(1)]
    report["balanced_accuracy_lesions"] = float(balanced_accuracy_score(y[lesion], lesion_pred))
    report["melanoma_auc"] = auc(*melanoma_scores(y, p))
    report["malignant_auc"] = auc(*malignant_scores(y, p))
    report["ece"] = ece(y, p)
    report["confusion_matrix"] = cm.tolist()
    return report


def bootstrap_ci(y, p, fn, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> list[float]:
    """Percentile bootstrap interval of fn(y, p) -> (y_bin, score) AUC, resampling rows."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        yb, s = fn(y[i], p[i])
        if 0 < yb.sum() < len(yb):
            values.append(roc_auc_score(yb, s))
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]


def grouped_interval(stat, groups, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> list[float]:
    """Percentile bootstrap interval of stat(row indices) -> float, resampling whole groups (lesions, patients),
    so several photos of one lesion do not count as independent evidence. NaN draws (one class only) are skipped."""
    rng = np.random.default_rng(seed)
    codes = np.unique(np.asarray(groups), return_inverse=True)[1]
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    values = []
    for _ in range(n):
        v = stat(np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))]))
        if not np.isnan(v):
            values.append(v)
    if not values:
        return [float("nan")] * 2
    return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]


def roc_points(y_bin, score):
    fpr, tpr, _ = roc_curve(y_bin, score)
    return fpr, tpr

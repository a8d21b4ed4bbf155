"""Small models fitted on top of a network's outputs: the temperature of the softmax, logistic-regression heads."""
from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The scalar T (on a grid from 0.3 to 5) that minimises the NLL of softmax(logits / T)."""
    grid = np.exp(np.linspace(np.log(0.3), np.log(5.0), 400))
    nll = [-np.log(softmax(logits / t)[np.arange(len(y)), y] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def fit_head(x: np.ndarray, y: np.ndarray, weights: np.ndarray, C: float):
    """A standardised logistic regression on x; returns x -> class probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=C, max_iter=3000).fit(scaler.transform(x), y, sample_weight=weights)
    return lambda z: clf.predict_proba(scaler.transform(z))

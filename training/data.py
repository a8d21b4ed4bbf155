"""The training data: metadata.csv validated row by row, the lesion-grouped split, and the Dataset.

Format (the one of ../shared/data/skin-lesions, documented in the README):
    metadata.csv with columns image_id, file, label4, and optionally age, sex, site, lesion_id;
    `file` is a path relative to the folder that holds metadata.csv.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from model.checkpoint import CLASSES
from model.image import ImageError, center_square, open_image
from model.metadata import MetadataSpec

CLASS_IDS = [c["id"] for c in CLASSES]
REQUIRED = ["image_id", "file", "label4"]
SPLIT_FILE = "split.csv"


class DataError(ValueError):
    """Problems in the data folder, one line per bad row."""


def read_metadata(data_dir: Path | str, skip_bad_rows: bool = False, spec: MetadataSpec | None = None,
                  check_images: bool = True) -> pd.DataFrame:
    """metadata.csv -> a clean DataFrame (label as class index, age/sex/site parsed).

    Every problem names its row (the line number in the CSV) and what is wrong. With skip_bad_rows the
    bad rows are dropped with a warning; otherwise the first ones are raised together as a DataError.
    """
    data_dir = Path(data_dir)
    csv = data_dir / "metadata.csv"
    if not csv.is_file():
        raise DataError(f"{csv} not found: --data must be a folder with metadata.csv and the images it lists.")
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{csv} lacks the column(s) {', '.join(missing)}; see the README for the format.")
    for c in ("age", "sex", "site", "lesion_id"):
        if c not in df.columns:
            df[c] = ""
    spec = spec or MetadataSpec()
    problems, keep, rows = [], [], []
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{csv.name} line {i + 2} (image_id {r.image_id!r})"
        try:
            if r.label4 not in CLASS_IDS:
                raise ValueError(f"unknown label {r.label4!r}; expected one of {', '.join(CLASS_IDS)}")
            age, sex, site = spec.parse_age(r.age), spec.parse_sex(r.sex), spec.parse_site(r.site)
            path = data_dir / r.file
            if check_images:
                if not path.is_file():
                    raise ValueError(f"image file {r.file!r} not found")
                try:
                    with Image.open(path) as im:
                        im.verify()
                except Exception as e:  # PIL raises many types for broken files
                    raise ValueError(f"image file {r.file!r} cannot be read ({type(e).__name__})") from None
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        keep.append(i)
        rows.append((CLASS_IDS.index(r.label4), age, sex, site))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        if not skip_bad_rows:
            raise DataError(f"{len(problems)} bad row(s) in {csv}:\n  {shown}\nFix them, or pass --skip-bad-rows to leave them out.")
        print(f"warning: skipping {len(problems)} bad row(s) in {csv}:\n  {shown}")
    if not keep:
        raise DataError(f"{csv} has no usable rows.")
    out = df.iloc[keep].reset_index(drop=True)
    out[["label", "age_value", "sex_value", "site_value"]] = pd.DataFrame(rows, dtype=object)
    out["label"] = out["label"].astype(int)
    out["path"] = [str(data_dir / f) for f in out["file"]]
    return out


def make_split(df: pd.DataFrame, seed: int = 0, fractions=(0.7, 0.15, 0.15)) -> pd.Series:
    """train/val/test per row, by lesion (rows without lesion_id are lesions of their own), stratified.

    A lesion's stratum is its most serious diagnosis (lesion-free patches follow the lesion they came from).
    """
    group = df["lesion_id"].where(df["lesion_id"] != "", "img:" + df["image_id"])
    order = {CLASS_IDS.index(c): rank for rank, c in enumerate(["melanoma", "other_cancer", "benign", "no_lesion"])}
    stratum = df.groupby(group)["label"].agg(lambda s: min(s, key=order.__getitem__))
    rng = random.Random(seed)
    assignment = {}
    for _, groups in sorted(stratum.groupby(stratum)):
        names = sorted(groups.index)
        rng.shuffle(names)
        n_train = round(fractions[0] * len(names))
        n_val = round(fractions[1] * len(names))
        for j, g in enumerate(names):
            assignment[g] = "train" if j < n_train else "val" if j < n_train + n_val else "test"
    return group.map(assignment).rename("split")


def load_or_make_split(df: pd.DataFrame, run_dir: Path, seed: int) -> pd.Series:
    """Reuse run_dir/split.csv when it exists (resume, evaluate), else make it and write it."""
    path = Path(run_dir) / SPLIT_FILE
    if path.is_file():
        saved = pd.read_csv(path, dtype=str).set_index("image_id")["split"]
        split = df["image_id"].map(saved)
        if split.isna().any():
            raise DataError(f"{path} does not cover {int(split.isna().sum())} image(s) of the data; "
                            "use the data it was made for, or a new run folder.")
        return split.rename("split")
    split = make_split(df, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image_id": df["image_id"], "label4": df["label4"], "split": split}).to_csv(path, index=False)
    return split


def load_images(paths, size: int) -> torch.Tensor:
    """Decode every image once into a uint8 (N, 3, size, size) tensor: the 2-core machine then only computes."""
    from tqdm import tqdm
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, p in enumerate(tqdm(paths, desc=f"decode {size}px", leave=False, mininterval=5)):
        img = center_square(open_image(p))
        out[i] = F.pil_to_tensor(img.resize((size, size), Image.Resampling.BICUBIC))
    return out


def encode_metadata(df: pd.DataFrame, spec: MetadataSpec) -> np.ndarray:
    """(rows, spec.dim) float32: each row's parsed age, sex and site, encoded as the model takes them."""
    return np.array([spec.encode(a, s, t) for a, s, t in zip(df["age_value"], df["sex_value"], df["site_value"])],
                    dtype=np.float32).reshape(len(df), spec.dim)


class SkinDataset(Dataset):
    """(image, metadata vector, label, row index). Metadata dropout hides fields so the model learns to
    answer well without them: p_all hides all three at once, p_field each one on its own."""

    def __init__(self, df: pd.DataFrame, images: torch.Tensor, transform, spec: MetadataSpec,
                 p_all: float = 0.0, p_field: float = 0.0):
        self.df, self.images, self.transform, self.spec = df.reset_index(drop=True), images, transform, spec
        self.p_all, self.p_field = p_all, p_field
        self.meta = torch.from_numpy(encode_metadata(self.df, spec))
        self.labels = torch.tensor(self.df["label"].values, dtype=torch.long)

    def __len__(self):
        return len(self.df)

    def __getitem__(self, i):
        meta = self.meta[i]
        if self.p_all or self.p_field:
            r = self.df.iloc[i]
            hide_all = random.random() < self.p_all
            fields = [None if hide_all or random.random() < self.p_field else v
                      for v in (r["age_value"], r["sex_value"], r["site_value"])]
            meta = torch.tensor(self.spec.encode(*fields), dtype=torch.float32)
        return self.transform(self.images[i]), meta, self.labels[i], i

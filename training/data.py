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

from model.checkpoint import CLASS_IDS, NO_LESION
from model.image import center_square, open_image
from model.metadata import MetadataSpec
from model.photo_types import PHOTO_TYPES

# The fine-grained diagnoses the training-only diagnosis head learns (HAM10000's vocabulary; PAD-UFES-20 and
# ISIC 2017 names mapped onto it); each sums into one of the app's four classes.
DIAGNOSES = ["NV", "BKL", "DF", "VASC", "MEL", "BCC", "SCC", "AKIEC", "NONE"]
DIAGNOSIS_ALIASES = {"NEV": "NV", "SEK": "BKL", "ACK": "AKIEC"}
REQUIRED = ["image_id", "file", "label4"]
SPLIT_FILE = "split.csv"
METADATA_FIELDS = ("age", "sex", "site")
IGNORE = -100  # cross_entropy's ignore_index: a target that is not to be learned
MISSINGNESS_GAP = 0.10  # a field whose share of missing values differs this much between labels is a shortcut


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
    for c in ("age", "sex", "site", "lesion_id", "source", "diagnosis"):
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
            raise DataError(f"{len(problems)} bad row(s) in {csv}:\n  {shown}\n"
                            "Fix them, or pass --skip-bad-rows to leave them out.")
        print(f"warning: skipping {len(problems)} bad row(s) in {csv}:\n  {shown}")
    if not keep:
        raise DataError(f"{csv} has no usable rows.")
    out = df.iloc[keep].reset_index(drop=True)
    out[["label", "age_value", "sex_value", "site_value"]] = pd.DataFrame(rows, dtype=object)
    out["label"] = out["label"].astype(int)
    out["path"] = [str(data_dir / f) for f in out["file"]]
    out["diagnosis_index"] = list(map(diagnosis_index, out["diagnosis"], out["label"]))
    return out


def diagnosis_index(diagnosis: str, label: int) -> int:
    """The row's index in DIAGNOSES, or IGNORE when the column is empty or names another diagnosis."""
    if label == NO_LESION:
        return DIAGNOSES.index("NONE")
    name = DIAGNOSIS_ALIASES.get(diagnosis.upper(), diagnosis.upper())
    return DIAGNOSES.index(name) if name in DIAGNOSES else IGNORE


def source_group(source: str) -> str:
    """The collection an image comes from, from the `source` column: what leave-source-out holds out."""
    for name in ("PAD-UFES-20", "ISIC 2017", "HAM10000"):
        if name in source:
            return name
    return "ISIC archive" if "ISIC" in source else (source or "unknown")


def read_sources(dermoscopic, clinical=(), skip_bad_rows: bool = False, spec: MetadataSpec | None = None,
                 check_images: bool = True) -> pd.DataFrame:
    """Several data folders as one table, each row with its photo_type (the folder's kind) and source_group;
    metadata fields whose missingness follows the label within a source are hidden (hide_shortcuts)."""
    frames = []
    for photo_type, folders in zip(PHOTO_TYPES, (dermoscopic, clinical), strict=True):
        for folder in folders:
            df = read_metadata(folder, skip_bad_rows, spec, check_images)
            frames.append(df.assign(photo_type=photo_type, photo_type_index=PHOTO_TYPES.index(photo_type)))
    df = pd.concat(frames, ignore_index=True)
    dupes = df["image_id"][df["image_id"].duplicated()]
    if len(dupes):
        raise DataError(f"{len(dupes)} image_id(s) appear in more than one data folder, e.g. {dupes.iloc[0]!r}.")
    df["source_group"] = df["source"].map(source_group)
    df = group_near_duplicates(df)
    return hide_shortcuts(df)


NEAR_DUPLICATE_BITS = 4  # difference hashes this close (of 64 bits) are taken for images of one lesion


def difference_hash(path: str) -> int:
    """A 64-bit perceptual hash (dHash: is each pixel brighter than its right neighbour, on a 9x8 grey copy)."""
    with Image.open(path) as im:
        im.draft("L", (64, 64))
        a = np.asarray(im.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    return int(np.packbits((a[:, 1:] > a[:, :-1]).ravel()).view(">u8")[0])


def group_near_duplicates(df: pd.DataFrame) -> pd.DataFrame:
    """Rows without a lesion_id whose images are near-copies of another row's (the ISIC Archive holds some
    lesions under several ids) get that row's lesion_id, or a shared "dup:" one, so a split cannot put the
    copies on both sides. Only rows without a lesion_id are hashed; they are compared with every row."""
    loose = (df["lesion_id"] == "").to_numpy()
    if not loose.any():
        return df
    hashes = np.array([difference_hash(p) for p in df["path"]], dtype=np.uint64)
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1).astype(bool)
    df, before = df.copy(), df["lesion_id"].copy()
    ids, column = df["image_id"].to_numpy(), df.columns.get_loc("lesion_id")
    for i in np.flatnonzero(loose):
        close = np.flatnonzero((bits[i] != bits).sum(1) <= NEAR_DUPLICATE_BITS)
        close = close[close != i]
        if len(close):
            j = close[0]
            df.iat[i, column] = df["lesion_id"].iat[j] or f"dup:{ids[min(i, j)]}"
    df.attrs["near_duplicates"] = int((df["lesion_id"] != before).sum())
    return df


def hide_shortcuts(df: pd.DataFrame, gap: float = MISSINGNESS_GAP) -> pd.DataFrame:
    """Within each source, a metadata field that is missing far more often for one label than for another
    (in the ISIC archive images, age/sex/site are missing for 2 in 3 melanomas; PAD-UFES-20 lacks sex for
    71 % of benign photos and no melanoma) would teach the model "missing means cancer". Such a field is
    hidden (set to unknown) for every row of that source, in training and evaluation alike.
    df.attrs["hidden_metadata"] records what was hidden."""
    lesions = df[df["label"] != NO_LESION]
    hidden = {}
    for group, rows in lesions.groupby("source_group"):
        for name in METADATA_FIELDS:
            missing = rows[f"{name}_value"].isna().groupby(rows["label"]).mean()
            if len(missing) > 1 and missing.max() - missing.min() > gap:
                hidden.setdefault(group, []).append(name)
    df = df.copy()
    for group, names in hidden.items():
        for name in names:
            df.loc[df["source_group"] == group, f"{name}_value"] = None
    df.attrs["hidden_metadata"] = hidden
    return df


def lesion_groups(df: pd.DataFrame) -> pd.Series:
    """The unit a split keeps on one side (and an interval resamples): the lesion, or the patient for phone
    photos; a row without a lesion_id is a lesion of its own."""
    return df["lesion_id"].where(df["lesion_id"] != "", "img:" + df["image_id"])


def write_split(df: pd.DataFrame, split: pd.Series, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"image_id": df["image_id"], "label4": df["label4"], "split": split}).to_csv(path, index=False)


def hold_out(df, split, source: str, run: Path):
    """Leave-source-out: every row of one source goes to the split "held_out" (neither trained on nor used to
    choose anything), and the run's split.csv says so; `training.evaluate --split-name held_out` tests on it."""
    held = (df["source_group"] == source).to_numpy()
    if not held.any():
        raise SystemExit(f"--hold-out-source {source!r} matches no row; sources: {sorted(df['source_group'].unique())}")
    split = split.where(~held, "held_out")
    write_split(df, split, run / SPLIT_FILE)
    print(f"held out {int(held.sum())} images of {source!r}")
    return split


def make_split(df: pd.DataFrame, seed: int = 0, fractions=(0.7, 0.15, 0.15)) -> pd.Series:
    """train/val/test per row, by lesion (rows without lesion_id are lesions of their own), stratified.

    A lesion's stratum is its most serious diagnosis (lesion-free patches follow the lesion they came from).
    """
    group = lesion_groups(df)
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


def load_or_make_split(df: pd.DataFrame, run_dir: Path, seed: int, extend: bool = False) -> pd.Series:
    """Reuse run_dir/split.csv when it exists (resume, evaluate), else make it and write it.

    extend: rows the saved split lacks (a data folder added since) get a split of their own, by the same rule,
    and are appended; the saved rows keep their side, so an earlier test split stays unseen."""
    path = Path(run_dir) / SPLIT_FILE
    if path.is_file():
        saved = pd.read_csv(path, dtype=str).set_index("image_id")["split"]
        split = df["image_id"].map(saved).rename("split")
        new = split.isna()
        if not new.any():
            return split
        if not extend:
            raise DataError(f"{path} does not cover {int(new.sum())} image(s) of the data; "
                            "use the data it was made for, or a new run folder.")
        group = lesion_groups(df)
        known = group[~new].groupby(group[~new]).first().index
        side = split[~new].groupby(group[~new]).first()
        joins = new & group.isin(known)  # a new image of a lesion already split goes to that lesion's side
        split[joins] = group[joins].map(side).values
        rest = new & ~joins
        if rest.any():
            split[rest] = make_split(df[rest], seed).values
        print(f"{path}: {int(new.sum())} new image(s) split by the same rule: {split[new].value_counts().to_dict()}")
    else:
        split = make_split(df, seed)
    write_split(df, split, path)
    return split


CACHE_MIN_SIDE = 224  # images are decoded at least this large, so training crops keep their detail


def cache_side(args) -> int:
    """The side training decodes images to: --cache-size, or the largest input size but at least CACHE_MIN_SIDE."""
    return args.cache_size or max(args.size, getattr(args, "final_size", 0), CACHE_MIN_SIDE)


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
    fields = zip(df["age_value"], df["sex_value"], df["site_value"], strict=True)
    return np.array([spec.encode(a, s, t) for a, s, t in fields], dtype=np.float32).reshape(len(df), spec.dim)


class SkinDataset(Dataset):
    """(image, metadata vector, label, photo-type target, row index). Metadata dropout hides fields so the
    model learns to answer well without them: p_all hides all three at once, p_field each one on its own.

    `images`: the rows' decoded images (load_images), or None to open each from disk as the app does.
    `hide_metadata` gives every row unknown age, sex and site.
    `restyle` (training only) makes a dermoscopic image look like a phone photo with probability p_restyle;
    such an image is of neither kind, so its photo-type target is IGNORE. `ink` (training only) draws
    marker-pen marks on an image of any class with probability p_ink (training/ink.py); `tone` recolours it to
    another skin tone with probability p_tone (training/skin_tone.py)."""

    def __init__(self, df: pd.DataFrame, images: torch.Tensor | None, transform, spec: MetadataSpec,
                 p_all: float = 0.0, p_field: float = 0.0, restyle=None, p_restyle: float = 0.0,
                 hide_metadata: bool = False, ink=None, p_ink: float = 0.0, tone=None,
                 p_tone: float = 0.0):
        self.df, self.images, self.transform, self.spec = df.reset_index(drop=True), images, transform, spec
        self.p_all, self.p_field = p_all, p_field
        self.restyle, self.p_restyle = restyle, p_restyle
        self.ink, self.p_ink, self.tone, self.p_tone = ink, p_ink, tone, p_tone
        self.meta = torch.from_numpy(encode_metadata(self.df, spec))
        if hide_metadata:
            self.meta[:] = torch.tensor(spec.unknown())
        self.labels = torch.tensor(self.df["label"].values, dtype=torch.long)
        index = self.df["photo_type_index"] if "photo_type_index" in self.df else pd.Series(0, index=self.df.index)
        self.photo_types = torch.tensor(index.values, dtype=torch.long)
        diagnoses = self.df.get("diagnosis_index", pd.Series(IGNORE, index=self.df.index))
        self.diagnoses = torch.tensor(diagnoses.values, dtype=torch.long)

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
        image = open_image(self.df["path"][i]) if self.images is None else self.images[i]
        photo_type = self.photo_types[i]
        dermoscopic = photo_type == PHOTO_TYPES.index("dermoscopic")
        if self.restyle is not None and dermoscopic and random.random() < self.p_restyle:
            image, photo_type = self.restyle(image), torch.tensor(IGNORE)
        if self.tone is not None and random.random() < self.p_tone:
            image = self.tone(image)
        if self.ink is not None and random.random() < self.p_ink:
            image = self.ink(image)
        return self.transform(image), meta, self.labels[i], photo_type, i


def collection_weights(df: pd.DataFrame) -> np.ndarray:
    """A sampling weight per row that gives every collection (source_group) the same label mix: the mix of all
    rows, over the classes the collection has. Melanoma is 8 % of HAM10000's lesions and 29 % of the ISIC
    archive's, and phone photos are mostly cancers, so without this whatever tells the collections apart
    (scaling, vignette, rulers, camera) also predicts the label. Each collection keeps its total weight."""
    overall = df["label"].value_counts(normalize=True)
    weights = np.ones(len(df))
    for _, rows in df.groupby("source_group"):
        observed = rows["label"].value_counts(normalize=True)
        target = overall[observed.index] / overall[observed.index].sum()
        weights[df.index.get_indexer(rows.index)] = (target / observed)[rows["label"]].to_numpy()
    return weights

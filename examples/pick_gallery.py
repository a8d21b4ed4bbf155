"""Pick the app's example gallery by a fixed rule (examples/README.md), copy the images here, write gallery.csv.

    python examples/pick_gallery.py [--seed 0]

The rule never looks at the model's answers, so the examples stay honest when the weights change:
- one dermoscopic image per class (melanoma, other skin cancer, benign lesion, no lesion): a seeded random draw
  from the test rows of weights/split.csv, among rows whose label is verified (the lesion-free patches are
  derived, so for them any test row);
- one phone photo (PAD-UFES-20): a seeded random draw among the test rows of weights/split.csv when it covers
  the phone photos; otherwise among the test rows of the project's split rule (training.data.make_split, seed 0)
  applied to the phone photos alone;
- one picture that is not skin: scikit-image's `coffee` (CC0).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "examples"
DATA = ROOT.parent / "shared" / "data"
CLASSES = ["melanoma", "other_cancer", "benign", "no_lesion"]
# The true diagnosis in plain words, by the data sets' diagnosis codes.
TRUTH = {
    "MEL": "Melanoma", "BCC": "Basal cell carcinoma (a skin cancer)", "SCC": "Squamous cell carcinoma (a skin cancer)",
    "AKIEC": "Actinic keratosis (precancerous)", "AK": "Actinic keratosis (precancerous)",
    "ACK": "Actinic keratosis (precancerous)", "NV": "Mole (melanocytic nevus), benign",
    "NEV": "Mole (melanocytic nevus), benign",
    "BKL": "Benign keratosis", "SEK": "Seborrheic keratosis, benign", "SK": "Seborrheic keratosis, benign",
    "DF": "Dermatofibroma, benign", "VASC": "Vascular lesion, benign", "NORMAL_SKIN_PATCH": "Plain skin, no lesion",
}
COLUMNS = ["file", "image_id", "kind", "diagnosis", "truth", "label4", "age", "sex", "site", "source"]


def draw(rows: pd.DataFrame, seed: int) -> pd.Series:
    return rows.sort_values("image_id").sample(1, random_state=seed).iloc[0]


def test_rows(meta: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    return meta[meta["image_id"].map(split) == "test"]


def photo_split(photos: pd.DataFrame, split: pd.Series) -> tuple[pd.Series, str]:
    """The split of the phone photos by image_id, and where it comes from."""
    if photos["image_id"].isin(split.index).all():
        return split, "weights/split.csv"
    sys.path.insert(0, str(ROOT))  # `python examples/pick_gallery.py` does not put the root, and training/, on the path
    from training.data import CLASS_IDS, make_split
    df = photos.assign(label=photos["label4"].map(CLASS_IDS.index))
    own = pd.Series(make_split(df, seed=0).values, index=photos["image_id"])
    return own, "training.data.make_split(seed 0) on the phone photos"


def row(r: pd.Series, kind: str, name: str) -> dict:
    return {"file": name, "image_id": r["image_id"], "kind": kind, "diagnosis": r["diagnosis"],
            "truth": TRUTH[r["diagnosis"]], "label4": r["label4"], "age": r["age"], "sex": r["sex"], "site": r["site"],
            "source": r["source"]}


def main(seed: int) -> pd.DataFrame:
    split = pd.read_csv(ROOT / "weights" / "split.csv", dtype=str).set_index("image_id")["split"]
    lesions = pd.read_csv(DATA / "skin-lesions" / "metadata.csv", dtype=str, keep_default_na=False)
    photos = pd.read_csv(DATA / "skin-photos" / "metadata.csv", dtype=str, keep_default_na=False)
    for old in HERE.glob("gallery_*"):
        old.unlink()
    rows = []
    for label in CLASSES:
        pool = test_rows(lesions, split)
        pool = pool[(pool["label4"] == label) & ((pool["label_verified"] == "1") | (label == "no_lesion"))]
        r = draw(pool, seed)
        name = f"gallery_{label}_{r['image_id']}.jpg"
        shutil.copyfile(DATA / "skin-lesions" / r["file"], HERE / name)
        rows.append(row(r, "dermoscopic", name))
    phone_split, where = photo_split(photos, split)
    r = draw(test_rows(photos, phone_split), seed)
    name = f"gallery_phone_{r['image_id']}.jpg"
    shutil.copyfile(DATA / "skin-photos" / r["file"], HERE / name)
    rows.append(row(r, "clinical", name))
    print(f"phone photo {r['image_id']} drawn from the test rows of {where}")
    from skimage import data
    Image.fromarray(data.coffee()).save(HERE / "gallery_not_skin_coffee.webp", quality=85)
    rows.append({"file": "gallery_not_skin_coffee.webp", "image_id": "skimage_coffee", "kind": "not skin",
                 "diagnosis": "NOT_SKIN", "truth": "Not skin: a cup of coffee", "label4": "", "age": "", "sex": "",
                 "site": "", "source": "scikit-image data.coffee() (CC0, Rachel Michetti)"})
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.to_csv(HERE / "gallery.csv", index=False)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    print(main(p.parse_args().seed).to_string(index=False))

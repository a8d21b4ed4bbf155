"""Pick the app's example gallery by a fixed rule (examples/README.md), copy the images here, write gallery.csv.

    python examples/pick_gallery.py [--seed 0]

The rule never looks at the model's answers, so the examples stay honest when the weights change. Every pick is
at least MIN_GOOD_SIDE pixels a side, the size below which the app warns that a photo is small:
- one dermoscopic lesion per class (melanoma, other skin cancer, benign lesion): a seeded random draw from the test
  rows of weights/split.csv, among rows whose label is verified;
- one phone photo of a lesion (PAD-UFES-20): a seeded random draw among the test rows of weights/split.csv when it
  covers the phone photos; otherwise among the test rows of the project's split rule (training.data.make_split,
  seed 0) applied to the phone photos alone;
- plain skin: the lesion-free patches of the dermoscopy data are all 80x80, so a corner of a phone photo instead:
  a seeded draw among the test-split phone photos (the same split) of at least 2 x MIN_GOOD_SIDE pixels a side
  with a corner square of MIN_GOOD_SIDE pixels that training.skin_crops finds plain; of that photo, its most even
  such corner;
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
sys.path.insert(0, str(ROOT))  # `python examples/pick_gallery.py` does not put the root (model/, training/) on it
from model.image import open_image  # noqa: E402
from model.quality import MIN_GOOD_SIDE  # noqa: E402
from model.texts import words  # noqa: E402
from training.skin_crops import plain_skin_score  # noqa: E402

HERE = ROOT / "examples"
DATA = ROOT.parent / "shared" / "data"
CLASSES = ["melanoma", "other_cancer", "benign"]
COLUMNS = ["file", "image_id", "kind", "diagnosis", "truth", "label4", "age", "sex", "site", "source"]


def draw(rows: pd.DataFrame, seed: int) -> pd.Series:
    return rows.sort_values("image_id").sample(1, random_state=seed).iloc[0]


def test_rows(meta: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    return meta[meta["image_id"].map(split) == "test"]


def large_enough(folder: Path, files: pd.Series, side: int = MIN_GOOD_SIDE) -> pd.Series:
    """Whether each image is at least `side` pixels on its shorter side (read from the header only)."""
    return files.map(lambda f: min(Image.open(folder / f).size) >= side)


def photo_split(photos: pd.DataFrame, split: pd.Series) -> tuple[pd.Series, str]:
    """The split of the phone photos by image_id, and where it comes from."""
    if photos["image_id"].isin(split.index).all():
        return split, "weights/split.csv"
    from training.data import CLASS_IDS, make_split
    df = photos.assign(label=photos["label4"].map(CLASS_IDS.index))
    own = pd.Series(make_split(df, seed=0).values, index=photos["image_id"])
    return own, "training.data.make_split(seed 0) on the phone photos"


def plain_corner(img: Image.Image, side: int = MIN_GOOD_SIDE) -> tuple[int, int, int, int] | None:
    """The most even corner square of `side` pixels that is plain skin (training.skin_crops' test), or None."""
    w, h = img.size
    boxes = [(0, 0, side, side), (w - side, 0, w, side), (0, h - side, side, h), (w - side, h - side, w, h)]
    scored = [(score, box) for box in boxes if (score := plain_skin_score(img.crop(box))) is not None]
    return min(scored)[1] if scored else None


def row(r: pd.Series, kind: str, name: str) -> dict:
    return {"file": name, "image_id": r["image_id"], "kind": kind, "diagnosis": r["diagnosis"],
            "truth": words(f"diagnosis.{r['diagnosis']}"), "label4": r["label4"], "age": r["age"], "sex": r["sex"],
            "site": r["site"], "source": r["source"]}


def main(seed: int) -> pd.DataFrame:
    split = pd.read_csv(ROOT / "weights" / "split.csv", dtype=str).set_index("image_id")["split"]
    lesions = pd.read_csv(DATA / "skin-lesions" / "metadata.csv", dtype=str, keep_default_na=False)
    photos = pd.read_csv(DATA / "skin-photos" / "metadata.csv", dtype=str, keep_default_na=False)
    for old in HERE.glob("gallery_*"):
        old.unlink()
    rows = []
    pool = test_rows(lesions, split)
    pool = pool[(pool["label_verified"] == "1") & large_enough(DATA / "skin-lesions", pool["file"])]
    for label in CLASSES:
        r = draw(pool[pool["label4"] == label], seed)
        name = f"gallery_{label}_{r['image_id']}.jpg"
        shutil.copyfile(DATA / "skin-lesions" / r["file"], HERE / name)
        rows.append(row(r, "dermoscopic", name))

    phone_split, where = photo_split(photos, split)
    phones = test_rows(photos, phone_split)
    r = draw(phones[large_enough(DATA / "skin-photos", phones["file"])], seed)
    name = f"gallery_phone_{r['image_id']}.jpg"
    shutil.copyfile(DATA / "skin-photos" / r["file"], HERE / name)
    rows.append(row(r, "clinical", name))
    print(f"phone photo {r['image_id']} drawn from the test rows of {where}")

    big = phones[large_enough(DATA / "skin-photos", phones["file"], 2 * MIN_GOOD_SIDE)]
    corners = {p.image_id: plain_corner(open_image(DATA / "skin-photos" / p.file)) for p in big.itertuples()}
    r = draw(big[big["image_id"].map(corners).notna()], seed)
    box = corners[r["image_id"]]
    skin = r.copy()
    skin["image_id"] = f"{r['image_id']}_skin{box[0]}_{box[1]}"
    skin["diagnosis"], skin["label4"] = "NORMAL_SKIN_CROP", "no_lesion"
    skin["source"] = f"derived: corner crop {box} of PAD-UFES-20 {r['image_id']} ({r['source']})"
    name = f"gallery_no_lesion_{skin['image_id']}.jpg"
    open_image(DATA / "skin-photos" / r["file"]).crop(box).save(HERE / name, quality=92)
    rows.append(row(skin, "clinical", name))
    print(f"plain skin: corner {box} of phone photo {r['image_id']}, drawn from the test rows of {where}")

    from skimage import data
    Image.fromarray(data.coffee()).save(HERE / "gallery_not_skin_coffee.webp", quality=85)
    rows.append({"file": "gallery_not_skin_coffee.webp", "image_id": "skimage_coffee", "kind": "not skin",
                 "diagnosis": "NOT_SKIN", "truth": words("diagnosis.NOT_SKIN"), "label4": "", "age": "", "sex": "",
                 "site": "", "source": "scikit-image data.coffee() (CC0, Rachel Michetti)"})
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.to_csv(HERE / "gallery.csv", index=False)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    print(main(p.parse_args().seed).to_string(index=False))

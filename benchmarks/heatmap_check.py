"""How often does the hottest cell of the Grad-CAM heatmap fall on the lesion?

    python benchmarks/heatmap_check.py [--n 200] [--data ../shared/data/skin-lesions] [--weights weights]

A seeded sample of test-split dermoscopic lesions (weights/split.csv; no lesion-free patches). The lesion mask
comes from the photo alone: the centred square the model sees, in grey, blurred, thresholded by Otsu's method
(the darker side), keeping the dark region that does not touch the border (a dermatoscope's dark corners do),
else the largest. A hit: at least half of the hottest heatmap cell lies on the mask. Two baselines say what a
hit rate is worth: the centre cell (lesion photos are centred), and a cell drawn at random.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

# `python benchmarks/heatmap_check.py` puts benchmarks/ on the path, not the repository root that holds model/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import load_classifier, open_image
from model.image import center_square

ROOT = Path(__file__).resolve().parent.parent
MASK_SIZE = 160  # pixels a side of the square the mask is computed on


def lesion_mask(img: Image.Image) -> np.ndarray:
    grey = center_square(img).convert("L").resize((MASK_SIZE, MASK_SIZE)).filter(ImageFilter.GaussianBlur(3))
    g = np.asarray(grey, np.float32)
    dark = label(g < threshold_otsu(g))
    regions = sorted(regionprops(dark), key=lambda r: r.area, reverse=True)
    if not regions:
        return np.zeros_like(g, bool)
    inner = [r for r in regions
             if r.bbox[0] > 0 and r.bbox[1] > 0 and r.bbox[2] < MASK_SIZE and r.bbox[3] < MASK_SIZE]
    return dark == (inner or regions)[0].label


def cell_shares(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The share of each heatmap cell that lies on the mask, (H', W')."""
    rows = np.array_split(np.arange(mask.shape[0]), shape[0])
    cols = np.array_split(np.arange(mask.shape[1]), shape[1])
    return np.array([[mask[np.ix_(r, c)].mean() for c in cols] for r in rows])


def test_lesions(weights: Path, data: Path) -> pd.DataFrame:
    """The metadata rows of the test split's lesions (weights/split.csv), lesion-free patches left out."""
    split = pd.read_csv(weights / "split.csv", dtype=str)
    meta = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    in_test = meta["image_id"].isin(split.loc[split["split"] == "test", "image_id"])
    return meta[in_test & (meta["label4"] != "no_lesion")]


def main(args: argparse.Namespace) -> dict:
    clf = load_classifier(args.weights)
    test = test_lesions(Path(args.weights), Path(args.data))
    sample = test.sort_values("image_id").sample(min(args.n, len(test)), random_state=args.seed)
    hits, centre, chance, skipped = [], [], [], 0
    for r in sample.itertuples():
        img = open_image(Path(args.data) / r.file)
        pred = clf.predict(img, r.age, r.sex, r.site)
        mask = lesion_mask(img)
        if pred.heatmap is None or not mask.any():  # refused as out of scope, or no dark region found
            skipped += 1
            continue
        cam = pred.heatmap
        on = cell_shares(mask, cam.shape) >= 0.5
        hits.append(bool(on.flat[int(cam.argmax())]))
        centre.append(bool(on[cam.shape[0] // 2, cam.shape[1] // 2]))
        chance.append(float(on.mean()))
    out = {"images": len(sample), "measured": len(hits), "skipped": skipped, "heatmap_cells": list(cam.shape),
           "hottest_cell_on_lesion": round(float(np.mean(hits)), 3),
           "centre_cell_on_lesion": round(float(np.mean(centre)), 3),
           "random_cell_on_lesion": round(float(np.mean(chance)), 3), "seed": args.seed}
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200, help="test-split lesions to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "skin-lesions"))
    p.add_argument("--weights", default=str(ROOT / "weights"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "heatmap_check.json")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

"""Plain-skin crops from phone photos: the "no lesion" class for clinical photos.

    python -m training.skin_crops --data ../shared/data/skin-photos --output runs/phone-skin

The spot sits in the middle of these photos, so plain skin is found in the corners. Each photo's four
corner squares (CROP_FRACTION of the shorter side) are scored and the most even one is kept when it passes
every test below; a photo gives at most one crop. Written: OUTPUT/images/*.jpg, OUTPUT/metadata.csv (the
columns of the data format, label4 no_lesion, the parent's patient as lesion_id so the crop always falls on
its parent's side of a split, and the parent's metadata) and OUTPUT/contact_sheet.png to check them by eye.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from model.image import open_image

CROP_FRACTION = 0.3
DARK_DROP = 35        # a pixel this much darker than the crop's median luminance is a spot, a hair or a shadow
DARK_SHARE_MAX = 0.003
INK_SHARE_MAX = 0.0005 # pixels bluer than red: surgical-marker ink, clothing, background
SPREAD_MAX = 14.0     # luminance standard deviation: plain skin is even
LUMINANCE_MIN = 60.0  # not in the dark


def corner_boxes(w: int, h: int) -> list[tuple[int, int, int, int]]:
    s = int(CROP_FRACTION * min(w, h))
    return [(0, 0, s, s), (w - s, 0, w, s), (0, h - s, s, h), (w - s, h - s, w, h)]


def plain_skin_score(crop: Image.Image) -> float | None:
    """Luminance spread of an even, skin-coloured crop; None when it is not plain skin."""
    a = np.asarray(crop.resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    med = float(np.median(lum))
    if (med < LUMINANCE_MIN or (lum < med - DARK_DROP).mean() > DARK_SHARE_MAX
            or (b > r).mean() > INK_SHARE_MAX or not r.mean() > g.mean() > b.mean() * 0.9):
        return None
    spread = float(lum.std())
    return spread if spread <= SPREAD_MAX else None


def main(args):
    data, out = Path(args.data), Path(args.output)
    (out / "images").mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    rows, thumbs = [], []
    for r in df.itertuples(index=False):
        img = open_image(data / r.file)
        scored = [(plain_skin_score(img.crop(box)), box) for box in corner_boxes(*img.size)]
        scored = [(s, box) for s, box in scored if s is not None]
        if not scored:
            continue
        _, box = min(scored)
        crop = img.crop(box)
        image_id = f"{r.image_id}_skin{box[0]}_{box[1]}"
        crop.save(out / "images" / f"{image_id}.jpg", quality=92)
        thumbs.append(crop.resize((96, 96)))
        rows.append({**r._asdict(), "image_id": image_id, "file": f"images/{image_id}.jpg",
                     "diagnosis": "NORMAL_SKIN_CROP", "label4": "no_lesion", "label_verified": 0,
                     "source": f"derived: corner crop {box} of PAD-UFES-20 {r.image_id}"})
    pd.DataFrame(rows, columns=df.columns).to_csv(out / "metadata.csv", index=False)
    cols = 16
    sheet = Image.new("RGB", (cols * 96, -(-len(thumbs) // cols) * 96), "white")
    for i, t in enumerate(thumbs):
        sheet.paste(t, (i % cols * 96, i // cols * 96))
    sheet.save(out / "contact_sheet.png")
    print(f"{len(rows)} plain-skin crops from {len(df)} photos in {out} (check {out / 'contact_sheet.png'} by eye)")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of phone photos in the data format (metadata.csv + images)")
    p.add_argument("--output", default="runs/phone-skin")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())

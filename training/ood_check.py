"""How well the out-of-scope gate refuses pictures that are not skin close-ups.

    python -m training.ood_check --weights weights/

The set: the sample pictures that scikit-learn and scikit-image ship (a cat, a person, coffee, coins, a
page of text, a rocket, the moon, ...), each whole and as a centre crop, plus synthetic ones (solid colours,
noise, gradients, a document, a screenshot-like layout). The lesions side of the measure (lesions wrongly
refused) comes from training/evaluate.py on the test split. Writes the figures into config.json.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image, ImageDraw

from model import load_classifier
from model.checkpoint import save_metrics

SKIMAGE = ["astronaut", "brick", "camera", "cat", "chelsea", "checkerboard", "clock", "coffee", "coins",
           "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo", "moon",
           "page", "rocket", "text"]


def natural_images() -> dict[str, Image.Image]:
    from sklearn.datasets import load_sample_images
    out = {f"sklearn_{i}": Image.fromarray(a) for i, a in enumerate(load_sample_images().images)}
    try:
        import skimage.data
        for name in SKIMAGE:
            try:
                a = getattr(skimage.data, name)()
            except Exception:  # a picture that skimage would have to download
                continue
            a = a.astype(np.uint8) if a.dtype != bool else (a * 255).astype(np.uint8)
            out[f"skimage_{name}"] = Image.fromarray(a)
    except ImportError:
        pass
    for name, img in list(out.items()):
        w, h = img.size
        out[name + "_crop"] = img.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return out


def synthetic_images(seed: int = 0) -> dict[str, Image.Image]:
    rng = np.random.default_rng(seed)
    out = {}
    for rgb in [(0, 0, 0), (255, 255, 255), (128, 128, 128), (220, 180, 150), (255, 0, 0), (0, 90, 200)]:
        out[f"solid_{rgb}"] = Image.new("RGB", (320, 320), rgb)
    out["noise_uniform"] = Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8))
    out["noise_gaussian"] = Image.fromarray(np.clip(rng.normal(128, 40, (320, 320, 3)), 0, 255).astype(np.uint8))
    g = np.linspace(0, 255, 320, dtype=np.uint8)
    channels = [np.tile(g, (320, 1)), np.tile(g[:, None], (1, 320)), np.full((320, 320), 90, np.uint8)]
    out["gradient"] = Image.fromarray(np.stack(channels, -1))
    doc = Image.new("RGB", (400, 520), "white")
    d = ImageDraw.Draw(doc)
    for y in range(30, 500, 18):
        d.text((30, y), "Lorem ipsum dolor sit amet, consectetur adipiscing elit " + str(y), fill="black")
    out["document"] = doc
    shot = Image.new("RGB", (640, 400), (240, 240, 245))
    d = ImageDraw.Draw(shot)
    d.rectangle((0, 0, 640, 40), fill=(40, 60, 120))
    for i in range(6):
        d.rectangle((20, 60 + 55 * i, 620, 100 + 55 * i), outline=(120, 120, 120), fill=(255, 255, 255))
        d.text((30, 72 + 55 * i), f"Item {i}: settings and options", fill=(20, 20, 20))
    out["screenshot"] = shot
    shapes = Image.new("RGB", (320, 320), (30, 120, 60))
    d = ImageDraw.Draw(shapes)
    for _ in range(12):
        x, y = rng.integers(0, 280, 2)
        d.ellipse((x, y, x + 40, y + 40), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    out["shapes"] = shapes
    return out


def main(args):
    clf = load_classifier(args.weights)
    images = natural_images() | synthetic_images()
    results = clf.predict_batch(list(images.values()))
    refused = {n: not r.in_scope for n, r in zip(images, results, strict=True)}
    passed = [n for n, v in refused.items() if not v]
    figures = {"images": len(images), "refused": sum(refused.values()),
               "refused_share": sum(refused.values()) / len(images),
               "not_refused": passed,
               "photo_types": {t: sum(r.photo_type == t for r in results) for t in clf.photo_types}}
    print(json.dumps(figures, indent=1))
    if args.write:
        save_metrics(args.weights, "out_of_scope", figures)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights")
    p.add_argument("--no-write", dest="write", action="store_false", help="print only; leave config.json as it is")
    main(p.parse_args())

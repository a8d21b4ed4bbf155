"""How well the out-of-scope gate refuses pictures that are not skin close-ups.

    python -m training.ood_check --weights weights/
    python -m training.ood_check --weights runs/long3/weights --set development --no-write

The test set (56): the sample pictures that scikit-learn and scikit-image ship (a cat, a person, coffee, coins,
a page of text, a rocket, the moon, ...), each whole and as a centre crop, plus synthetic ones (solid colours,
noise, gradients, a document, a screenshot-like layout). The development set, for choosing how the gate works
without reading the test set: the pictures that gradio, matplotlib, networkx, sympy and scikit-image ship and
the test set does not use (animals, a face, a tower, a fundus photo, microscopy, plots, logos), whole and in
three crops, plus other synthetic ones (seeded apart from the test set's). The lesions side of the measure
(lesions wrongly refused) comes from training/evaluate.py on the test split. Writes the test set's figures into
config.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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


# pictures that packages ship and the test set does not use: (package, path inside it)
DEVELOPMENT_FILES = [
    ("gradio", "media_assets/images/cheetah.jpg"), ("gradio", "media_assets/images/cheetah1.jpg"),
    ("gradio", "media_assets/images/groot.jpeg"), ("gradio", "media_assets/images/lion.jpg"),
    ("gradio", "media_assets/images/tower.jpg"), ("gradio", "media_assets/images/hf-logo_transpng.png"),
    ("gradio", "test_data/cheetah2.jpg"),  # not gradio's screenshot.gif: its first frame is the test set's white
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"),
    ("matplotlib", "mpl-data/sample_data/logo2.png"),
    ("networkx", "drawing/tests/baseline/test_display_complex.png"),
    ("networkx", "drawing/tests/baseline/test_display_house_with_colors.png"),
    ("networkx", "drawing/tests/baseline/test_display_labels_and_colors.png"),
    ("networkx", "drawing/tests/baseline/test_display_shortest_path.png"),
    ("networkx", "drawing/tests/baseline/test_house_with_colors.png"),
    ("skimage", "data/cell.png"), ("skimage", "data/motorcycle_left.png"), ("skimage", "data/motorcycle_right.png"),
    ("skimage", "data/retina.jpg"),
    ("sympy", "plotting/tests/test_region_or.png"), ("sympy", "plotting/tests/test_region_xor.png")]


def package_picture(package: str, path: str) -> Image.Image | None:
    import importlib.util
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(list(spec.submodule_search_locations)[0]) / path
    if not file.is_file():
        return None
    img = Image.open(file)
    if img.mode in ("RGBA", "LA", "P"):  # transparent logos on white, as a browser would show them
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img)
    return img.convert("RGB")


def plots(rng) -> dict[str, Image.Image]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = {}
    x = np.linspace(0, 10, 200)
    for kind in ("line", "bar", "scatter", "pie", "heatmap", "histogram"):
        fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
        if kind == "line":
            ax.plot(x, np.sin(x) + rng.normal(0, 0.1, x.size))
        elif kind == "bar":
            ax.bar(range(8), rng.integers(1, 10, 8))
        elif kind == "scatter":
            ax.scatter(*rng.normal(0, 1, (2, 150)), c=rng.random(150))
        elif kind == "pie":
            ax.pie(rng.integers(1, 10, 5))
        elif kind == "heatmap":
            ax.imshow(rng.random((12, 12)), cmap="magma")
        else:
            ax.hist(rng.normal(0, 1, 500), bins=30)
        fig.canvas.draw()
        out[f"plot_{kind}"] = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    return out


def development_synthetic(seed: int = 1) -> dict[str, Image.Image]:
    rng = np.random.default_rng(seed)
    out = {}
    for rgb in [(200, 150, 120), (170, 110, 90), (90, 60, 45), (240, 200, 180), (30, 30, 60), (250, 240, 200),
                (0, 160, 80), (120, 0, 120)]:
        out[f"solid_{rgb}"] = Image.new("RGB", (300, 300), rgb)
    out["noise_salt_pepper"] = Image.fromarray(((rng.random((300, 300, 1)) > 0.5) * 255).repeat(3, 2).astype(np.uint8))
    for i in range(3):  # smooth coloured noise: blotches, some in skin colours
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out[f"noise_blotches_{i}"] = Image.fromarray(small).resize((300, 300), Image.BICUBIC)
    skinlike = np.clip(rng.normal((190, 140, 115), 12, (300, 300, 3)), 0, 255).astype(np.uint8)
    out["noise_skin_coloured"] = Image.fromarray(skinlike)
    out["noise_skin_coloured_blurred"] = Image.fromarray(skinlike).filter(ImageFilter.GaussianBlur(3))
    yy, xx = np.mgrid[0:300, 0:300] / 300.0
    r = np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    out["gradient_radial"] = Image.fromarray((np.stack([1 - r, 0.6 * (1 - r), 0.4 + 0 * r], -1) * 255).clip(0, 255)
                                             .astype(np.uint8))
    out["gradient_diagonal"] = Image.fromarray((np.stack([xx, yy, (xx + yy) / 2], -1) * 255).astype(np.uint8))
    out["dark_disc_on_beige"] = disc((235, 215, 190), (70, 45, 35), 0.25)   # a drawn "mole", not a photo
    out["red_disc_on_white"] = disc((255, 255, 255), (200, 40, 40), 0.3)
    for period in (6, 20, 60):
        stripes = ((xx * 300 // period) % 2).astype(np.uint8) * 255
        out[f"stripes_{period}"] = Image.fromarray(np.stack([stripes] * 3, -1))
    checker = ((((xx * 300) // 25) + ((yy * 300) // 25)) % 2 * 200 + 30).astype(np.uint8)
    out["checker_25"] = Image.fromarray(np.stack([checker, checker // 2, checker // 3], -1))
    for i, (bg, fg) in enumerate([((255, 255, 240), (10, 10, 10)), ((20, 20, 30), (230, 230, 230)),
                                  ((250, 230, 200), (120, 40, 20))]):
        doc = Image.new("RGB", (360, 480), bg)
        d = ImageDraw.Draw(doc)
        for y in range(20, 460, 14 + 4 * i):
            d.text((20, y), f"Patient information leaflet, page {i + 1}, line {y}", fill=fg)
        out[f"document_{i}"] = doc
    for i in range(4):  # app-like screens and icons
        shot = Image.new("RGB", (390, 844) if i % 2 else (1280, 800), tuple(int(v) for v in rng.integers(200, 256, 3)))
        d = ImageDraw.Draw(shot)
        w, h = shot.size
        d.rectangle((0, 0, w, 60), fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
        for j in range(8):
            y = 80 + j * (h - 100) // 8
            d.rounded_rectangle((16, y, w - 16, y + (h - 100) // 10), 12, fill="white", outline=(180, 180, 180))
            d.text((30, y + 10), f"Message {j}: see you tomorrow", fill=(30, 30, 30))
        out[f"screen_{i}"] = shot
    for i in range(6):
        icon = Image.new("RGB", (256, 256), tuple(int(v) for v in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(icon)
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if i % 3 == 2:
            d.polygon([(128, 30), (226, 220), (30, 220)], fill=c)
        else:
            (d.ellipse if i % 3 == 0 else d.rectangle)((40, 40, 216, 216), fill=c)
        out[f"icon_{i}"] = icon
    out.update(plots(rng))
    return out


def disc(bg, fg, radius) -> Image.Image:
    img = Image.new("RGB", (300, 300), bg)
    r = int(300 * radius)
    ImageDraw.Draw(img).ellipse((150 - r, 150 - r, 150 + r, 150 + r), fill=fg)
    return img


def development_images() -> dict[str, Image.Image]:
    """The development non-skin set: package pictures whole and in three crops (centre, top-left and bottom-right
    quarters), synthetic pictures whole and as a centre crop."""
    out = {}
    for package, path in DEVELOPMENT_FILES:
        img = package_picture(package, path)
        if img is None:
            continue
        name = f"{package}_{Path(path).stem}"
        w, h = img.size
        out[name] = img
        out[name + "_crop"] = img.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))
        out[name + "_top_left"] = img.crop((0, 0, w // 2, h // 2))
        out[name + "_bottom_right"] = img.crop((w // 2, h // 2, w, h))
    for name, img in development_synthetic().items():
        w, h = img.size
        out[name] = img
        out[name + "_crop"] = img.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    return out


def main(args):
    clf = load_classifier(args.weights)
    images = development_images() if args.set == "development" else natural_images() | synthetic_images()
    results = clf.predict_batch(list(images.values()))
    refused = {n: not r.in_scope for n, r in zip(images, results, strict=True)}
    passed = [n for n, v in refused.items() if not v]
    figures = {"images": len(images), "refused": sum(refused.values()),
               "refused_share": sum(refused.values()) / len(images),
               "not_refused": passed,
               "photo_types": {t: sum(r.photo_type == t for r in results) for t in clf.photo_types}}
    print(json.dumps(figures, indent=1))
    if args.write and args.set == "test":
        save_metrics(args.weights, "out_of_scope", figures)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights")
    p.add_argument("--set", choices=["test", "development"], default="test",
                   help="test: the 56 pictures the model card reports; development: the set for choosing the gate")
    p.add_argument("--no-write", dest="write", action="store_false", help="print only; leave config.json as it is")
    main(p.parse_args())

"""The gate's learned non-skin measure (model/ood.py): what the pictures that are not skin look like.

A distance to the lesions knows only the lesions; a cat's fur or a stained slide can lie as near them as a real
photo. The measure is a logistic regression on the style, fitted on the train split's photos (and some of them
recoloured to a random Monk Skin Tone shade, so that dark skin counts as skin) against a folder of pictures that
are not skin. training.calibrate and training.gate_choice fit it with --non-skin FOLDER.

The folder must share no picture with the non-skin sets that measure the gate (training/ood_check.py: scikit-learn,
scikit-image, gradio, matplotlib, networkx and sympy pictures). The project's figures use Debian's clip-art and
wallpaper packages, GPL and CC licensed, none of them shipped (docs/training.md):

    apt-get download tuxpaint-stamps-default gnome-backgrounds plasma-workspace-wallpapers
    for f in *.deb; do dpkg -x "$f" nonskin; done        # then: --non-skin nonskin/usr/share

Each picture is used whole and in CROPS random crops (transparent ones over a random plain colour), and drawn
shapes (gradients, discs, stripes; seeded apart from ood_check's) are added to them.

Run as a command, it refits the gate of a calibrated weights folder without calibrating anything else: with
--pictures it fits the measure on the folder's train split; with --toned-groups it refits the distance on the
train split and on some of its photos recoloured to a random MST shade, in groups of their own (so a dark skin is
near its own centres); then each photo type's distance threshold (and non-skin limit) is refitted on its
validation rows (ood.QUANTILE, or ood.SPLIT_QUANTILE each with the measure); --no-colour-box sets every photo
type's skin-colour share limit to 0 (pictures without skin are then left to the learned measures); --photo-head
refits the photo-type head on the train split (training.calibrate's choice: kept only if its balanced accuracy on
validation is higher), for a split that has gained rows since the weights were made. The ImageNet
measure (model/skin_measure.py) and its limits are kept as they are. The weights go to --out:

    python -m training.nonskin --weights weights --out runs/weights-nonskin --pictures nonskin/usr/share \
        --toned-groups --data ../shared/data/skin-lesions --clinical-data ../shared/data/skin-photos runs/phone-skin
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from model import ood, photo_types, skin_measure
from model.checkpoint import (
    CLASSES,
    OOD_PREFIX,
    WEIGHTS_FILE,
    load_model,
    metadata_spec,
    read_config,
    read_record,
    sha256,
    write_config,
    write_record,
)
from model.image import eval_transform, open_image
from model.quality import check
from training.data import PHOTO_TYPES, SkinDataset
from training.evaluate import split_rows
from training.inference import network_outputs, picture_outputs
from training.photo_head import choose_photo_head
from training.skin_tone import MST, recolour

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
CROPS = 2            # random crops of each picture, besides the whole
SIDE = 448           # pictures are shrunk to this side first: the network sees 160-224 px
DRAWN = 200          # drawn shapes added to the folder's pictures
RECOLOURED = 1500    # train photos recoloured to a random MST shade, added to the skin side
SEED = 2             # ood_check's synthetic pictures use seeds 0 (test) and 1 (development)


def flatten(img: Image.Image, rng: random.Random) -> Image.Image:
    """RGB; a transparent picture over a random plain colour."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        colour = tuple(rng.randrange(256) for _ in range(3)) + (255,)
        img = Image.alpha_composite(Image.new("RGBA", img.size, colour), img)
    return img.convert("RGB")


def crops(img: Image.Image, n: int, rng: random.Random) -> list[Image.Image]:
    w, h = img.size
    out = []
    for _ in range(n):
        f = rng.uniform(0.3, 0.7)
        cw, ch = max(8, int(w * f)), max(8, int(h * f))
        x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
        out.append(img.crop((x, y, x + cw, y + ch)))
    return out


def drawn(n: int, rng: random.Random) -> list[Image.Image]:
    """Gradients, discs and stripes in random colours."""
    def colour():
        return tuple(rng.randrange(256) for _ in range(3))
    out = []
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    for i in range(n):
        kind = i % 3
        if kind == 0:   # linear or radial gradient between two colours
            t = np.hypot(xx - rng.random(), yy - rng.random()) if rng.random() < 0.5 else (xx + yy * rng.random()) / 2
            t = (t / max(t.max(), 1e-6))[..., None]
            a, b = np.array(colour()), np.array(colour())
            out.append(Image.fromarray((a * (1 - t) + b * t).astype(np.uint8)))
            continue
        img = Image.new("RGB", (256, 256), colour())
        draw = ImageDraw.Draw(img)
        if kind == 1:   # one to three discs
            for _ in range(rng.randint(1, 3)):
                r, cx, cy = rng.randint(20, 110), rng.randint(40, 216), rng.randint(40, 216)
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour())
        else:           # stripes
            width = rng.randint(4, 40)
            for x in range(0, 256, 2 * width):
                draw.rectangle((x, 0, x + width, 256), fill=colour())
            img = img.rotate(rng.uniform(0, 180))
        out.append(img)
    return out


def pictures(folder: Path | str, crops_each: int = CROPS, shapes: int = DRAWN, seed: int = SEED
             ) -> list[Image.Image]:
    """The non-skin pictures: every image file under `folder` (recursively) whole and in random crops, and
    drawn shapes. Files that cannot be read are skipped."""
    rng = random.Random(seed)
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    out = []
    for path in files:
        try:
            with Image.open(path) as im:
                im.thumbnail((SIDE, SIDE))
                img = flatten(im, rng)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
        if min(img.size) < 16:
            continue
        out += [img, *crops(img, crops_each, rng)]
    if not out:
        raise SystemExit(f"{folder} holds no picture (.png, .jpg, .jpeg, .webp) to fit the non-skin measure on.")
    return out + drawn(shapes, rng)


def recoloured_rows(paths, n: int = RECOLOURED, seed: int = SEED) -> tuple[np.ndarray, list[Image.Image]]:
    """(which of `paths`, their photos each recoloured to a random Monk Skin Tone shade), for `n` of them."""
    rng = random.Random(seed)
    index = np.array(sorted(rng.sample(range(len(paths)), min(n, len(paths)))), dtype=int)
    out = []
    for i in index:
        img = open_image(paths[i])
        img.thumbnail((SIDE, SIDE))
        out.append(to_pil_image(recolour(pil_to_tensor(img), rng.choice(MST))))
    return index, out


def recoloured(paths, n: int = RECOLOURED, seed: int = SEED) -> list[Image.Image]:
    """`n` of the photos at `paths`, each recoloured to a random Monk Skin Tone shade."""
    return recoloured_rows(list(paths), n, seed)[1]


def measure(model, pre: dict, spec, train_style: np.ndarray, train_paths, other: list[Image.Image],
            toned: np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """The non-skin measure's tensors ("nonskin." keys, model/ood.py): the train split's style and that of
    recoloured train photos (`toned`, their style, when already computed) against the style of `other`."""
    if toned is None:
        toned = picture_outputs(model, recoloured(train_paths), pre, spec)["style"].numpy()
    not_skin = picture_outputs(model, other, pre, spec)["style"].numpy()
    return ood.fit_nonskin(np.concatenate([train_style, toned]), not_skin)


def refit_limits(config: dict, val_rows, distances: np.ndarray, scores: np.ndarray | None) -> dict:
    """config.json's ood section with each photo type's distance threshold (and non-skin limit, with `scores`)
    refitted on its validation rows (the first type's at the top, the others under by_photo_type, as calibration
    writes them)."""
    section = copy.deepcopy(config["ood"])
    types = list(config.get("photo_types") or [None])
    for i, name in enumerate(types):
        m = (val_rows["photo_type"] == name).to_numpy() if name is not None else np.ones(len(val_rows), bool)
        if not m.any():
            continue
        quantile = ood.QUANTILE if scores is None else ood.SPLIT_QUANTILE
        limits = {"threshold": float(np.quantile(distances[m], quantile))}
        if scores is not None:
            limits["nonskin_max"] = float(np.quantile(scores[m], quantile))
        (section if i == 0 else section.setdefault("by_photo_type", {}).setdefault(name, {})).update(limits)
    return section


def drop_colour_box(section: dict) -> None:
    """Set every photo type's skin-colour share limit to 0 in config.json's ood section: the fixed YCbCr box
    (model/quality.py) then refuses nothing, and pictures without skin are left to the learned measures."""
    own = photo_types.types_with_own_values({"ood": section}, "ood")
    for limits in [section, *(section["by_photo_type"][t] for t in own)]:
        if "skin_fraction_min" in limits:
            limits["skin_fraction_min"] = 0.0


def widen_colour_box(section: dict, types: list, rows, qualities: list) -> None:
    """Replace every photo type's skin-colour share limit by the wide box's (model/quality.py), fitted as the
    box's was: at ood.SKIN_QUANTILE of that type's `qualities` (the train and validation photos, `rows`)."""
    kinds = rows["photo_type"].to_numpy()
    for i, name in enumerate(types):
        m = kinds == name if name is not None else np.ones(len(rows), bool)
        if not m.any():
            continue
        limits = section if i == 0 else section.setdefault("by_photo_type", {}).setdefault(name, {})
        shares = [q.skin_fraction_wide for q, keep in zip(qualities, m, strict=True) if keep]
        limits["skin_fraction_min"] = 0.0
        limits["skin_fraction_wide_min"] = float(np.quantile(shares, ood.SKIN_QUANTILE))


TONED_GROUP = 1000  # the recoloured photos' groups: their own group's id plus this


def toned_distance(tensors, train_rows, train, index: np.ndarray, toned_out: dict) -> dict[str, torch.Tensor]:
    """The distance's tensors refitted (the spaces the weights measure) on the train split's photos and on the
    rows `index` of them recoloured to a random MST shade (`toned_out`: their picture_outputs), these in groups of
    their own: a dark skin is then near its own centres instead of far from every light-skinned one."""
    groups = (train_rows["label"].to_numpy() + len(CLASSES) * np.array(
        [PHOTO_TYPES.index(t) for t in train_rows["photo_type"]]))
    spaces = {name: np.concatenate([getattr(train, name), toned_out[name].numpy()])
              for name in ood.SPACES if ood.space(tensors, name) is not None}
    return ood.fit_spaces(spaces, np.concatenate([groups, groups[index] + TONED_GROUP]))


def main(args):
    weights, out = Path(args.weights), Path(args.out)
    model, config, tensors = load_model(weights)
    if not tensors:
        raise SystemExit(f"{weights} has no out-of-scope gate: calibrate it first (python -m training.calibrate).")
    spec, pre = metadata_spec(config), config["preprocessing"]
    rows = {name: split_rows(args.data, args.clinical_data, spec, weights / "split.csv", name)
            for name in ("train", "val")}
    sets = {name: SkinDataset(r, None, eval_transform(pre), spec) for name, r in rows.items()}
    outputs = {name: network_outputs(model, ds) for name, ds in sets.items()}
    notes, paths = [], rows["train"]["path"].to_numpy()
    record = read_record(weights)
    if args.photo_head:  # before the gate: the head only chooses which photo type's limits apply
        kinds = {name: ds.photo_types.numpy() for name, ds in sets.items()}
        record["photo_type_head"] = choose_photo_head(model, outputs["train"], outputs["val"], kinds["train"],
                                                      kinds["val"])
        notes.append(f"photo-type head: {record['photo_type_head']['head']} (refitted on the train split's "
                     f"{len(rows['train'])} rows, chosen by balanced accuracy on the validation split)")
    if args.toned_groups or args.pictures:  # the recoloured train photos, through the network once for both
        index, toned = recoloured_rows(paths)
        toned_out = picture_outputs(model, toned, pre, spec)
    if args.toned_groups:
        tensors = {**toned_distance(tensors, rows["train"], outputs["train"], index, toned_out),
                   **{k: v for k, v in tensors.items() if k.startswith((ood.NONSKIN, skin_measure.PREFIX))}}
        notes.append(f"distance groups fitted on the train split and on {min(RECOLOURED, len(rows['train']))} of "
                     f"its photos recoloured to a random MST shade (their own groups)")
    if args.pictures:
        others = pictures(args.pictures)
        tensors = {k: v for k, v in tensors.items() if not k.startswith(ood.NONSKIN)}
        tensors.update(measure(model, pre, spec, outputs["train"].style, paths, others, toned_out["style"].numpy()))
        notes.append(f"learned non-skin measure (training/nonskin.py): class-balanced logistic regression on the "
                     f"standardised style, {len(rows['train'])} train-split photos and {RECOLOURED} of them "
                     f"recoloured to a random MST shade against {len(others)} pictures that are not skin; the "
                     f"distance threshold and the non-skin limit each at the {ood.SPLIT_QUANTILE} quantile of the "
                     f"validation rows")
    val = outputs["val"]
    spaces = {"style": torch.from_numpy(val.style), "features": torch.from_numpy(val.features)}
    distances = ood.score(spaces, tensors).numpy()
    scores = ood.nonskin(spaces["style"], tensors)
    scores = None if scores is None else scores.numpy()
    if out.resolve() != weights.resolve():
        shutil.copytree(weights, out, dirs_exist_ok=True)
    state = {k: v for k, v in load_file(str(weights / WEIGHTS_FILE)).items() if not k.startswith(OOD_PREFIX)}
    state.update({OOD_PREFIX + k: v.float().contiguous() for k, v in tensors.items()})
    if args.photo_head:
        state.update({f"photo_head.{k}": v.detach().float().contiguous()
                      for k, v in model.photo_head.state_dict().items()})
    save_file(state, str(out / WEIGHTS_FILE))
    settings = read_config(weights)
    settings["ood"] = refit_limits(settings, rows["val"], distances, scores)
    if args.no_colour_box:
        drop_colour_box(settings["ood"])
        notes.append("no skin-colour box (skin_fraction_min 0 for every photo type)")
    elif args.wide_colour_box:
        both = pd.concat([rows["train"], rows["val"]], ignore_index=True)
        qualities = [check(open_image(path)) for path in both["path"]]
        widen_colour_box(settings["ood"], list(settings.get("photo_types") or [None]), both, qualities)
        notes.append(f"the wide skin-colour box (model/quality.py: warm pixels also count at the dark and light ends "
                     f"of luma), each photo type's limit at the {ood.SKIN_QUANTILE} quantile of its train and "
                     f"validation photos")
    settings["weights_sha256"] = sha256(out / WEIGHTS_FILE)
    write_config(out, settings)
    record.setdefault("notes", {}).setdefault("ood", {})["refit"] = "; ".join(notes)
    write_record(out, record)
    print(json.dumps({"out": str(out), "refit": notes, "ood": settings["ood"]}, indent=1))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a calibrated weights folder (with its split.csv)")
    p.add_argument("--out", required=True, help="where the weights with the measure go (may be --weights)")
    p.add_argument("--pictures", default=None,
                   help="fit the non-skin measure on this folder of pictures that are not skin (searched recursively)")
    p.add_argument("--toned-groups", action="store_true",
                   help="refit the distance with recoloured train photos in groups of their own")
    p.add_argument("--photo-head", action="store_true",
                   help="refit the photo-type head on the split's train rows (kept only if it is better on validation)")
    p.add_argument("--no-colour-box", action="store_true",
                   help="drop the fixed skin-colour box (skin_fraction_min 0 for every photo type)")
    p.add_argument("--wide-colour-box", action="store_true",
                   help="the skin-colour share in the wide box (model/quality.py), its limits refitted")
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--clinical-data", nargs="*", default=[])
    main(p.parse_args())

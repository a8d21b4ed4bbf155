"""The out-of-scope gate (model/ood.py): the one implementation the app, calibration and evaluation share."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model import ood
from model.quality import Quality


def clusters(seed=0, n=200, dim=32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (3, dim))
    groups = np.repeat(np.arange(3), n)
    return (centres[groups] + rng.normal(0, 1, (len(groups), dim))).astype(np.float32), groups, centres


def test_distance_is_small_inside_a_group_and_large_far_away():
    x, groups, centres = clusters()
    tensors = ood.fit(x, groups, components=16)
    assert tensors["centres"].shape == (3, 16)
    inside = ood.distance(torch.from_numpy(x), tensors)
    far = ood.distance(torch.from_numpy((centres.mean(0) + 40).astype(np.float32)[None]), tensors)
    assert float(inside.median()) < 1.5
    assert float(far[0]) > 5 * float(inside.max())


def test_distance_is_to_the_nearest_centre():
    x, groups, centres = clusters()
    tensors = ood.fit(x, groups, components=16)
    at_centres = ood.distance(torch.from_numpy(centres.astype(np.float32)), tensors)
    assert float(at_centres.max()) < 0.3  # each true centre is near its own fitted centre


def test_limits_refuse_the_chosen_share_of_validation_images():
    d = np.linspace(0, 1, 1001)
    q = [Quality(warning_codes=[], flat=False, skin_fraction=s, sharpness=s) for s in np.linspace(0, 1, 1001)]
    limits = ood.fit_limits(d, q)
    assert np.mean(d > limits["threshold"]) == pytest.approx(1 - ood.QUANTILE, abs=2e-3)
    refused = [ood.refusal(x, None, limits) is not None for x in q]
    assert np.mean(refused) == pytest.approx(ood.SKIN_QUANTILE + 1 - ood.SHARPNESS_QUANTILE, abs=3e-3)


@pytest.mark.parametrize("flat, skin, sharp, d, expected", [
    (False, 0.5, 0.2, 1.0, None),
    (True, 0.5, 0.2, 1.0, "flat"),               # a flat picture
    (False, 0.01, 0.2, 1.0, "no_skin"),          # too little skin colour
    (False, 0.5, 0.9, 1.0, "noise"),             # pixel noise
    (False, 0.5, 0.2, 3.0, "unlike_training"),   # far from every training group
    (False, 0.5, 0.2, None, None),               # weights without the distance: the cheap checks decide
])
def test_refusal_names_the_check_that_failed(flat, skin, sharp, d, expected):
    limits = {"threshold": 2.0, "skin_fraction_min": 0.1, "sharpness_max": 0.5}
    q = Quality(warning_codes=[], flat=flat, skin_fraction=skin, sharpness=sharp)
    assert ood.refusal(q, d, limits) == expected


@pytest.mark.parametrize("colour, box, wide", [
    ("f6ede4", None, True), ("3a312a", None, True),   # MST 1, 9: on the box's floor (about half in), the wide box
    ("292420", False, True),                          # MST 10: the wide box only
    ("a07e56", True, True), ("d7bd96", True, True),                             # MST 6, 5: both
    ("808080", False, False), ("202020", False, False), ("f0f0f0", False, False),  # greys: neither
    ("3050c0", False, False), ("30a040", False, False)])                       # blue, green: neither
def test_the_wide_colour_box_takes_the_darkest_and_lightest_skin_and_no_grey(colour, box, wide):
    from PIL import Image

    from model.quality import skin_fraction
    rgb = np.array([int(colour[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float32)
    noise = np.random.default_rng(0).normal(0, 1.5, (64, 64, 3))           # a camera's grain
    small = Image.fromarray(np.clip(rgb + noise, 0, 255).astype(np.uint8))
    if box is not None:
        assert (skin_fraction(small) > 0.9) == box and (skin_fraction(small) < 0.1) == (not box)
    assert (skin_fraction(small, wide=True) > 0.9) == wide and (skin_fraction(small, wide=True) < 0.1) == (not wide)


def test_the_wide_box_limit_refuses_as_no_skin():
    limits = {"skin_fraction_min": 0.0, "skin_fraction_wide_min": 0.1}
    low = Quality(warning_codes=[], flat=False, skin_fraction=0.5, sharpness=0.2, skin_fraction_wide=0.05)
    high = Quality(warning_codes=[], flat=False, skin_fraction=0.0, sharpness=0.2, skin_fraction_wide=0.5)
    assert ood.refusal(low, None, limits) == "no_skin" and ood.refusal(high, None, limits) is None


def test_the_non_skin_measure_scores_pictures_like_its_non_skin_side_higher():
    rng = np.random.default_rng(0)
    skin, other = rng.normal(0, 1, (300, 16)), rng.normal(0, 1, (200, 16))
    other[:, 3] += 4.0          # the non-skin pictures differ in one style channel
    tensors = ood.fit_nonskin(skin, other)
    new_skin, new_other = rng.normal(0, 1, (100, 16)), rng.normal(0, 1, (100, 16))
    new_other[:, 3] += 4.0
    scores = [ood.nonskin(torch.from_numpy(x).float(), tensors) for x in (new_skin, new_other)]
    assert (scores[1] > scores[0].quantile(0.95)).float().mean() > 0.95
    assert ood.nonskin(torch.zeros(2, 16), {"mean": torch.zeros(16)}) is None   # weights without the measure


def test_with_the_non_skin_measure_the_two_limits_share_the_refused_share():
    d, s = np.linspace(0, 1, 4001), np.random.default_rng(1).permutation(np.linspace(-5, 5, 4001))
    q = [Quality(warning_codes=[], flat=False, skin_fraction=0.5, sharpness=0.1)] * len(d)
    limits = ood.fit_limits(d, q, s)
    refused = [ood.refusal(x, a, limits, b) is not None for x, a, b in zip(q, d, s, strict=True)]
    assert np.mean(refused) == pytest.approx(1 - ood.QUANTILE, abs=1e-3)
    assert np.mean(d > limits["threshold"]) == pytest.approx((1 - ood.QUANTILE) / 2, abs=1e-3)
    assert "nonskin_max" not in ood.fit_limits(d, q)


def test_a_picture_the_non_skin_measure_refuses_is_told_no_skin_was_found():
    limits = {"threshold": 2.0, "skin_fraction_min": 0.1, "sharpness_max": 0.5, "nonskin_max": 0.0}
    q = Quality(warning_codes=[], flat=False, skin_fraction=0.5, sharpness=0.2)
    assert ood.refusal(q, 1.0, limits, 1.5) == "no_skin"
    assert ood.refusal(q, 1.0, limits, -1.5) is None
    assert ood.refusal(q, 1.0, limits) is None                       # weights without the measure
    assert ood.refusal(q, 1.0, {"threshold": 2.0}, 9.0) is None       # limits without it


def test_the_limits_of_the_chosen_photo_type_apply():
    """A picture with the skin share of a phone photo passes the phone limits and is refused by dermoscopy's."""
    limits = {"dermoscopic": {"threshold": 2.0, "skin_fraction_min": 0.11}, "clinical": {"skin_fraction_min": 0.03}}
    phone_like = Quality(warning_codes=[], flat=False, skin_fraction=0.05, sharpness=0.2)
    assert ood.refusal(phone_like, 1.0, limits["clinical"]) is None
    assert ood.refusal(phone_like, 1.0, limits["dermoscopic"]) == "no_skin"


def test_style_is_the_mean_and_spread_of_each_channel():
    maps = torch.randn(2, 3, 5, 7)
    s = ood.style(maps)
    assert s.shape == (2, 6)
    assert torch.allclose(s[1, 2], maps[1, 2].mean()) and torch.allclose(s[0, 4], maps[0, 1].std())


def test_the_classifier_measures_the_style_of_the_middle_level(shipped):
    """The app's answer carries the distance of the style of backbone level ood.LEVEL (MobileNetV4's blocks.2,
    caught here by a hook, not by the code under test), computed as model.ood computes it."""
    from PIL import Image
    img = Image.new("RGB", (256, 256), (200, 150, 120))
    pils, x, meta = shipped._prepare([img], [None], [None], [None])
    caught = {}
    hook = shipped.model.backbone.blocks[2].register_forward_hook(lambda m, i, o: caught.update(maps=o))
    try:
        with torch.inference_mode():
            shipped.model.forward_features(x)
    finally:
        hook.remove()
    maps = caught["maps"].flatten(2)
    style = torch.cat([maps.mean(2), maps.std(2)], 1)
    assert style.shape[1] == shipped.ood["mean"].shape[0] == 320
    r = shipped.predict(img)
    assert not any(k.startswith("features.") for k in shipped.ood)  # the shipped gate measures the style alone
    expected = ood.distance(style, shipped.ood) / shipped.ood.get("scale", torch.tensor(1.0))  # over its scale
    assert r.ood_distance == pytest.approx(float(expected[0]), rel=1e-4)


def test_weights_with_a_gate_on_other_features_are_refused_with_what_to_do(shipped):
    from model import CheckpointError
    from model.classifier import Classifier
    config = {**shipped.config, "ood": {k: v for k, v in shipped.config["ood"].items() if k != "level"}}
    with pytest.raises(CheckpointError, match="training.calibrate"):
        Classifier(shipped.model, config, shipped.ood, device="cpu")


def test_the_gate_measures_the_larger_scaled_distance_of_its_spaces():
    """Weights that measure the style and the pooled features refuse what is far in either: the score is the
    larger of each space's distance over its scale, the median distance of its train rows."""
    style, groups, _ = clusters(seed=1)
    features, _, centres = clusters(seed=2, dim=16)
    tensors = ood.fit_spaces({"style": style, "features": features}, groups, components=8)
    d_style = ood.distance(torch.from_numpy(style), ood.space(tensors, "style"))
    assert float(tensors["scale"]) == pytest.approx(float(d_style.median()), rel=1e-6)
    assert set(ood.space(tensors, "features")) == {"mean", "projection", "centres", "scale"}
    # a row like the train rows in style and far from them in the features
    odd = {"style": torch.from_numpy(style[:1]), "features": torch.from_numpy((centres.mean(0) + 30)[None]
                                                                               .astype(np.float32))}
    by_space = {name: float(ood.distance(x, ood.space(tensors, name))[0] / ood.space(tensors, name)["scale"])
                for name, x in odd.items()}
    assert by_space["features"] > 10 * by_space["style"]
    assert float(ood.score(odd, tensors)[0]) == pytest.approx(max(by_space.values()), rel=1e-5)
    style_only = {k: v for k, v in tensors.items() if not k.startswith("features.")}
    assert float(ood.score(odd, style_only)[0]) == pytest.approx(by_space["style"], rel=1e-5)


def test_weights_made_before_the_gate_had_spaces_measure_the_plain_style_distance():
    x, groups, _ = clusters()
    tensors = ood.fit(x, groups, components=16)  # no scale, no second space: the shipped format until now
    rows = torch.from_numpy(x[:5])
    assert torch.allclose(ood.score({"style": rows, "features": torch.zeros(5, 3)}, tensors),
                          ood.distance(rows, tensors))
    with pytest.raises(ValueError, match="none of"):
        ood.score({"features": torch.zeros(5, 3)}, tensors)


def test_the_development_non_skin_set_shares_no_picture_with_the_test_set():
    """The gate is chosen on one set and reported on the other: no picture, whole or cropped, is in both."""
    from PIL import Image

    from training.ood_check import development_images, natural_images, synthetic_images

    def fingerprint(img):  # pixels sampled, not averaged: two noise pictures must not both look grey
        return np.asarray(img.convert("RGB").resize((32, 32), Image.NEAREST)).astype(np.int16)

    dev, test = development_images(), natural_images() | synthetic_images()
    assert len(dev) >= 150 and not set(dev) & set(test)
    test_prints = [fingerprint(im) for im in test.values()]
    for name, img in dev.items():
        f = fingerprint(img)
        assert all(np.abs(f - t).mean() > 2 for t in test_prints), name

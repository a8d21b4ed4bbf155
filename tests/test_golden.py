"""The shipped weights' answers on the example photos are the pinned ones (tests/golden.py), within float noise."""
from __future__ import annotations

import json

import pytest

from tests.golden import GOLDEN, answers

PROBABILITY_TOLERANCE = 2e-4  # ONNX Runtime against eager PyTorch, and float sums in another order
DISTANCE_TOLERANCE = 1e-3


def test_the_shipped_answers_are_the_pinned_ones(shipped):
    golden = json.loads(GOLDEN.read_text())
    assert golden["weights_sha256"] == shipped.config["weights_sha256"], \
        "new weights: rerun python -m tests.golden and look at what changed"
    now = answers(shipped)
    assert set(now) == set(golden["answers"])
    for name, want in golden["answers"].items():
        got = now[name]
        for key in ("risk", "in_scope", "photo_type", "refusal_reason", "warning_codes"):
            assert got[key] == want[key], (name, key)
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=PROBABILITY_TOLERANCE), name
        if want["ood_distance"] is not None:
            assert got["ood_distance"] == pytest.approx(want["ood_distance"], rel=DISTANCE_TOLERANCE), name


def test_the_pinned_answers_can_fail(classifier, monkeypatch):
    """A change in the crop (here: the full photo squashed instead of its centre square) moves the answers."""
    from model import image
    golden = json.loads(GOLDEN.read_text())["answers"]
    monkeypatch.setattr(image, "center_square", lambda img: img)
    classifier.transform = image.eval_transform(classifier.config["preprocessing"])
    moved = answers(classifier)
    assert any(moved[k]["probabilities"] != pytest.approx(v["probabilities"], abs=PROBABILITY_TOLERANCE)
               for k, v in golden.items())

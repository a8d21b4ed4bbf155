"""The shipped weights' answers on the example photos, pinned: `python -m tests.golden` rewrites
tests/golden.json; do so only when new weights ship (test_golden.py checks the sha256 it was made for).

The answers go through everything between a file and a risk level: decoding, EXIF, the centre crop and its
interpolation, the runtime, temperature, thresholds, gate and photo type. A change in any of them that moves an
answer fails the test, where parity tests (two paths behind the same preprocessing) would pass.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).with_name("golden.json")
PHOTOS = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
# metadata for some answers, so the metadata path is pinned too
META = {"age": 62, "sex": "male", "site": "back"}


def answers(clf) -> dict:
    out = {}
    for with_meta in (False, True):
        kwargs = META if with_meta else {}
        for path in PHOTOS:
            r = clf.predict(path, **kwargs)
            out[path.name + (" +meta" if with_meta else "")] = {
                "probabilities": {k: round(v, 6) for k, v in r.probabilities.items()}, "risk": r.risk,
                "in_scope": r.in_scope, "photo_type": r.photo_type, "refusal_reason": r.refusal_reason,
                "ood_distance": None if r.ood_distance is None else round(r.ood_distance, 5),
                "warning_codes": r.warning_codes}
    return out


if __name__ == "__main__":
    from model import load_classifier
    clf = load_classifier()
    GOLDEN.write_text(json.dumps({"weights_sha256": clf.config["weights_sha256"], "answers": answers(clf)},
                                 indent=1) + "\n")
    print(f"wrote {GOLDEN}")

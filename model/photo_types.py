"""The kinds of photo the network tells apart, and the one rule for the values fitted to each.

Calibration fits the temperature, the thresholds and the gate's limits per photo type on that type's validation
rows. config.json keeps the first type's (dermoscopic) values at the top of each section and every other
type's under `by_photo_type`, holding only what differs. `fitted(config, section, photo_type)` is the merge;
everything that needs a photo type's values (the classifier, evaluation, the model card) calls it.
"""
from __future__ import annotations

from .texts import words

PHOTO_TYPES = ["dermoscopic", "clinical"]  # the photo-type head's classes, in this order
DEFAULT = PHOTO_TYPES[0]


def fitted(config: dict, section: str, photo_type: str | None) -> dict:
    """config[section] with the values fitted for `photo_type` on top (None or the first type: the top level)."""
    values = {k: v for k, v in config.get(section, {}).items() if k != "by_photo_type"}
    return {**values, **config.get(section, {}).get("by_photo_type", {}).get(photo_type, {})}


def types_with_own_values(config: dict, section: str) -> list[str]:
    """The photo types that have values of their own in config[section] (beside the first type's)."""
    return list(config.get(section, {}).get("by_photo_type", {}))


def name(photo_type: str, lang: str = "en") -> str:
    """What to call the kind of photo ("Dermoscopy image", "Phone or camera photo")."""
    return words(f"photo_type.{photo_type}.name", lang)


def meaning(photo_type: str, lang: str = "en") -> str:
    """What the kind of photo means for how far to trust the answer, in plain words."""
    return words(f"photo_type.{photo_type}.text", lang)

"""Encoding of the optional patient metadata (age, sex, anatomic site) into a fixed vector.

Every field has an explicit "unknown" state that no real answer can share:
age is (scaled age, 0) when known and (0, 1) when missing; sex and site are one-hot
vectors with their own "unknown" slot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .texts import Message

SEXES = ("female", "male")

# One vocabulary for the two that the data mixes (HAM10000 `localization`, ISIC 2019
# `anatom_site_general`). Keys are canonical sites, values the words that map onto them.
SITE_ALIASES = {
    "head/neck": ["head/neck", "face", "scalp", "ear", "neck", "head", "oral/genital", "nose", "lip"],
    "upper extremity": ["upper extremity", "arm", "forearm", "hand"],
    "lower extremity": ["lower extremity", "leg", "thigh", "foot"],
    "anterior torso": ["anterior torso", "chest", "abdomen"],
    "posterior torso": ["posterior torso", "back"],
    "torso": ["torso", "trunk", "lateral torso"],
    "palms/soles": ["palms/soles", "acral"],
    "genital": ["genital"],
}
UNKNOWN_WORDS = {"", "unknown", "none", "nan", "na", "n/a", "prefer not to say"}
# Values the model barely saw in training: an answer for them gets a caution (never a refusal). On the train split
# of the shipped weights, 138 of 6,747 rows with an age are under 18 and 18 over 85 (HAM10000 gives no age above
# 85); of 6,676 rows with a site, 3 are on a palm or sole and 30 genital.
FEW_UNDER_AGE, FEW_OVER_AGE = 18, 85
FEW_SITES = ("palms/soles", "genital")


@dataclass
class MetadataSpec:
    """What the metadata vector holds; stored in config.json so the encoding travels with the weights."""
    age_mean: float = 50.0
    age_std: float = 20.0
    age_range: tuple[float, float] = (0.0, 120.0)
    sexes: list[str] = field(default_factory=lambda: list(SEXES))
    sites: list[str] = field(default_factory=lambda: list(SITE_ALIASES))
    site_aliases: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in SITE_ALIASES.items()})

    @property
    def dim(self) -> int:
        return 2 + len(self.sexes) + 1 + len(self.sites) + 1

    def to_dict(self) -> dict:
        return {"age_mean": self.age_mean, "age_std": self.age_std, "age_range": list(self.age_range),
                "sexes": self.sexes, "sites": self.sites, "site_aliases": self.site_aliases}

    @classmethod
    def from_dict(cls, d: dict) -> MetadataSpec:
        return cls(d["age_mean"], d["age_std"], tuple(d["age_range"]), list(d["sexes"]), list(d["sites"]),
                   {k: list(v) for k, v in d["site_aliases"].items()})

    # --- parsing: user or CSV values -> canonical value or None (unknown) -------------------------
    def parse_age(self, age) -> float | None:
        """Years as a number, or None when unknown. Raises ValueError (a texts.Message) for text or an impossible
        age."""
        if age is None or (isinstance(age, str) and age.strip().lower() in UNKNOWN_WORDS):
            return None
        try:
            value = float(age)
        except (TypeError, ValueError):
            raise Message("input.age_number", value=repr(age)) from None
        if math.isnan(value):
            return None
        lo, hi = self.age_range
        if not lo <= value <= hi:
            raise Message("input.age_range", low=lo, high=hi, value=value)
        return value

    def parse_sex(self, sex) -> str | None:
        if sex is None:
            return None
        word = str(sex).strip().lower()
        if word in UNKNOWN_WORDS:
            return None
        if word in self.sexes:
            return word
        raise Message("input.sex", choices=", ".join(self.sexes), value=repr(sex))

    def parse_site(self, site) -> str | None:
        if site is None:
            return None
        word = str(site).strip().lower()
        if word in UNKNOWN_WORDS:
            return None
        for canonical, aliases in self.site_aliases.items():
            if word == canonical or word in aliases:
                return canonical
        raise Message("input.site", choices=", ".join(self.sites), value=repr(site))

    def rarely_seen(self, age=None, site=None) -> list[str]:
        """Codes of the given values that the model barely saw in training: "age_young", "age_old", "site_rare"
        (texts: caution.<code>). Raises ValueError for an impossible value, like encode."""
        age, site = self.parse_age(age), self.parse_site(site)
        codes = []
        if age is not None and age < FEW_UNDER_AGE:
            codes.append("age_young")
        if age is not None and age > FEW_OVER_AGE:
            codes.append("age_old")
        if site in FEW_SITES:
            codes.append("site_rare")
        return codes

    # --- encoding ------------------------------------------------------------------------------
    def encode(self, age=None, sex=None, site=None) -> list[float]:
        """Vector of length `dim`. Values are parsed first, so raw words from a CSV or a form work."""
        age, sex, site = self.parse_age(age), self.parse_sex(sex), self.parse_site(site)
        vec = [0.0] * self.dim
        if age is None:
            vec[1] = 1.0
        else:
            vec[0] = (age - self.age_mean) / self.age_std
        offset = 2
        vec[offset + (self.sexes.index(sex) if sex else len(self.sexes))] = 1.0
        offset += len(self.sexes) + 1
        vec[offset + (self.sites.index(site) if site else len(self.sites))] = 1.0
        return vec

    def unknown(self) -> list[float]:
        return self.encode(None, None, None)

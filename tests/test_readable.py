"""Answers that cannot be misread: why a benign top bar still reads "moderate" or "high", plain skin's own advice,
an empty heatmap's own sentence, a caution for the ages and sites the model barely saw, all in any language."""
from __future__ import annotations

import numpy as np
import pytest

from model import Prediction
from model.classifier import risk_cause, risk_level
from model.texts import languages, table, words

TH = {"melanoma": 0.1, "malignant": 0.3, "melanoma_high": 0.5, "malignant_high": 0.8, "uncertain_max_prob": 0.5}


def probs(melanoma, other, benign, none=0.0):
    return {"melanoma": melanoma, "other_cancer": other, "benign": benign, "no_lesion": none}


@pytest.mark.parametrize("p, cause", [
    (probs(0.08, 0.25, 0.67), ("moderate", "malignant", 0.33, 0.3)),
    (probs(0.12, 0.05, 0.83), ("moderate", "melanoma", 0.12, 0.1)),   # the melanoma threshold is checked first
    (probs(0.60, 0.05, 0.35), ("high", "melanoma", 0.60, 0.5)),
    (probs(0.20, 0.65, 0.15), ("high", "malignant", 0.85, 0.8)),
    (probs(0.02, 0.05, 0.93), None),
])
def test_the_cause_of_a_risk_level_names_the_chance_and_its_threshold(p, cause):
    got = risk_cause(p, TH)
    assert (got is None) == (cause is None)
    if cause:
        assert got[:2] == cause[:2] and got[2:] == pytest.approx(cause[2:])


def test_risk_levels_are_unchanged_by_naming_their_cause():
    """risk_level, now written through risk_cause, gives the levels of the rule as it was written before."""
    def before(p, th):
        mel, mal = p["melanoma"], p["melanoma"] + p["other_cancer"]
        if mel >= th["melanoma_high"] or mal >= th["malignant_high"]:
            return "high"
        if mel >= th["melanoma"] or mal >= th["malignant"]:
            return "moderate"
        return "uncertain" if max(p.values()) < th["uncertain_max_prob"] else "low"

    rng = np.random.default_rng(0)
    for x in rng.dirichlet([0.5] * 4, size=2000):
        p = dict(zip(["melanoma", "other_cancer", "benign", "no_lesion"], map(float, x), strict=True))
        assert risk_level(p, TH) == before(p, TH), p


def prediction(app, p: dict, photo_type="dermoscopic", heatmap=None) -> Prediction:
    risk = app.clf.risk(p, photo_type)
    label = max(p, key=p.get)
    advice = "no_lesion" if risk == "low" and label == "no_lesion" else risk
    return Prediction(p, label, risk, words(f"risk.{advice}"), photo_type=photo_type, advice_code=advice,
                      heatmap=np.ones((5, 5), np.float32) if heatmap is None else heatmap)


@pytest.mark.parametrize("lang", languages())
def test_a_benign_top_bar_with_a_moderate_risk_says_why_in_figures(app, lang):
    th = app.clf.fitted("thresholds", "dermoscopic")
    p = probs(th["melanoma"] * 0.5, th["malignant"] * 1.2 - th["melanoma"] * 0.5, 0.0)
    p["benign"] = 1 - sum(p.values())
    pred = prediction(app, p)
    assert pred.label == "benign" and pred.risk == "moderate"
    text = app.verdict(pred, lang)
    chance, threshold = app.percent(th["malignant"] * 1.2, lang), app.percent(th["malignant"], lang)
    assert words("answer.why.malignant.moderate", lang, top=words("class.benign", lang), chance=chance,
                 threshold=threshold) in text
    cancer_on_top = prediction(app, probs(0.1, 0.6, 0.3))  # the longest bar is already the warning
    assert words("answer.why.malignant.high", lang, top="", chance="", threshold="")[:20] not in \
        app.verdict(cancer_on_top, lang)
    assert "answer.why" not in text


@pytest.mark.parametrize("lang", languages())
def test_plain_skin_gets_its_own_advice_and_no_abcde_list(app, lang):
    pred = prediction(app, probs(0.0, 0.0, 0.02, 0.98))
    assert pred.advice_code == "no_lesion"
    text = app.verdict(pred, lang)
    assert words("risk.no_lesion", lang) in text
    assert words("answer.abcde", lang) not in text and words("risk.low", lang) not in text
    mole = prediction(app, probs(0.0, 0.0, 0.98, 0.02))
    assert words("answer.abcde", lang) in app.verdict(mole, lang)


@pytest.mark.parametrize("lang", languages())
def test_an_empty_heatmap_gets_its_own_sentence(app, lang):
    empty = prediction(app, probs(0.0, 0.0, 0.98, 0.02), heatmap=np.zeros((5, 5), np.float32))
    seen = app.looked(empty, lang)
    assert seen["how"] == words("heatmap.empty", lang)
    assert seen["alt"].startswith(table(lang)["heatmap.alt_empty"].split("{")[0])
    cam = np.zeros((5, 5), np.float32)
    cam[0, 4] = 1.0  # strongest at the top right of the photo
    seen = app.looked(prediction(app, probs(0.0, 0.0, 0.98, 0.02), heatmap=cam), lang)
    assert seen["how"] == words("heatmap.how", lang) and words("region.top_right", lang) in seen["alt"]
    assert words("class.benign", lang) in seen["alt"]


@pytest.mark.parametrize("cell, region", [((2, 2), "middle"), ((0, 0), "top_left"), ((4, 4), "bottom_right"),
                                          ((0, 2), "top"), ((2, 0), "left"), ((3, 4), "bottom_right")])
def test_where_the_heatmap_is_strongest(app, cell, region):
    cam = np.zeros((5, 5), np.float32)
    cam[cell] = 1.0
    assert app.hottest(cam) == region


@pytest.mark.parametrize("lang", languages())
@pytest.mark.parametrize("age, site, codes", [(10, None, ["age_young"]), ("17.5", "back", ["age_young"]),
                                              (18, None, []), (50, "face", []), (90, None, ["age_old"]),
                                              (None, "palms/soles", ["site_rare"]), ("", "genital", ["site_rare"])])
def test_values_the_model_barely_saw_get_a_caution(app, lang, age, site, codes):
    assert app.spec.rarely_seen(age, site) == codes
    lines = app.caution_lines(age, site, lang)
    assert lines == [words(f"caution.{c}", lang, site=app.site_name(app.spec.parse_site(site) or "", lang))
                     for c in codes]
    if "site_rare" in codes:
        assert app.site_name(site, lang) in lines[0]
    pred = prediction(app, probs(0.0, 0.0, 0.98, 0.02))
    text = app.verdict(pred, lang, cautions=lines)
    assert all(line in text for line in lines) and (words("answer.caution", lang) in text) == bool(codes)

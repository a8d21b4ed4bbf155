"""The network, the metadata encoding, the checkpoint format and the public API."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from model import CheckpointError, MetadataSpec, ModelArgs, SkinLesionNet, load_classifier, save_weights
from model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_model
from model.classifier import risk_level
from model.texts import words

SPEC = MetadataSpec()


@pytest.fixture
def net():
    """A fresh network for each test: training mode and backward passes change it."""
    torch.manual_seed(0)
    return SkinLesionNet(ModelArgs(meta_dim=SPEC.dim))


def batch(n=2, size=64):
    meta = torch.tensor([SPEC.encode(40, "female", "back"), SPEC.unknown()][:n] * (n // 2 or 1))
    return torch.randn(n, 3, size, size), meta


def test_forward_shape_and_finite(net):
    net.eval()
    x, meta = batch()
    out = net(x, meta)
    assert out.shape == (2, 4)
    assert torch.isfinite(out).all()
    assert net.feature_dim == 1280 == net.forward_features(x).shape[1]


def test_backward_reaches_every_parameter(net):
    net.train()
    x, meta = batch(4)
    net(x, meta).logsumexp(1).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_save_load_identical(net, tmp_path):
    with torch.no_grad():  # BatchNorm statistics unlike a new network's, so a loader that drops buffers shows
        for b in net.buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5)
    net.eval()
    preprocessing = {"input_size": 64, "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    config = {"classes": [{"id": c, "name": c} for c in ("melanoma", "other_cancer", "benign", "no_lesion")],
              "metadata": SPEC.to_dict(), "preprocessing": preprocessing}
    save_weights(net, tmp_path, config)
    loaded, cfg, _ = load_model(tmp_path)
    x, meta = batch()
    with torch.inference_mode():
        assert torch.equal(net(x, meta), loaded(x, meta))
    assert cfg["preprocessing"] == preprocessing and MetadataSpec.from_dict(cfg["metadata"]) == SPEC


def test_metadata_missing_is_its_own_state():
    known = SPEC.encode(50, "female", "back")          # age 50 scales to 0: must still differ from missing
    missing_age = SPEC.encode(None, "female", "back")
    assert known != missing_age and known[0] == 0.0 and known[1] == 0.0 and missing_age[1] == 1.0
    assert len(known) == SPEC.dim and sum(SPEC.unknown()[2:]) == 2  # one "unknown" slot for sex, one for site
    assert (SPEC.encode(sex="unknown") == SPEC.encode(sex=None) == SPEC.encode(sex="")
            == SPEC.encode(sex="prefer not to say"))
    assert SPEC.encode(site="back") == SPEC.encode(site="posterior torso")  # the two vocabularies meet
    assert SPEC.encode(site="face") == SPEC.encode(site="head/neck")
    assert SPEC.encode(sex="male") != SPEC.encode(sex="female")
    with pytest.raises(ValueError, match="between"):
        SPEC.encode(age=250)
    with pytest.raises(ValueError, match="site"):
        SPEC.encode(site="moon")


# Every site word of the training data (HAM10000 `localization`, ISIC 2019 `anatom_site_general`) and the site
# the model is given for it.
DATA_SITES = {
    "head/neck": ["head/neck", "face", "scalp", "ear", "neck"],
    "upper extremity": ["upper extremity", "hand"],
    "lower extremity": ["lower extremity", "foot"],
    "anterior torso": ["anterior torso", "chest", "abdomen"],
    "posterior torso": ["posterior torso", "back"],
    "torso": ["trunk", "lateral torso"],
    "palms/soles": ["acral"],
    "genital": ["genital"],
    None: ["unknown"],
}


@pytest.mark.parametrize("site, word", [(site, w) for site, words in DATA_SITES.items() for w in words])
def test_every_data_site_word_is_read_as_its_site(site, word):
    assert SPEC.parse_site(word) == site


@pytest.mark.parametrize("damage", ["no_config", "bad_json", "no_weights", "corrupt_weights", "wrong_hash"])
def test_broken_weights_folder_names_the_file(trained_weights, tmp_path, damage):
    folder = tmp_path / "w"
    shutil.copytree(trained_weights, folder)
    if damage == "no_config":
        (folder / CONFIG_FILE).unlink()
    elif damage == "bad_json":
        (folder / CONFIG_FILE).write_text("{not json")
    elif damage == "no_weights":
        (folder / WEIGHTS_FILE).unlink()
    elif damage == "corrupt_weights":
        data = bytearray((folder / WEIGHTS_FILE).read_bytes())
        data[100:200] = b"\0" * 100
        (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    else:
        cfg = json.loads((folder / CONFIG_FILE).read_text())
        cfg["weights_sha256"] = "0" * 64
        (folder / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        load_classifier(folder)
    assert (CONFIG_FILE if damage in ("no_config", "bad_json") else WEIGHTS_FILE) in str(e.value)


def test_predict_on_real_images(shipped, example_images):
    """Each answer: a distribution over the four classes, its top class as label, a risk level and its advice
    (which risk for which photo: tests/test_golden.py; the rule on hand-worked values: test_risk_follows_thresholds)."""
    results = shipped.predict_batch(list(example_images["path"]), list(example_images["age"]),
                                    list(example_images["sex"]), list(example_images["site"]))
    assert len(results) == len(example_images)
    for r in results:
        assert set(r.probabilities) == {"melanoma", "other_cancer", "benign", "no_lesion"}
        assert abs(sum(r.probabilities.values()) - 1) < 1e-5
        assert r.label == max(r.probabilities, key=r.probabilities.get)
        assert r.risk in ("high", "moderate", "low", "uncertain") if r.in_scope else r.risk == "out_of_scope"
        assert r.advice == words(f"risk.{r.advice_code}") and r.advice_code in (r.risk, "no_lesion")


def test_explain_heatmap(shipped, example_images):
    img = Image.open(example_images["path"][0]).resize((300, 200))
    heat = shipped.explain(img, age=60)
    assert heat.size == img.size and heat.mode == "RGB"
    assert not np.array_equal(np.asarray(heat), np.asarray(img.convert("RGB")))


def reference_gradcam(model, image, meta, target):
    """Textbook Grad-CAM: hook the last block, back-propagate the class logit through the whole network."""
    store = {}
    handle = model.backbone.blocks[-1].register_forward_hook(lambda m, i, o: store.update(act=o) or o.retain_grad())
    try:
        with torch.enable_grad():
            logits = model(image.requires_grad_(True), meta)
            logits[0, target].backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    act, grad = store["act"][0], store["act"].grad[0]
    cam = torch.relu((grad.mean(dim=(1, 2), keepdim=True) * act).sum(0))
    return (cam / cam.max()).detach().numpy()


def test_heatmap_is_grad_cam_of_the_whole_network(shipped, example_images):
    """predict's heatmap (one ONNX pass, backward through the head only) equals the full backward pass's."""
    ex = example_images.iloc[:4]
    preds = shipped.predict_batch(list(ex["path"]), list(ex["age"]), list(ex["sex"]), list(ex["site"]))
    _, x, meta = shipped._prepare(list(ex["path"]), list(ex["age"]), list(ex["sex"]), list(ex["site"]))
    checked = 0
    for i, pred in enumerate(preds):
        if pred.heatmap is None:
            assert not pred.in_scope
            continue
        ref = reference_gradcam(shipped.model, x[i:i + 1].clone(), meta[i:i + 1], shipped.classes.index(pred.label))
        assert pred.heatmap.shape == ref.shape and ref.shape[0] > 1
        np.testing.assert_allclose(pred.heatmap, ref, atol=1e-3)
        checked += 1
    assert checked >= 3


def test_explain_other_class_differs(shipped, example_images):
    img = Image.open(example_images["path"][0])
    pred = shipped.predict(img)
    other = next(c for c in shipped.classes if c not in (pred.label, "no_lesion"))
    a, b = np.asarray(shipped.explain(img)), np.asarray(shipped.explain(img, target=other))
    assert np.array_equal(a, np.asarray(shipped.explain(img)))  # deterministic
    assert not np.array_equal(a, b)


def test_blurred_lesion_gets_blur_warning(shipped, example_images):
    img = Image.open(example_images["path"][0]).resize((448, 448))
    assert not any("blur" in w for w in shipped.predict(img).warnings)
    blurred = shipped.predict(img.filter(ImageFilter.GaussianBlur(8)))
    assert any("blur" in w for w in blurred.warnings)


def paste_on_skin(img: Image.Image, where: tuple[int, int], side: int = 600) -> Image.Image:
    """The photo on a larger canvas of its own border's skin colour, its top-left corner at `where`."""
    a = np.asarray(img.convert("RGB"))
    border = np.concatenate([a[:8].reshape(-1, 3), a[-8:].reshape(-1, 3)])
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in np.median(border, 0)))
    canvas.paste(img, where)
    return canvas


def test_off_centre_spot_gets_a_warning(example_images):
    """Pigmented spots (melanoma, moles) moved into a corner are seen; pale pink carcinomas may not stand out."""
    from model.quality import check
    lesions = example_images[example_images["label4"].isin(["melanoma", "benign"])]
    assert len(lesions) >= 4
    for path in lesions["path"]:
        img = Image.open(path).convert("RGB")
        assert not any("middle" in w for w in check(img).warnings())  # the photo as it is: centred
        assert not any("middle" in w for w in check(paste_on_skin(img, (188, 188))).warnings())
        assert any("middle" in w for w in check(paste_on_skin(img, (10, 10))).warnings()), path


def test_plain_skin_has_no_spot(example_images):
    from model.quality import check
    for path in example_images[example_images["label4"] == "no_lesion"]["path"]:
        assert not any("middle" in w for w in check(Image.open(path)).warnings())


def test_dark_image_warning(shipped, example_images):
    img = Image.open(example_images["path"][0]).resize((448, 448)).point(lambda v: v // 6)
    assert any("dark" in w for w in shipped.predict(img).warnings)


def test_solid_colour_is_refused(shipped):
    r = shipped.predict(Image.new("RGB", (300, 300), (200, 150, 130)))
    assert not r.in_scope and r.risk == "out_of_scope"


def p(melanoma, other_cancer, benign, no_lesion) -> dict[str, float]:
    return {"melanoma": melanoma, "other_cancer": other_cancer, "benign": benign, "no_lesion": no_lesion}


def test_risk_follows_thresholds():
    th = {"melanoma": 0.3, "malignant": 0.4, "melanoma_high": 0.7, "malignant_high": 0.8, "uncertain_max_prob": 0.5}
    assert risk_level(p(0.75, 0.0, 0.25, 0.0), th) == "high"
    assert risk_level(p(0.05, 0.8, 0.15, 0.0), th) == "high"
    assert risk_level(p(0.35, 0.0, 0.65, 0.0), th) == "moderate"
    assert risk_level(p(0.1, 0.32, 0.58, 0.0), th) == "moderate"
    assert risk_level(p(0.1, 0.1, 0.4, 0.4), th) == "uncertain"
    assert risk_level(p(0.05, 0.05, 0.9, 0.0), th) == "low"


def test_thresholds_and_temperature_per_photo_type(classifier):
    """A phone photo is judged by the phone photos' thresholds; values a type lacks come from the top level."""
    clf = classifier
    clf.config["thresholds"] = {"melanoma": 0.3, "malignant": 0.4, "melanoma_high": 0.7, "malignant_high": 0.8,
                                "by_photo_type": {"clinical": {"malignant": 0.6, "malignant_high": 0.95}}}
    clf.config["calibration"] = {"temperature": 1.0, "by_photo_type": {"clinical": {"temperature": 2.0}}}
    probs = p(0.1, 0.4, 0.5, 0.0)
    assert clf.risk(probs, "dermoscopic") == "moderate" and clf.risk(probs, "clinical") == "low"
    probs = p(0.05, 0.85, 0.1, 0.0)
    assert clf.risk(probs, "dermoscopic") == "high" and clf.risk(probs, "clinical") == "moderate"
    assert clf.fitted("thresholds", "clinical")["melanoma_high"] == 0.7
    assert clf.fitted("calibration", "clinical")["temperature"] == 2.0
    assert clf.fitted("calibration", "dermoscopic")["temperature"] == 1.0


def test_predict_uses_the_temperature_of_the_photo_type(classifier, example_images):
    """The temperature fitted for the photo's type softens its probabilities; another type's does not."""
    clf, photo = classifier, example_images["path"][0]
    clf.config["calibration"] = {"temperature": 1.0}
    plain = clf.predict(photo)
    if plain.photo_type is None:
        pytest.skip("these weights have no photo-type head")
    other = next(t for t in clf.photo_types if t != plain.photo_type)
    clf.config["calibration"]["by_photo_type"] = {other: {"temperature": 100.0}}
    assert clf.predict(photo).probabilities == pytest.approx(plain.probabilities, abs=1e-6)
    clf.config["calibration"]["by_photo_type"] = {plain.photo_type: {"temperature": 100.0}}
    assert max(clf.predict(photo).probabilities.values()) < max(plain.probabilities.values())


def test_natural_photo_is_refused(shipped):
    from sklearn.datasets import load_sample_images
    for photo in load_sample_images().images:   # a temple in China, a flower
        r = shipped.predict(Image.fromarray(photo))
        assert not r.in_scope and r.risk == "out_of_scope", r.ood_distance


def test_lesions_are_in_scope(shipped, example_images):
    results = shipped.predict_batch(list(example_images["path"]))
    assert sum(r.in_scope for r in results) >= len(results) - 1


"""The Gradio app end to end, through gradio_client as a user's program would call it.

The shipped weights may be a placeholder model: no test asserts which class comes out on top.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from model.photo_types import PHOTO_TYPES, meaning
from model.texts import words

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "melanoma_ISIC_0026853.jpg"
CLASS_NAMES = {"Melanoma", "Other skin cancer", "Benign lesion", "No lesion"}


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    return Client(app.demo.local_url, verbose=False)


def predict(client, image, age=None, sex=None, site=None):
    from gradio_client import handle_file
    return client.predict(None if image is None else handle_file(str(image)), age, sex, site, api_name="/predict")


def assert_four_bars(label: dict):
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == CLASS_NAMES
    assert sum(confidences.values()) == pytest.approx(1.0, abs=1e-4)
    assert label["label"] == max(confidences, key=confidences.get)


def test_example_gets_four_classes_a_verdict_and_a_heatmap(client):
    label, verdict, heatmap = predict(client, EXAMPLE)
    assert_four_bars(label)
    assert "concern" in verdict or "unsure" in verdict
    assert heatmap["url"].startswith("data:image/jpeg;base64,")  # inline: never written to disk
    img = Image.open(io.BytesIO(base64.b64decode(heatmap["url"].split(",", 1)[1])))
    assert img.size == Image.open(EXAMPLE).size


@pytest.mark.parametrize("age, sex, site", [(55, "male", None), (40.0, "female", "anterior torso"),
                                            (None, "prefer not to say", ""), (80, None, "face")])
def test_metadata(client, age, sex, site):
    assert_four_bars(predict(client, EXAMPLE, age, sex, site)[0])


def test_solid_colour_is_refused_without_bars(client, app, tmp_path):
    Image.new("RGB", (300, 300), (200, 150, 120)).save(tmp_path / "flat.png")
    label, verdict, heatmap = predict(client, tmp_path / "flat.png")
    assert not label or not label.get("confidences")
    assert words("refusal.flat") in verdict
    assert heatmap is None


@pytest.mark.parametrize("image, age, site, message", [
    ("text", None, None, "not an image we can read"),
    (EXAMPLE, 500, None, "Age must be between"),
    (EXAMPLE, "old", None, "Age must be a number"),
    (EXAMPLE, None, "moon", "Unknown body site"),
    (None, None, None, "Please upload a photo"),
])
def test_bad_input_gets_a_clear_message_and_the_app_stays_up(client, tmp_path, image, age, site, message):
    from gradio_client.exceptions import AppError
    if image == "text":
        image = tmp_path / "notes.jpg"
        image.write_text("these are my notes, not a photo")
    with pytest.raises(AppError, match=message):
        predict(client, image, age, None, site)
    assert_four_bars(predict(client, EXAMPLE)[0])


def test_no_run_history_in_the_browser(app):
    """The page is told not to keep past answers in the browser, and the run-history page is not served."""
    import httpx
    config = httpx.get(app.demo.local_url + "config").json()
    assert config["run_history"] is False
    assert httpx.get(app.demo.local_url + "gradio_api/runs").status_code == 404


def test_uploads_stay_for_other_requests_until_the_cleaner_takes_them(client, app, upload_dir, tmp_path):
    from gradio.route_utils import delete_files_created_by_app
    # Bytes unlike any example's, so the upload gets its own file in the upload folder.
    Image.open(EXAMPLE).save(tmp_path / "my_spot.png")
    examples = set().union(*(getattr(b, "keep_in_cache", ()) for b in app.demo.blocks.values()))  # the gallery's copies
    assert len(examples) >= len(app.gallery_rows())
    predict(client, tmp_path / "my_spot.png", 55, "male")
    assert uploads(upload_dir, "my_spot*"), "an answer deleted an upload that another request could still be reading"
    assert_four_bars(predict(client, tmp_path / "my_spot.png")[0])  # the same bytes again: the same file, still there
    delete_files_created_by_app(app.demo, age=0)  # what Gradio's cleaner does once UPLOAD_SECONDS have passed
    assert not uploads(upload_dir, "my_spot*")
    assert all(Path(p).is_file() for p in examples), "the cleaner took the examples' copies"
    assert app.demo.delete_cache == (app.CLEAN_EVERY_S, app.UPLOAD_SECONDS)


def uploads(folder: Path, pattern: str) -> set[str]:
    return {str(p) for p in folder.rglob(pattern) if p.is_file()}


def test_a_photo_cleaned_away_gets_a_message_without_the_server_path(app, upload_dir):
    from gradio import Error  # the one exception whose message Gradio shows on the page
    gone = str(upload_dir / "0123abcd" / "my_spot.jpg")
    with pytest.raises(Error) as e:
        app.analyze({"path": gone, "url": None}, None, None, None)
    assert "upload it again" in str(e.value) and str(upload_dir) not in str(e.value) and "my_spot" not in str(e.value)
    elsewhere = {"path": str(EXAMPLE), "url": None}  # a path outside the upload folder is never read
    with pytest.raises(Error, match="upload it again"):
        app.analyze(elsewhere, None, None, None)


def test_untouched_age_reaches_the_model_as_unknown(client, app, monkeypatch):
    seen, predict_ = [], app.clf.predict

    def record(image, age, sex, site):
        seen.append(age)
        return predict_(image, age, sex, site)

    monkeypatch.setattr(app.clf, "predict", record)
    predict(client, EXAMPLE, None, None, None)
    predict(client, EXAMPLE, "", None, None)
    assert [app.spec.parse_age(a) for a in seen] == [None, None]


@pytest.mark.parametrize("photo_type", ["dermoscopic", "clinical", None])
def test_verdict_says_what_kind_of_photo_it_saw(app, photo_type):
    from model import Prediction
    pred = Prediction({"melanoma": 0.6, "other_cancer": 0.1, "benign": 0.3, "no_lesion": 0.0}, "melanoma", "high",
                      "High concern: see a dermatologist.", photo_type=photo_type)
    text = app.verdict(pred)
    assert text.startswith("## Risk: high") and "High concern" in text
    for kind in PHOTO_TYPES:
        assert (meaning(kind) in text) == (kind == photo_type)


def test_gallery_follows_its_rule_file(app):
    """Every kind of photo, every class, no example small enough to be warned about, and each example's file,
    true diagnosis and form values (age, sex, site) are ones the app accepts."""
    from model.quality import MIN_GOOD_SIDE
    rows = app.gallery_rows()
    assert set(rows["kind"]) == {"dermoscopic", "clinical", "not skin"}
    assert set(rows.loc[rows["kind"] == "dermoscopic", "label4"]) == {"melanoma", "other_cancer", "benign"}
    assert set(rows["label4"]) == {"melanoma", "other_cancer", "benign", "no_lesion", ""}
    for r in rows.itertuples():
        assert (app.EXAMPLES / r.file).is_file() and r.truth, r.file
        assert min(Image.open(app.EXAMPLES / r.file).size) >= MIN_GOOD_SIDE, r.file
        photo, age, sex, site = app.example_inputs(app.spec, r)  # raises ValueError for a value the form refuses
        assert app.spec.encode(age, sex, site) == app.spec.encode(r.age, r.sex, r.site), r.file


def test_missing_weights_give_a_message_not_a_traceback(client, app, monkeypatch):
    from gradio_client.exceptions import AppError
    monkeypatch.setenv("SKINLESION_WEIGHTS", "/nonexistent/weights")
    clf, message = app.load()
    assert clf is None and "could not be loaded" in message
    monkeypatch.setattr(app, "clf", None)
    monkeypatch.setattr(app, "LOAD_ERROR", message)
    with pytest.raises(AppError, match="could not be loaded"):
        predict(client, EXAMPLE)


def row(text: str, name: str) -> list[str]:
    """The cells of the markdown table row in `text` whose first cell is `name`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == name:
            return cells
    return []


def test_about_the_model_shows_the_figures_in_config(app):
    config = app.clf.config
    report = config["metrics"]["test"]["report"]
    text = app.about_model(config)
    assert row(text, "Melanoma AUC") == ["Melanoma AUC", f"{report['melanoma_auc']:.3f}"]
    assert row(text, "Balanced accuracy") == ["Balanced accuracy", f"{report['balanced_accuracy']:.3f}"]
    for c in config["classes"]:
        assert str(report[c["id"]]["n"]) in row(text, c["name"]), c["name"]
    assert "### Data" in text and "### Training" in text
    only_auc = app.about_model({"metrics": {"test": {"report": {"macro_auc": 0.9}}}})
    assert row(only_auc, "Macro AUC (4 classes)") == ["Macro AUC (4 classes)", "0.900"]
    assert "no metrics" in app.about_model({})  # says so, rather than an empty tab


def test_many_clients_sending_the_same_photo_are_all_answered_and_the_upload_is_cleaned_away(tmp_path):
    """8 clients x 2 requests of one identical photo at once, the app in its own process keeping uploads 15 s."""
    from benchmarks.load_test import get_args_parser, main
    args = get_args_parser().parse_args(["--same-file", "--clients", "8", "--per-client", "2", "--overload", "0",
                                         "--requests", "0", "--upload-seconds", "15",
                                         "--out", str(tmp_path / "load.json")])
    results = main(args)
    r = results["throughput"]
    assert r["same_file"] and r["answered"] == r["requests"] == 16, r["errors"]
    lifetime = 15 + 3  # SKINLESION_UPLOAD_SECONDS + the cleaner's period (app.CLEAN_EVERY_S for 15 s)
    assert results["cleanup_s"] is not None and results["cleanup_s"] <= lifetime, results["upload_files"]
    assert results["upload_files"]["after_cleanup"] == 0


def test_phone_photo_end_to_end(client, app):
    """A phone photo through /predict: four bars, and the verdict says which kind of photo the model saw and
    what that means for trusting it, the same kind as the model's own answer for that photo."""
    rows = app.gallery_rows()
    phone = app.EXAMPLES / rows.loc[(rows["kind"] == "clinical") & (rows["label4"] != "no_lesion"), "file"].iloc[0]
    label, verdict, _ = predict(client, phone, 58, None, "face")
    own = app.clf.predict(phone, age=58, site="face")
    if not own.in_scope:
        assert words(f"refusal.{own.refusal_reason}") in verdict
        return
    assert_four_bars(label)
    if own.photo_type is None:
        pytest.skip("these weights have no photo-type head")
    assert meaning(own.photo_type) in verdict
    assert sum(meaning(kind) in verdict for kind in PHOTO_TYPES) == 1

"""The Gradio app end to end, through gradio_client as a user's program would call it.

The shipped weights may be a placeholder model: no test asserts which class comes out on top.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

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
    assert app.OUT_OF_SCOPE_MESSAGE in verdict
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
    assert app.demo.run_history is False


def test_no_upload_is_left_on_disk(client, app, upload_dir, tmp_path):
    from gradio_client.exceptions import AppError
    # Bytes unlike any example's, so the upload gets its own file in the upload folder.
    Image.open(EXAMPLE).save(tmp_path / "my_spot.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    predict(client, tmp_path / "my_spot.png", 55, "male")
    with pytest.raises(AppError):
        predict(client, tmp_path / "broken.jpg")
    left = {str(p.resolve()) for p in upload_dir.rglob("*") if p.is_file()} - app.EXAMPLE_COPIES
    assert not left
    assert not list(upload_dir.rglob("my_spot*")) and not list(upload_dir.rglob("broken*"))


def test_examples_survive_their_own_analysis(client, app):
    predict(client, EXAMPLE)
    assert app.EXAMPLE_COPIES and all(Path(p).is_file() for p in app.EXAMPLE_COPIES)


def test_missing_weights_give_a_message_not_a_traceback(client, app, monkeypatch):
    from gradio_client.exceptions import AppError
    monkeypatch.setenv("SKINLESION_WEIGHTS", "/nonexistent/weights")
    clf, message = app.load()
    assert clf is None and "could not be loaded" in message
    monkeypatch.setattr(app, "clf", None)
    monkeypatch.setattr(app, "LOAD_ERROR", message)
    with pytest.raises(AppError, match="could not be loaded"):
        predict(client, EXAMPLE)


def test_about_the_model_reads_config(app):
    text = app.about_model(app.clf.config)
    for figure in ["Macro AUC", "Melanoma AUC", "Balanced accuracy", "ECE", "Sensitivity", "### Data", "### Training"]:
        assert figure in text
    assert app.about_model({"metrics": {"test": {"report": {"macro_auc": 0.9}}}}).count("|") > 0
    assert app.about_model({})

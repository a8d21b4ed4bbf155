"""The Gradio app end to end, through gradio_client as a user's program would call it.

The shipped weights may be a placeholder model: no test asserts which class comes out on top.
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from broken_weights import BREAKAGES, broken_weights
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
    assert "upload the photo again" in str(e.value) and str(upload_dir) not in str(e.value)
    assert "my_spot" not in str(e.value)
    elsewhere = {"path": str(EXAMPLE), "url": None}  # a path outside the upload folder is never read
    with pytest.raises(Error, match="upload the photo again"):
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


def test_about_the_model_shows_the_figures_of_the_record(app):
    """The app's short card renders the record's test figures per photo type, each with its interval, under
    one unambiguous name; weights without figures say so rather than show an empty tab."""
    from model.card import short_card
    from model.checkpoint import read_card
    card = read_card(app.clf.weights_dir)
    text = short_card(card)
    for name, r in card["metrics"]["test"]["by_photo_type"].items():
        column = list(card["metrics"]["test"]["by_photo_type"]).index(name) + 1
        lo, hi = r["melanoma_auc_ci95"]
        assert row(text, "melanoma vs other lesions AUC")[column] == f"{r['melanoma_auc']:.3f} ({lo:.2f}-{hi:.2f})"
    assert "Melanoma AUC" not in text  # the melanoma-vs-everything figure has another name in the full card
    assert "no test figures" in short_card({"metrics": {}})


@pytest.mark.parametrize("lang", ["pt-BR", "es"])
def test_about_the_model_reads_in_the_readers_language_with_its_decimal_comma(app, lang):
    """The same figures as the English card, under translated names, written 0,880 rather than 0.880."""
    from model.card import short_card
    from model.checkpoint import read_card
    card = read_card(app.clf.weights_dir)
    text = short_card(card, lang)
    r = card["metrics"]["test"]["by_photo_type"]["dermoscopic"]
    lo, hi = r["melanoma_auc_ci95"]
    expected = f"{r['melanoma_auc']:.3f} ({lo:.2f}-{hi:.2f})".replace(".", ",")
    assert row(text, words("card.melanoma_auc", lang))[1] == expected
    assert words("card.melanoma_auc", lang) != words("card.melanoma_auc")
    assert app.I18N.translations[lang]["page.card"] == text  # what the page's About shows to this reader


@pytest.mark.parametrize("lang", ["pt-BR", "es"])
def test_the_report_reads_in_the_readers_language_with_its_decimal_comma(app, lang):
    upload = Path(app.demo.GRADIO_CACHE) / f"test_report_{lang}" / "spot.jpg"  # where Gradio keeps an upload
    upload.parent.mkdir(parents=True, exist_ok=True)
    upload.write_bytes(EXAMPLE.read_bytes())
    pdf = Path(app.report_path({"path": str(upload), "url": None}, 55, None, "back", None, lang))
    pages, text = pdf_text(pdf)
    for made in (pdf, upload):  # not made through a request, so Gradio's cleaner would not know them
        made.unlink()
        made.parent.rmdir()
    own = app.clf.predict(EXAMPLE, 55, None, "back")
    assert pages == 1 and " ".join(words("disclaimer", lang).split()) in text
    for c, p in own.probabilities.items():
        figure = f"{100 * p:.1f}".replace(".", ",")
        assert f"{app.class_name(c, lang)}: {words('percent.one_decimal', lang, value=figure)}" in text


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


# ---- /assess and /report: the API for programs -----------------------------------------------------------------
@pytest.fixture(scope="module")
def answered(app) -> Path:
    """An example photo these weights answer (do not refuse), so that every key of an answer is there to check."""
    for path in sorted((ROOT / "examples").glob("*.jpg")):
        if app.clf.predict(path, 55, "male", "back").in_scope:
            return path
    pytest.skip("these weights refuse every example")


def assess(client, image, **meta):
    from gradio_client import handle_file
    return client.predict(handle_file(str(image)), **meta, api_name="/assess")


def test_view_api_names_every_input_and_output_and_says_what_is_optional(client):
    import re
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/predict", "/assess", "/report"} <= set(endpoints)
    unnamed = re.compile(r"(value|param|parameter)_\d+|\d+(st|nd|rd|th)|key")  # key: a label made by gr.I18n
    for name, info in endpoints.items():
        names = ([p["parameter_name"] for p in info["parameters"]] + [p["label"] for p in info["parameters"]]
                 + [r["label"] for r in info["returns"]])
        readable = [n for n in names if isinstance(n, str) and re.fullmatch(r"[A-Za-z][\w ()-]*", n)]
        assert readable == names and not [n for n in names if unnamed.fullmatch(n)], (name, names)
    for name in ("/assess", "/report"):
        params = {p["parameter_name"]: p for p in endpoints[name]["parameters"]}
        assert list(params) == ["photo", "age", "sex", "site"]
        assert not params["photo"]["parameter_has_default"]
        assert all(params[k]["parameter_has_default"] and params[k]["parameter_default"] is None
                   for k in ("age", "sex", "site")), params
    assert [r["label"] for r in endpoints["/assess"]["returns"]] == ["assessment"]
    assert endpoints["/predict"]["parameters"][1]["parameter_has_default"]  # age may be left out there too
    assert endpoints["/predict"]["parameters"][1]["label"] == words("page.age")  # the page's label, in English


def test_assess_gives_the_answer_as_one_json_object(client, app, answered):
    answer = assess(client, answered, age=55, sex="male", site="back")
    own = app.clf.predict(answered, 55, "male", "back")
    assert answer["risk"] == own.risk and answer["advice"] == own.advice and answer["in_scope"] == own.in_scope
    assert list(answer["probabilities"]) == app.clf.classes
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert all(answer["probabilities"][c] == pytest.approx(p, abs=1e-5) for c, p in own.probabilities.items())
    assert answer["photo_type"] == own.photo_type
    assert answer["warnings"] == [{"code": c, "text": t} for c, t in zip(own.warning_codes, own.warnings, strict=True)]
    assert answer["model"] == {"weights_sha256": app.clf.config["weights_sha256"],
                               "input_size": app.clf.config["preprocessing"]["input_size"]}
    assert own.in_scope and "refusal_reason" not in answer
    assert answer["label"] == max(answer["probabilities"], key=answer["probabilities"].get)
    assert answer["heatmap"].startswith("data:image/png;base64,")
    heatmap = Image.open(io.BytesIO(base64.b64decode(answer["heatmap"].split(",", 1)[1])))
    assert heatmap.format == "PNG" and heatmap.size == Image.open(answered).size


def test_assess_of_a_refused_picture_keeps_the_probabilities_without_label_or_heatmap(client, tmp_path):
    Image.new("RGB", (300, 300), (200, 150, 120)).save(tmp_path / "flat.png")
    answer = assess(client, tmp_path / "flat.png")  # age, sex and site left out
    assert answer["in_scope"] is False and answer["risk"] == "out_of_scope"
    assert answer["refusal_reason"] == "flat" and answer["label"] is None and "heatmap" not in answer
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("meta, message", [({"age": "old"}, "Age must be a number"),
                                           ({"site": "moon"}, "Unknown body site")])
def test_assess_and_report_give_clear_messages_for_bad_input(client, meta, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    for endpoint in ("/assess", "/report"):
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(EXAMPLE)), **meta, api_name=endpoint)


def pdf_text(path) -> tuple[int, str]:
    from pypdf import PdfReader
    reader = PdfReader(path)
    return len(reader.pages), " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def test_report_is_a_one_page_pdf_of_the_answer_and_is_cleaned_away_like_an_upload(client, app, upload_dir,
                                                                                   answered):
    from gradio.route_utils import delete_files_created_by_app
    from gradio_client import handle_file
    local = client.predict(handle_file(str(answered)), age=55, site="back", api_name="/report")
    pages, text = pdf_text(local)
    own = app.clf.predict(answered, 55, None, "back")
    assert pages == 1
    for expected in (words(f"risk.title.{own.risk}"), words(f"risk.{own.advice_code}"), words("disclaimer"),
                     app.clf.config["weights_sha256"][:12], "age 55"):
        assert " ".join(expected.split()) in text, expected
    for c, p in own.probabilities.items():
        assert f"{app.clf.names[c]}: {100 * p:.1f} %" in text
    served = {p for p in upload_dir.rglob("*.pdf")} - {Path(local)}  # the client downloads into GRADIO_TEMP_DIR too
    assert served, "the report Gradio serves lies in its upload folder"
    delete_files_created_by_app(app.demo, age=0)  # what Gradio's cleaner does once UPLOAD_SECONDS have passed
    assert not any(p.exists() for p in served)


def test_the_page_makes_the_report_of_its_answer(app, tmp_path):
    """The button's handler, as the page calls it: the session's photo, the form's values."""
    (tmp_path / "up").mkdir()
    upload = app.demo.GRADIO_CACHE + "/test_report/spot.jpg"
    Path(upload).parent.mkdir(parents=True, exist_ok=True)
    Path(upload).write_bytes(EXAMPLE.read_bytes())
    update = app.show_report({"path": upload, "url": None}, "", "prefer not to say", "", None, None)
    assert update.visible
    pages, text = pdf_text(update.value["path"])
    assert pages == 1 and " ".join(words("disclaimer").split()) in text
    assert "age unknown" in text


# ---- bounded memory ----------------------------------------------------------------------------------------
def test_session_photos_let_go_of_the_least_recently_used_first(app):
    store = app.SessionPhotos(megabytes=1, seconds=60)
    third = 2**20 // 3
    for name in "abc":
        store.put(name, name, bytes(third))
    assert store.get("a")  # a is now used more recently than b
    store.put("d", "d", bytes(third))
    assert store.get("b") is None and all(store.get(k) for k in "acd")
    store.put("huge", "huge", bytes(2**20 + 1))  # larger than the whole cap: not kept, and nothing let go for it
    assert store.get("huge") is None and all(store.get(k) for k in "acd")
    store.drop("a")
    assert store.get("a") is None


def test_a_session_whose_photo_was_let_go_is_asked_for_it_again(app, upload_dir, monkeypatch):
    """Two sessions, room for one photo: once the uploads are cleaned away, the first session's second Analyze
    asks for the photo again, the second one's is answered from memory."""
    from gradio import Error
    monkeypatch.setattr(app, "SESSION_PHOTOS", app.SessionPhotos(megabytes=1, seconds=60))
    sessions = []
    for i in range(2):
        path = upload_dir / f"session_test_{i}" / "spot.jpg"  # as Gradio stores an upload
        path.parent.mkdir()
        buf = io.BytesIO()
        Image.open(EXAMPLE).rotate(90 * i).save(buf, "JPEG", quality=95)
        path.write_bytes(buf.getvalue().ljust(600_000, b"\0"))  # 0.6 MB: what follows the JPEG is not read
        photo = {"path": str(path), "url": None}
        key = app.outputs.index(app.last_photo)  # where the session's key is among the answer's values
        session = app.analyze(photo, None, None, None, None)[key]
        sessions.append((photo, session))
        assert app.analyze(photo, "40", None, None, session)[key] == session  # one key per session
    assert len(app.SESSION_PHOTOS.photos) == 1
    for photo, _ in sessions:
        Path(photo["path"]).unlink()  # what Gradio's cleaner does once UPLOAD_SECONDS have passed
    with pytest.raises(Error, match="upload the photo again"):
        app.analyze(*sessions[0][:1], None, None, None, sessions[0][1])
    label, verdict, *_ = app.analyze(sessions[1][0], None, None, None, sessions[1][1])
    assert verdict


def test_an_inline_photo_over_the_upload_limit_is_refused_before_it_is_decoded(app, monkeypatch):
    """Through the HTTP API, as the webcam sends a photo: a data URL whose text says more than MAX_FILE_MB."""
    import httpx
    decoded = []
    monkeypatch.setattr(app.base64, "b64decode", lambda text: decoded.append(len(text)))
    limit = app.MAX_FILE_MB * 2**20
    text = "A" * (limit // 3 * 4 + 8)  # 6 bytes over the limit once decoded
    photo = {"url": "data:image/jpeg;base64," + text, "path": None, "meta": {"_type": "gradio.FileData"}}
    with httpx.Client(base_url=app.demo.local_url, timeout=120) as http:
        event = http.post("gradio_api/call/predict", json={"data": [photo, None, None, None]}).json()["event_id"]
        answer = http.get(f"gradio_api/call/predict/{event}").text
    assert "event: error" in answer and "too large" in answer and f"at most {app.MAX_FILE_MB} MB" in answer, answer
    assert not decoded


def test_an_inline_photo_within_the_limit_is_answered(app):
    import httpx
    photo = {"url": "data:image/jpeg;base64," + base64.b64encode(EXAMPLE.read_bytes()).decode(), "path": None,
             "meta": {"_type": "gradio.FileData"}}
    with httpx.Client(base_url=app.demo.local_url, timeout=120) as http:
        event = http.post("gradio_api/call/assess", json={"data": [photo, None, None, None]}).json()["event_id"]
        answer = http.get(f"gradio_api/call/assess/{event}").text
    assert "event: complete" in answer and '"risk"' in answer, answer[:500]


# ---- weights that cannot be loaded ---------------------------------------------------------------------------
@pytest.mark.parametrize("breakage", BREAKAGES)
def test_every_broken_weights_folder_gives_the_page_its_message(app, tmp_path, monkeypatch, breakage):
    monkeypatch.setenv("SKINLESION_WEIGHTS", str(broken_weights(tmp_path / "weights", breakage)))
    clf, message = app.load()
    assert clf is None and "could not be loaded" in message and str(tmp_path) in message


def test_the_page_says_it_is_not_working_when_the_weights_are_broken(tmp_path):
    """The app started for real on a broken weights folder: it comes up, and its page says why it cannot help."""
    import sys

    import httpx

    from benchmarks.app_process import running_app
    weights = broken_weights(tmp_path / "weights", "corrupt_weights")
    with running_app([sys.executable, "app.py"], tmp_path / "gradio", tmp_path / "app.log",
                     {"SKINLESION_WEIGHTS": str(weights)}) as served:
        page = httpx.get(served.url + "/config", timeout=30).text
    assert "not working right now" in page and "does not match the sha256" in page
    assert "Traceback" not in (tmp_path / "app.log").read_text()

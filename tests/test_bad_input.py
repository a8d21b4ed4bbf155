"""Bad input at the edge: every file, bytes or PIL image and every metadata value either gives a prediction
or raises a ValueError (model.ImageError is one) whose message tells a person what to do. Never a traceback.

Runs against the shipped weights/ and never looks at which class wins, so it holds for any real weights.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model import ImageError, MetadataSpec, open_image

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "examples" / "melanoma_ISIC_0026853.jpg"   # 224x224 RGB JPEG
BOMB_SIDE = 12_000                                # 144 megapixels: 144 MB even as 1-bit, 432 MB as RGB

# 12000x12000 is above Pillow's warning limit (89 MP), below its error limit (179 MP): open_image refuses it
# itself, from the header, and Pillow's warning about it is expected noise here.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These tests are about input handling, not speed: one thread keeps them quick on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- the files ----------------------------------------------------------------------------------------

def photo(size=None) -> Image.Image:
    img = Image.open(PHOTO).convert("RGB")
    return img.resize(size) if size else img


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A 16x16 1-bit PNG whose IHDR claims side x side pixels (CRC fixed, so the header reads as valid)."""
    buf = io.BytesIO()
    Image.new("1", (16, 16)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def exif_jpeg(orientation: int) -> bytes:
    """400x300 stored, with a red block in the stored top-left corner and an EXIF Orientation tag."""
    img = Image.new("RGB", (400, 300), (40, 90, 160))
    img.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (300, 200), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def grey16() -> bytes:
    """16-bit greyscale (Pillow mode I;16): a ramp over the full 0..65535 range."""
    ramp = np.linspace(0, 65535, 256 * 256).reshape(256, 256).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG")
    return buf.getvalue()


def rgba() -> bytes:
    """The photo with its right half fully transparent."""
    img = photo().convert("RGBA")
    alpha = Image.new("L", img.size, 255)
    alpha.paste(0, (img.width // 2, 0, img.width, img.height))
    img.putalpha(alpha)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200">'
       b'<circle cx="100" cy="100" r="80"/></svg>\n')
FAKE_HEIC = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0" + b"mif1heic" + bytes(500)

OK = None  # expect a prediction
# name: (file name, bytes maker, None for a prediction or key words the error message must contain (regex))
CASES = {
    "empty": ("empty.jpg", lambda: b"", r"empty"),
    "text_as_jpg": ("notes.jpg", lambda: b"shopping list: milk, eggs\n" * 20, r"not an image we can read.*JPEG, PNG"),
    "truncated_jpeg": ("cut.jpg", lambda: PHOTO.read_bytes()[: PHOTO.stat().st_size // 2],
                       r"damaged or incomplete.*send it again"),
    "png_cut_in_header": ("cut.png", lambda: encoded(photo(), "PNG")[:20], r"damaged or incomplete.*send it again"),
    "1x1": ("dot.png", lambda: encoded(Image.new("RGB", (1, 1), "red"), "PNG"), r"too small \(1x1 pixels\)"),
    "sliver_4000x3": ("strip.png", lambda: encoded(Image.new("RGB", (4000, 3), "red"), "PNG"),
                      r"thin strip \(4000x3 pixels\)"),
    "bomb_12000x12000": ("bomb.png", png_bomb, r"too large \(12000x12000 pixels\).*under 40 megapixels"),
    "bomb_20000x20000": ("bomb2.png", lambda: png_bomb(20_000), r"too many pixels.*smaller"),  # Pillow's own limit
    "cmyk_jpeg": ("cmyk.jpg", lambda: encoded(photo().convert("CMYK"), "JPEG"), OK),
    "grey16_png": ("grey16.png", grey16, OK),
    "rgba_png": ("rgba.png", rgba, OK),
    "palette_gif": ("palette.gif", lambda: encoded(photo().convert("P"), "GIF"), OK),
    "animated_gif": ("animated.gif", animated_gif, OK),
    "exif_rotated_6": ("rot6.jpg", lambda: exif_jpeg(6), OK),
    "exif_rotated_8": ("rot8.jpg", lambda: exif_jpeg(8), OK),
    "webp": ("photo.webp", lambda: encoded(photo(), "WEBP"), OK),
    "bmp": ("photo.bmp", lambda: encoded(photo(), "BMP"), OK),
    "svg": ("drawing.svg", lambda: SVG, r"SVG.*not supported.*photo"),
    "fake_heic": ("IMG_0001.heic", lambda: FAKE_HEIC, r"HEIC.*not supported.*convert.*JPEG"),
    # Pillow would run Ghostscript on it
    "eps": ("photo.eps", lambda: encoded(photo(), "EPS"), r"not an image we can read.*JPEG, PNG"),
}
# Pillow cannot open these at all (the 20000x20000 bomb trips its own limit), so no caller holds them as PIL images;
# an EPS a caller opened itself is the caller's choice.
NOT_AS_PIL = {"empty", "text_as_jpg", "png_cut_in_header", "svg", "fake_heic", "bomb_20000x20000", "eps"}


# The files that must be decoded in a particular way really are of that kind (a Pillow upgrade could save them
# otherwise, and the tests would pass without exercising the conversion).
CLAIMED = {"cmyk_jpeg": ("CMYK", 1), "grey16_png": ("I;16", 1), "rgba_png": ("RGBA", 1), "palette_gif": ("P", 1),
           "animated_gif": (None, 3)}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad_input")
    out = {}
    for name, (filename, make, _) in CASES.items():
        out[name] = folder / filename
        out[name].write_bytes(make())
    for name, (mode, frames) in CLAIMED.items():
        with Image.open(out[name]) as im:
            assert mode in (None, im.mode) and getattr(im, "n_frames", 1) == frames, f"test file {name}: {im}"
    return out


def as_source(kind: str, path: Path):
    if kind == "path":
        return path
    if kind == "bytes":
        return path.read_bytes()
    return Image.open(path)  # "pil": lazily opened, nothing decoded yet, as a caller would pass it


def assert_prediction(pred):
    probs = np.array(list(pred.probabilities.values()))
    assert probs.shape == (4,) and np.all(probs >= 0) and np.all(probs <= 1)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)


def expect(clf, source, words, **meta):
    """A prediction if `words` is OK, else a ValueError whose message matches `words`. Anything else fails."""
    if words is OK:
        assert_prediction(clf.predict(source, **meta))
        return
    with pytest.raises(ValueError, match=f"(?is){words}") as err:
        clf.predict(source, **meta)
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 300


# ---- files, bytes and PIL images ------------------------------------------------------------------------

@pytest.mark.parametrize("case, kind", [(c, k) for c in CASES for k in ("path", "bytes", "pil")
                                        if not (k == "pil" and c in NOT_AS_PIL)])
def test_file_gives_prediction_or_clear_error(shipped, files, case, kind):
    source = as_source(kind, files[case])
    try:
        expect(shipped, source, CASES[case][2], age=55, sex="male", site="back")
    finally:
        if isinstance(source, Image.Image):
            source.close()


def test_missing_path_is_a_clear_error(shipped, tmp_path):
    expect(shipped, tmp_path / "nowhere.jpg", r"No image file at .*nowhere\.jpg")
    expect(shipped, str(tmp_path), r"No image file at")  # a folder, as a str like Gradio's file paths


@pytest.mark.parametrize("orientation, red_corner", [(6, (299, 0)), (8, (0, 399))])
def test_exif_orientation_is_honoured(files, orientation, red_corner):
    """Stored 400x300 with red at top-left; Orientation 6 (turn clockwise) puts it top-right, 8 bottom-left."""
    img = open_image(files[f"exif_rotated_{orientation}"])
    assert img.size == (300, 400)
    r, g, b = img.getpixel(red_corner)
    assert r > 200 and g < 60 and b < 60


def test_animated_gif_uses_first_frame(files):
    img = open_image(files["animated_gif"])
    assert img.mode == "RGB" and img.size == (300, 200)
    r, g, b = img.getpixel((150, 100))
    assert r > 200 and g < 60 and b < 60


def test_transparency_becomes_white_and_16_bit_is_scaled(files):
    img = open_image(files["rgba_png"])
    assert img.mode == "RGB" and img.getpixel((img.width - 1, 0)) == (255, 255, 255)
    grey = np.asarray(open_image(files["grey16_png"]).convert("L"))
    assert grey.min() <= 1 and grey.max() >= 254  # scaled from 0..65535, not clipped at 255


def rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_growth_mb(fn) -> float:
    """How far the peak resident memory rises above the current one while fn runs (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    start = rss_kb("VmRSS")
    fn()
    return (rss_kb("VmHWM") - start) / 1024


def test_bomb_refused_from_header_without_decoding(files):
    """Refusing the 144-megapixel PNG, as a path and as bytes, raises peak RSS by far less than decoding would."""
    data = files["bomb_12000x12000"].read_bytes()

    def refuse_both():
        for source in (files["bomb_12000x12000"], data):
            with pytest.raises(ImageError, match=r"too large \(12000x12000 pixels\)"):
                open_image(source)

    assert peak_growth_mb(lambda: np.ones(64 * 2**20, np.uint8).sum()) > 50  # the meter sees a 64 MB buffer
    assert peak_growth_mb(refuse_both) < 10


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_memory_stays_flat_over_repeated_bad_input(files):
    """Every file, as path, bytes and PIL image, 10 times through open_image: resident memory stays where it was
    after the first round (no file handles, buffers or half-decoded images kept)."""
    def one_round():
        for case, (_, _, words) in CASES.items():
            for kind in ("path", "bytes", "pil"):
                if kind == "pil" and case in NOT_AS_PIL:
                    continue
                source = as_source(kind, files[case])
                try:
                    open_image(source)
                    assert words is OK, case
                except ImageError:
                    assert words is not OK, case
                finally:
                    if isinstance(source, Image.Image):
                        source.close()
    one_round()
    before = rss_kb("VmRSS")
    for _ in range(10):
        one_round()
    assert (rss_kb("VmRSS") - before) / 1024 < 20


# ---- metadata -------------------------------------------------------------------------------------------

# The rule: empty / None / "unknown" / "prefer not to say" mean unknown (the model's own "unknown" input);
# an age that is not a number, or outside 0-120 years, and any word not in the vocabulary is a ValueError.
METADATA = [
    # (field, value, None for a prediction or key words of the error)
    ("age", -5, r"Age must be between 0 and 120 years, got -5"),
    ("age", 250, r"Age must be between 0 and 120 years, got 250"),
    ("age", "abc", r"Age must be a number of years, got 'abc'"),
    ("age", "", OK),
    ("age", None, OK),
    ("age", " 42 ", OK),
    ("sex", "other", r"Sex must be one of female, male \(or left empty\), got 'other'"),
    ("sex", "xyz", r"Sex must be one of female, male \(or left empty\), got 'xyz'"),
    ("sex", "", OK),
    ("sex", None, OK),
    ("sex", "prefer not to say", OK),
    ("sex", "Female", OK),
    ("site", "moon", r"Unknown body site 'moon'; use one of: head/neck, .*posterior torso.* \(or leave it empty\)"),
    ("site", "back", OK),
    ("site", "", OK),
    ("site", None, OK),
]


@pytest.mark.parametrize("field, value, words", METADATA, ids=[f"{f}={v!r}" for f, v, _ in METADATA])
def test_metadata_gives_prediction_or_clear_error(shipped, field, value, words):
    expect(shipped, PHOTO, words, **{field: value})


@pytest.mark.parametrize("field, value", [("age", ""), ("age", "unknown"), ("sex", ""), ("sex", "prefer not to say"),
                                          ("sex", "Unknown"), ("site", ""), ("site", "unknown")])
def test_unknown_words_encode_as_missing(field, value):
    spec = MetadataSpec()
    assert spec.encode(**{field: value}) == spec.unknown()


def test_site_aliases_map_to_canonical_sites():
    spec = MetadataSpec()
    assert spec.parse_site("back") == spec.parse_site(" Back ") == "posterior torso"
    assert spec.parse_site("face") == "head/neck"


# ---- the same files and values through the app's /predict, as a gradio_client user sends them --------------

@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    return Client(app.demo.local_url, verbose=False)


def expect_from_app(client, path, words, age=55, sex="male", site="back"):
    """Four bars (or the out-of-scope verdict) if `words` is OK, else the app's message matching `words`."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    if words is OK:
        label, verdict, _ = client.predict(handle_file(str(path)), age, sex, site, api_name="/predict")
        assert (label and len(label["confidences"]) == 4) or "No assessment" in verdict
        return
    with pytest.raises(AppError, match=f"(?is){words}") as err:
        client.predict(handle_file(str(path)), age, sex, site, api_name="/predict")
    assert "Traceback" not in str(err.value)


@pytest.mark.parametrize("case", list(CASES))
def test_file_through_the_app(client, files, case):
    expect_from_app(client, files[case], CASES[case][2])


@pytest.mark.parametrize("field, value, words", METADATA, ids=[f"{f}={v!r}" for f, v, _ in METADATA])
def test_metadata_through_the_app(client, field, value, words):
    meta = {"age": 55, "sex": "male", "site": "back", field: value}
    expect_from_app(client, PHOTO, words, **meta)

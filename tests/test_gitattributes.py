"""The repository pushes to a Hugging Face Space as it is: every tracked binary file, and every file over
10 MB, is stored through Git LFS by a rule in .gitattributes (the Hub refuses them otherwise), and the
README's front matter (the Space's configuration) is one the Hub accepts.

Git itself answers which rule covers a file (`git check-attr filter`), so the check reads .gitattributes
exactly as a push will.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HUB_LIMIT = 10 * 1024 * 1024   # larger files need LFS whatever they hold
SNIFF = 8000                   # git's own test for binary content: a NUL byte in the first 8000 bytes

needs_git = pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                               reason="needs git and a git checkout")


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, check=True).stdout


def needs_lfs(path: Path) -> bool:
    if path.stat().st_size > HUB_LIMIT:
        return True
    with open(path, "rb") as f:
        return b"\0" in f.read(SNIFF)


def needing_lfs(repo: Path) -> list[str]:
    """Tracked files that must go through LFS."""
    files = [f for f in git(repo, "ls-files", "-z").decode().split("\0") if f and (repo / f).is_file()]
    return [f for f in files if needs_lfs(repo / f)]


def uncovered(repo: Path) -> list[str]:
    """Tracked files that need LFS and have no `filter=lfs` rule."""
    wanted = needing_lfs(repo)
    if not wanted:
        return []
    # -z: "path NUL attribute NUL value NUL" for each file (the text ends with a NUL)
    out = git(repo, "check-attr", "-z", "--stdin", "filter", stdin="\0".join(wanted).encode()).decode()
    fields = out.split("\0")[:-1]
    filters = dict(zip(fields[0::3], fields[2::3], strict=True))
    return sorted(f for f in wanted if filters.get(f) != "lfs")


@needs_git
def test_every_binary_and_large_tracked_file_goes_through_lfs():
    shipped = {"weights/model.safetensors", "weights/roc.png", "examples/melanoma_ISIC_0026853.jpg"}
    assert shipped <= set(needing_lfs(ROOT)), "the check must see the shipped weights, plots and photos"
    assert uncovered(ROOT) == [], "add a rule for these files to .gitattributes (in the Hub template's style)"


# ---- the check itself, on a small repository made here ------------------------------------------------

def make_repo(folder: Path, gitattributes: str, files: dict[str, bytes]) -> Path:
    git(folder, "init", "-q")
    (folder / ".gitattributes").write_text(gitattributes)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    git(folder, "add", ".")
    return folder


CASES = {
    "model.bin": b"\x00\x01weights",                       # binary by content
    "scores.npy": b"\x93NUMPY\x01\x00",                    # binary by content, another extension
    "big.csv": b"a,b\n" * (HUB_LIMIT // 4 + 1),            # text, but over 10 MB
    "notes/readme.txt": b"plain text\n",                   # needs nothing
}


@needs_git
@pytest.mark.parametrize("gitattributes, expected", [
    ("", ["big.csv", "model.bin", "scores.npy"]),
    ("*.bin filter=lfs diff=lfs merge=lfs -text\n", ["big.csv", "scores.npy"]),
    ("*.bin filter=lfs diff=lfs merge=lfs -text\n*.npy filter=lfs diff=lfs merge=lfs -text\n", ["big.csv"]),
    ("*.bin filter=lfs diff=lfs merge=lfs -text\n*.npy filter=lfs diff=lfs merge=lfs -text\n"
     "*.csv filter=lfs diff=lfs merge=lfs -text\n", []),
    ("*.bin -text\n*.npy diff=lfs\n", ["big.csv", "model.bin", "scores.npy"]),   # attributes, but no LFS filter
], ids=["no-rules", "bin-only", "bin-npy", "all", "no-filter"])
def test_the_check_finds_uncovered_files(tmp_path, gitattributes, expected):
    assert uncovered(make_repo(tmp_path, gitattributes, CASES)) == expected


@needs_git
def test_this_repository_rules_cover_new_weights_and_photos(tmp_path):
    """The next weights file or photo, wherever it lands, is covered by the rules shipped here."""
    files = {"weights/next/model.safetensors": b"\x00" * 64, "runs/checkpoint.pt": b"\x80\x02\x00",
             "examples/IMG_0001.JPG": b"\xff\xd8\xff\x00", "weights/teacher.npz": b"PK\x03\x04\x00",
             "weights/plot.png": b"\x89PNG\r\n\x1a\n\x00"}
    assert uncovered(make_repo(tmp_path, (ROOT / ".gitattributes").read_text(), files)) == []


# ---- the Space's configuration ----------------------------------------------------------------------------

def front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "the README must start with the Space's YAML front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_front_matter_is_a_valid_space_configuration():
    card = front_matter(ROOT / "README.md")
    assert len(card["short_description"]) <= 60, "the Hub refuses a short_description over 60 characters"
    assert card["sdk"] == "gradio" and (ROOT / card["app_file"]).is_file()
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    pins = dict(line.split("#")[0].strip().split("==") for line in requirements if "==" in line)
    assert card["sdk_version"] == pins["gradio"], "the Space would run another Gradio than requirements.txt pins"
    assert card["license"] and (card["license"] != "other" or {"license_name", "license_link"} <= card.keys())

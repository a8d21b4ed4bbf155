"""weights/ = model.safetensors + config.json. The JSON says everything needed to rebuild the model.

Loading reads the JSON, checks the weight file's sha256, builds the network and loads strictly.
Only safetensors is read here: no pickle, so a weight file can never run code.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .metadata import MetadataSpec
from .network import ModelArgs, SkinLesionNet

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
RECORD_FILE = "record.json"
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

CLASSES = [
    {"id": "melanoma", "name": "Melanoma"},
    {"id": "other_cancer", "name": "Other skin cancer"},
    {"id": "benign", "name": "Benign lesion"},
    {"id": "no_lesion", "name": "No lesion"},
]
CLASS_IDS = [c["id"] for c in CLASSES]
# each class's index in the network's output, named from the list above (reordering CLASSES keeps them right)
MEL, OTHER, BENIGN, NO_LESION = (CLASS_IDS.index(c) for c in ("melanoma", "other_cancer", "benign", "no_lesion"))


class CheckpointError(RuntimeError):
    """A weights folder that cannot be loaded; the message names the file and what is wrong."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_config(weights_dir: Path | str) -> dict:
    path = Path(weights_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a weights folder needs {CONFIG_FILE} and {WEIGHTS_FILE}.")
    try:
        config = json.loads(path.read_text())
        for key in ("architecture", "classes", "metadata", "preprocessing"):
            config[key]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}).") from None
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path} lacks the section {e}.") from None
    return config


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file


def write_config(weights_dir: Path | str, config: dict) -> None:
    _write_json(Path(weights_dir) / CONFIG_FILE, config)


# A weights folder has two records. config.json holds what the Classifier reads, written once by training and
# calibration; record.json holds how the weights were made (training, data) and what was measured on them
# (metrics, appended by each analysis command), and the prose that explains the settings ("notes").
FORMAT_VERSION = 2
SETTINGS = ("classes", "metadata", "preprocessing", "photo_types", "architecture", "weights_sha256", "calibration",
            "thresholds", "ood")
NOTES = ("fitted_on", "chosen_on", "method", "quantile_on_val", "cheap_limits_fitted_on", "resize")


def split_config(config: dict) -> tuple[dict, dict]:
    """A config of the old single-file kind (or one being written) -> (settings, record)."""
    settings, record, notes = {"format_version": FORMAT_VERSION}, {}, {}
    for key, value in config.items():
        if key == "format_version":
            continue
        if key not in SETTINGS:
            record["photo_type_head" if key == "photo_type" else key] = value
        elif isinstance(value, dict):
            settings[key] = {k: v for k, v in value.items() if k not in NOTES}
            if prose := {k: v for k, v in value.items() if k in NOTES}:
                notes[key] = prose
        else:
            settings[key] = value
    if notes:
        record["notes"] = notes
    return settings, record


def read_record(weights_dir: Path | str) -> dict:
    """record.json of a weights folder ({} when it has none)."""
    path = Path(weights_dir) / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}).") from None


def write_record(weights_dir: Path | str, record: dict) -> None:
    _write_json(Path(weights_dir) / RECORD_FILE, record)


def read_card(weights_dir: Path | str) -> dict:
    """Settings and record as one dict, each settings section with its notes: what the model card renders."""
    settings, record = read_config(weights_dir), read_record(weights_dir)
    card = {**settings, **{k: v for k, v in record.items() if k not in ("notes", "photo_type_head")}}
    for section, prose in record.get("notes", {}).items():
        card[section] = {**settings.get(section, {}), **prose}
    if "photo_type_head" in record:
        card["photo_type"] = record["photo_type_head"]
    card.setdefault("metrics", {})
    return card


def save_metrics(weights_dir: Path | str, name: str, figures: dict) -> None:
    """Put figures into record.json's "metrics" under `name` (the model card and the app read them)."""
    record = read_record(weights_dir)
    record.setdefault("metrics", {})[name] = figures
    write_record(weights_dir, record)


def build_model(config: dict) -> SkinLesionNet:
    return SkinLesionNet(ModelArgs(**config["architecture"]))


OOD_PREFIX = "ood."  # tensors of the out-of-scope gate, stored beside the network's in the same file


def save_weights(model: SkinLesionNet, weights_dir: Path | str, config: dict, extra: dict | None = None) -> dict:
    """Write model.safetensors (network + `extra` tensors under ood.), config.json (the settings, with the file's
    sha256) and record.json (everything else of `config`: training, data, metrics, notes)."""
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state.update({OOD_PREFIX + k: v.detach().cpu().float().contiguous() for k, v in (extra or {}).items()})
    save_file(state, str(weights_dir / WEIGHTS_FILE))
    config = dict(config, architecture=model.args.to_dict(), weights_sha256=sha256(weights_dir / WEIGHTS_FILE))
    settings, record = split_config(config)
    write_config(weights_dir, settings)
    write_record(weights_dir, record)
    return settings


def load_model(weights_dir: Path | str = DEFAULT_WEIGHTS, verify: bool = True) -> tuple[SkinLesionNet, dict, dict]:
    """(network in eval mode, config, out-of-scope gate tensors: empty when the weights have none)."""
    weights_dir = Path(weights_dir)
    config = read_config(weights_dir)
    path = weights_dir / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing.")
    if verify and config.get("weights_sha256") and sha256(path) != config["weights_sha256"]:
        raise CheckpointError(f"{path} does not match the sha256 recorded in {CONFIG_FILE}: "
                              "the file is corrupt or was replaced. Download the weights again.")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}).") from None
    extra = {k[len(OOD_PREFIX):]: state.pop(k) for k in [k for k in state if k.startswith(OOD_PREFIX)]}
    try:
        model = build_model(config)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # an unknown argument or backbone name
        raise CheckpointError(f"The architecture in {weights_dir / CONFIG_FILE} cannot be built by this version of "
                              f"the code ({type(e).__name__}: {e}).") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit the architecture in {CONFIG_FILE}: {e}") from None
    return model.eval(), config, extra


def metadata_spec(config: dict) -> MetadataSpec:
    return MetadataSpec.from_dict(config["metadata"])

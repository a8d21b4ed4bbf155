"""Move a weights folder of the single-file kind (config.json with settings, records and figures together) to
the two records of this version: config.json (what the Classifier reads) and record.json (how the weights were
made and what was measured on them). The network file and its sha256 are unchanged.

    python -m training.migrate_weights weights/
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.checkpoint import CONFIG_FILE, FORMAT_VERSION, read_record, split_config, write_config, write_record


def migrate(folder: Path) -> bool:
    """True when the folder was migrated; False when it already is of this version."""
    config = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("format_version") == FORMAT_VERSION:
        return False
    settings, record = split_config(config)
    write_record(folder, {**read_record(folder), **record})
    write_config(folder, settings)
    return True


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path)
    for f in p.parse_args().folders:
        print(f"{f}: {'migrated' if migrate(f) else 'already of this version'}")

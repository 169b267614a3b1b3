"""A run folder's own copy of the prepared dataset it was trained on: `<run>/data/`.

Serving, recommending, evaluating and exporting read the vocabularies, the item -> context tables and the
users' stored histories from there, so a run folder copied to another machine (or kept after the data cache
is deleted) still works. The files are hard links to the cache where the file system allows (no space
used; the cache never changes a file in place, it replaces folders whole) and copies otherwise. Each
file's BLAKE2b digest is recorded in the run's config.json and checked when the run is loaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ssrf.core import DataError
from ssrf.dataset.artifacts import Prepared

CONFIG_KEYS = ("model", "model_options", "data", "train", "eval", "dataset", "protocol")
FILES = ("interactions.parquet", "items.parquet", "vocab.json", "meta.json")
FOLDER = "data"


def digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()


def store(data: Prepared, run_dir: Path) -> dict[str, str]:
    """Link (or copy) the prepared files into `run_dir/data`; return {file name: digest}."""
    dest = run_dir / FOLDER
    tmp = run_dir / f".{FOLDER}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FILES:
        try:
            os.link(data.path / name, tmp / name)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(data.path / name, tmp / name)
    shutil.rmtree(dest, ignore_errors=True)  # a resumed run stores the same files again
    os.replace(tmp, dest)
    return {name: digest(dest / name) for name in FILES}


def load(run_dir: Path, config: dict[str, Any]) -> Prepared:
    """The run's dataset: its own copy, every file checked against the digest recorded at training.

    Runs trained before run folders held their data (no `data_files` in config.json) still load from the
    prepared folder their `data_path` names."""
    expected = config.get("data_files")
    if expected is None:
        if "data_path" not in config:
            raise DataError("config.json names no dataset (no data_files, no data_path)", path=run_dir)
        return Prepared.load(config["data_path"])
    folder = run_dir / FOLDER
    if not isinstance(expected, dict) or set(expected) != set(FILES):
        raise DataError(f"config.json: data_files must list {', '.join(FILES)}", path=run_dir)
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise DataError("missing from the run folder (a run folder holds its dataset)", path=path)
        if digest(path) != expected[name]:
            raise DataError(
                "differs from the digest recorded in config.json at training (the file was corrupted or "
                "changed)",
                path=path,
            )
    return Prepared.load(folder)


def read_config(run_dir: Path) -> dict[str, Any]:
    """A run folder's config.json, checked to hold what loading the run needs."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"not a run folder: {exc}", path=run_dir) from None
    missing = [k for k in CONFIG_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise DataError(f"config.json lacks {', '.join(missing)}", path=run_dir)
    return saved

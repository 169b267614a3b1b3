"""The composition root: raw files -> prepared data -> (model, training, evaluation) -> run folders.

A notebook user calls these functions exactly as the CLI does:

    from ssrf import pipeline
    data = pipeline.prepare(["UserBehavior.csv"], "taobao")
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ssrf.dataset.artifacts import Prepared, prepare_dataset
from ssrf.dataset.prepare import PrepareConfig
from ssrf.io import GenericMapping, read

DEMO_FORMAT = "taobao"


def demo_data_path() -> Path:
    """The embedded Taobao UserBehavior subset (research use only; see ssrf/data/PROVENANCE.md)."""
    return Path(str(resources.files("ssrf") / "data" / "taobao_demo.csv.gz"))


def prepare(
    paths: Sequence[str | Path],
    fmt: str,
    cfg: PrepareConfig | None = None,
    *,
    mapping: GenericMapping | None = None,
    root: str | Path | None = None,
    force: bool = False,
) -> Prepared:
    """Read raw files (or open a prepared folder) and return the prepared dataset, cached on disk."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Prepared.load(paths[0])
    log = read(fmt, paths, mapping)
    return prepare_dataset(log, cfg or PrepareConfig(), None if root is None else Path(root), force=force)

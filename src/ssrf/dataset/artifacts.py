"""Prepared datasets on disk: a folder keyed by a hash of the inputs and options, written atomically.

<root>/<format>-<hash>/
    interactions.parquet   user, item (Int32, 1-based), ts (Int64), behavior (Int8, 1-based), split (Int8)
    items.parquet          item, one List(Int32) column per context field (ids 1-based, 0 = padding)
    vocab.json             {"user": [raw...], "item": [...], "behavior": [...], "field:<name>": [...]}
                           (index 0 is "<pad>"; raw ids are strings)
    meta.json              inputs, options, counts, dropped rows by reason, split sizes, statistics
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ssrf.core import DataError
from ssrf.dataset import prepare as P
from ssrf.dataset.vocab import Vocab
from ssrf.io.schema import REASONS, TS, USER, RawLog

log_ = logging.getLogger(__name__)
ARTIFACT_VERSION = 2  # bump when the folder's layout or the cleaning rules change (2: leak-free temporal)
LATER_REASONS = ("unseen_user", "unseen_item")  # validation/test events the training period cannot know


@dataclass(frozen=True)
class Prepared:
    """A prepared dataset: what the model, training and evaluation layers read."""

    path: Path
    events: pl.DataFrame  # user, item, ts, behavior, split; sorted by user then time
    items: pl.DataFrame  # item + one List(Int32) column per context field
    vocabs: dict[str, Vocab]
    meta: dict

    @property
    def n_users(self) -> int:  # excluding padding
        return len(self.vocabs["user"]) - 1

    @property
    def n_items(self) -> int:
        return len(self.vocabs["item"]) - 1

    @property
    def fields(self) -> list[str]:
        return [c for c in self.items.columns if c != "item"]

    @classmethod
    def load(cls, path: str | Path) -> Prepared:
        path = Path(path)
        for name in ("interactions.parquet", "items.parquet", "vocab.json", "meta.json"):
            if not (path / name).is_file():
                raise DataError(f"not a prepared dataset folder (no {name})", path=path)
        raw = json.loads((path / "vocab.json").read_text())
        return cls(
            path,
            pl.read_parquet(path / "interactions.parquet"),
            pl.read_parquet(path / "items.parquet"),
            {k: Vocab(tuple(v)) for k, v in raw.items()},
            json.loads((path / "meta.json").read_text()),
        )


def _file_digest(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()[:32]


def artifact_key(log: RawLog, cfg: P.PrepareConfig) -> str:
    payload = {
        "version": ARTIFACT_VERSION,
        "format": log.format,
        "inputs": [_file_digest(p) for p in log.paths],
        "options": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "strict"},
        "window": log.window,
        "behaviors": log.behaviors,
    }
    if log.reader_options is not None:  # e.g. the generic column mapping: same file, other columns
        payload["reader_options"] = log.reader_options
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()[:16]


def default_root() -> Path:
    return Path(os.environ.get("SSRF_DATA_DIR", "data/processed"))


def prepare_dataset(
    log: RawLog, cfg: P.PrepareConfig, root: Path | None = None, force: bool = False
) -> Prepared:
    """Clean, filter, remap and split `log`; reuse the folder when the same inputs and options were seen."""
    root = Path(root) if root is not None else default_root()
    out = root / f"{log.format}-{artifact_key(log, cfg)}"
    if out.is_dir() and not force:
        log_.info("reusing %s", out)
        if cfg.strict:  # strict must still reject a dirty input even when a lenient build was cached
            meta = json.loads((out / "meta.json").read_text())
            if any(meta["dropped"].get(r, 0) for r in REASONS):
                with _parse_errors(log):
                    P.clean(log, cfg)
        return Prepared.load(out)
    with _parse_errors(log):
        events, dropped = P.clean(log, cfg)
    n_clean = events.height
    protocol = cfg.resolved_split(log.format)
    leak_free = protocol == "temporal" and cfg.fit_on == "train"
    cuts = P.temporal_cuts(events.get_column(TS), cfg) if leak_free and n_clean else None
    events = P.sample_users(events, cfg.sample_users, cfg.seed, before=cuts[0] if cuts else None)
    dropped["sampled_out"] = n_clean - events.height
    n_sampled = events.height
    period_drops: dict[str, int] = {}
    if cuts is not None:  # k-core and vocabularies from the training period; later unknowns dropped
        events, fit_drops, period_drops = P.fit_on_training_period(events, cfg, *cuts)
        dropped.update(fit_drops)
    else:  # P.k_core, but filtering a column at a time (we own `events`): one frame in memory, not two
        events = P.filter_in_place(events, P.k_core_mask(events, cfg.min_user_events, cfg.min_item_events))
        dropped["k_core"] = n_sampled - events.height
    if events.height == 0:
        raise DataError(
            "no events left after cleaning and k-core filtering "
            f"(min {cfg.min_user_events} per user, {cfg.min_item_events} per item)",
            path=", ".join(log.paths),
        )
    with _parse_errors(log):
        item_context = log.item_context.collect() if log.item_context is not None else None
    events, items, vocab = P.remap(events, log, item_context, context_before=cuts[0] if cuts else None)
    events, split_info = P.split(events, protocol, cfg, source=", ".join(log.paths), cuts=cuts)
    split_info.update(period_drops)
    events = events.select("user", "item", "ts", "behavior", "split")
    meta = {
        "format": log.format,
        "inputs": list(log.paths),
        "key": out.name,
        "artifact_version": ARTIFACT_VERSION,
        "options": dataclasses.asdict(cfg),
        "split": protocol,
        "split_info": split_info,
        "rows_read": n_clean + sum(v for k, v in dropped.items() if k in REASONS),
        "dropped": {r: dropped.get(r, 0) for r in (*REASONS, "sampled_out", "k_core", *LATER_REASONS)},
        "fit_on": cfg.fit_on if protocol == "temporal" else "all",
        "has_behavior": log.behaviors is not None or vocab["behavior"] != ["interaction"],
        "fields": [c for c in items.columns if c != "item"],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    meta["stats"] = statistics(events, items, vocab, meta)
    _write_atomically(out, events, items, vocab, meta, replace=force)
    return Prepared.load(out)


@contextlib.contextmanager
def _parse_errors(log: RawLog):
    """A file Polars cannot parse (an unbalanced quote, bytes that are not UTF-8) is a one-line DataError
    naming the input, not a traceback."""
    try:
        yield
    except pl.exceptions.PolarsError as exc:
        text = str(exc)
        found = re.search(r"Original error: ```(.*?)```", text, re.S)
        detail = " ".join((found.group(1) if found else text).split())
        raise DataError(f"cannot parse: {detail[:200]}", path=", ".join(log.paths)) from None


def _write_atomically(
    out: Path, events: pl.DataFrame, items: pl.DataFrame, vocab: dict, meta: dict, replace: bool = False
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        events.write_parquet(tmp / "interactions.parquet")
        items.write_parquet(tmp / "items.parquet")
        (tmp / "vocab.json").write_text(json.dumps({k: ["<pad>", *v] for k, v in vocab.items()}))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if replace and out.is_dir():  # --force: swap the new folder in, then drop the old one
            old = tmp.with_name(f"{tmp.name}.old")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
        try:
            os.rename(tmp, out)
        except OSError:  # another process finished the same folder first
            if not out.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def statistics(events: pl.DataFrame, items: pl.DataFrame, vocab: dict, meta: dict) -> dict:
    """The paper's Table I columns and more, for `ssrf data stats`."""
    n_users = events.get_column(USER).n_unique()
    n_items = events.get_column("item").n_unique()
    ts = events.get_column(TS)
    behaviors = ["<pad>", *vocab["behavior"]]
    mix = {behaviors[b]: int(n) for b, n in events.group_by("behavior").len().sort("behavior").iter_rows()}
    first_field = next((c for c in items.columns if c != "item"), None)

    def when(t: int) -> str:
        return (
            dt.datetime.fromtimestamp(t, dt.UTC).isoformat(sep=" ") if meta["format"] != "s3rec" else str(t)
        )

    return {
        "users": n_users,
        "items": n_items,
        "events": events.height,
        "actions_per_user": round(events.height / n_users, 2),
        "actions_per_item": round(events.height / n_items, 2),
        "categories": len(vocab[f"field:{first_field}"]) if first_field else 0,
        "context_fields": {c: len(vocab[f"field:{c}"]) for c in items.columns if c != "item"},
        "time_start": when(int(ts.min())),
        "time_end": when(int(ts.max())),
        "behavior_mix": mix,
    }

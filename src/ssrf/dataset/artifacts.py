"""Prepared datasets on disk: a folder keyed by a hash of the inputs and options, written atomically.

<root>/<format>-<hash>/
    interactions.parquet   user, item (Int32, 1-based), ts (Int64), behavior (Int8, 1-based), split (Int8)
    items.parquet          item, one List(Int32) column per context field (ids 1-based, 0 = padding)
    vocab.json             {"user": [raw...], "item": [...], "behavior": [...], "field:<name>": [...]}
                           (index 0 is "<pad>"; raw ids are strings)
    meta.json              inputs, options, counts, dropped rows by reason, split sizes, statistics

`Prepared.load` checks every file before use (readable, the right shape, ids within the vocabularies), so a
damaged folder, or a damaged copy of one in a run folder, is a DataError naming the file, not a traceback.
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
from ssrf.dataset.vocab import PAD_TOKEN, Vocab
from ssrf.io.readers import read_json
from ssrf.io.schema import REASONS, TS, USER, RawLog

log_ = logging.getLogger(__name__)
ARTIFACT_VERSION = 3  # bump when the folder's layout or the cleaning rules change (2: leak-free temporal)
LATER_REASONS = ("unseen_user", "unseen_item")  # validation/test events the training period cannot know
EVENT_COLUMNS = ("user", "item", "ts", "behavior", "split")  # interactions.parquet, all integers
META_KEYS = ("format", "key", "split", "split_info", "rows_read", "dropped", "stats")  # read by callers


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
        """Read a prepared folder, checking each file: a missing, unreadable or inconsistent one is a
        DataError naming it."""
        path = Path(path)
        for name in ("interactions.parquet", "items.parquet", "vocab.json", "meta.json"):
            if not (path / name).is_file():
                raise DataError(f"not a prepared dataset folder (no {name})", path=path)
        meta = _read_meta(path / "meta.json")
        vocabs = _read_vocabs(path / "vocab.json")
        events = _read_parquet(path / "interactions.parquet")
        items = _read_parquet(path / "items.parquet")
        _check_events(events, vocabs, path / "interactions.parquet")
        _check_items(items, vocabs, meta, path / "items.parquet")
        return cls(path, events, items, vocabs, meta)


def _read_meta(path: Path) -> dict:
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise DataError(f"expected a JSON object, found {type(meta).__name__}", path=path)
    lost = [k for k in META_KEYS if k not in meta]
    if lost:
        raise DataError(f"missing key(s) {', '.join(lost)}", path=path)
    return meta


def _read_vocabs(path: Path) -> dict[str, Vocab]:
    """vocab.json: {"user": [...], "item": [...], "behavior": [...], "field:<name>": [...]}, each a list of
    distinct strings starting with the padding token."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"expected a JSON object of vocabularies, found {type(raw).__name__}", path=path)
    lost = [k for k in ("user", "item", "behavior") if k not in raw]
    if lost:
        raise DataError(f"missing vocabulary {', '.join(map(repr, lost))}", path=path)
    vocabs = {}
    for key, values in raw.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise DataError(f"vocabulary {key!r}: expected a list of strings", path=path)
        if not values or values[0] != PAD_TOKEN:
            raise DataError(f"vocabulary {key!r}: the first entry must be {PAD_TOKEN!r}", path=path)
        vocab = Vocab(tuple(values))
        if vocab.has_repeats:
            raise DataError(f"vocabulary {key!r}: repeated entries", path=path)
        vocabs[key] = vocab
    return vocabs


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(
            f"cannot read as Parquet (corrupt or truncated?): {detail[:200]}", path=path
        ) from None


def _check_range(frame: pl.DataFrame, column: str, path: Path, low: int, high: int, valid: str = "") -> None:
    """Every value in `column` (or in its lists) lies in [low, high]; `valid` says why those bounds."""
    values = frame.get_column(column)
    if isinstance(values.dtype, pl.List):
        values = values.explode()
    lo, hi = values.min(), values.max()
    if lo is not None and (lo < low or hi > high):
        raise DataError(f"values {lo}..{hi}, outside {low}..{high}{valid}", path=path, column=column)


def _in_vocab(vocabs: dict[str, Vocab], key: str) -> tuple[int, int, str]:
    """The valid ids of a vocabulary (1..its size; 0 is padding), and that reason in words."""
    n = len(vocabs[key]) - 1
    return 1, n, f" (the {n} entries of vocab.json's {key!r})"


def _check_events(events: pl.DataFrame, vocabs: dict[str, Vocab], path: Path) -> None:
    lost = [c for c in EVENT_COLUMNS if c not in events.columns]
    if lost:
        raise DataError(f"missing column(s) {', '.join(lost)}; it has {', '.join(events.columns)}", path=path)
    for c in EVENT_COLUMNS:
        dtype = events.schema[c]
        if not dtype.is_integer():
            raise DataError(f"expected integers, found {dtype}", path=path, column=c)
        if events.get_column(c).null_count():
            raise DataError("null values", path=path, column=c)
    for c in ("user", "item", "behavior"):
        _check_range(events, c, path, *_in_vocab(vocabs, c))
    _check_range(events, "split", path, P.TRAIN, P.TEST)


def _check_items(items: pl.DataFrame, vocabs: dict[str, Vocab], meta: dict, path: Path) -> None:
    """One row per item of the vocabulary, and one List column of in-vocabulary ids per context field."""
    if "item" not in items.columns or not items.schema["item"].is_integer():
        raise DataError("expected an integer column item", path=path)
    n_items = len(vocabs["item"]) - 1
    ids = items.get_column("item")
    if items.height != n_items or ids.n_unique() != n_items:
        raise DataError(
            f"{items.height} rows ({ids.n_unique()} distinct items), but vocab.json has {n_items} items",
            path=path,
        )
    _check_range(items, "item", path, *_in_vocab(vocabs, "item"))
    fields = [c for c in items.columns if c != "item"]
    if "fields" in meta and meta["fields"] != fields:
        raise DataError(f"columns {fields} do not match meta.json's fields {meta['fields']}", path=path)
    for f in fields:
        dtype = items.schema[f]
        if not (isinstance(dtype, pl.List) and dtype.inner.is_integer()):
            raise DataError(f"expected a list of integer ids, found {dtype}", path=path, column=f)
        if f"field:{f}" not in vocabs:
            raise DataError(f"no vocabulary 'field:{f}' in vocab.json", path=path, column=f)
        _check_range(items, f, path, *_in_vocab(vocabs, f"field:{f}"))


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
        data = Prepared.load(out)
        # strict must still reject a dirty input even when a lenient build was cached
        if cfg.strict and any(data.meta["dropped"].get(r, 0) for r in REASONS):
            with _parse_errors(log):
                P.clean(log, cfg)
        return data
    with _parse_errors(log):
        events, dropped = P.clean(log, cfg)
    n_clean = events.height
    protocol = cfg.resolved_split(log.format, log.ordinal_time)
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
        raise DataError(_nothing_left(n_clean, dropped, cfg), path=", ".join(log.paths))
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
        "ordinal_time": log.ordinal_time,
        "has_behavior": log.behaviors is not None or vocab["behavior"] != ["interaction"],
        "fields": [c for c in items.columns if c != "item"],
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    meta["stats"] = statistics(events, items, vocab, meta)
    _write_atomically(out, events, items, vocab, meta, replace=force)
    return Prepared.load(out)


def _nothing_left(n_clean: int, dropped: dict[str, int], cfg: P.PrepareConfig) -> str:
    """Why no event is left: the rows read, and what each step dropped, by reason (a column read in the
    wrong format shows as every row dropped for one reason)."""
    cleaning = {r: dropped[r] for r in REASONS if dropped.get(r)}
    rows_read = n_clean + sum(cleaning.values())
    steps = []
    if cleaning:
        by_reason = ", ".join(f"{r} {n:,}" for r, n in cleaning.items())
        steps.append(f"cleaning dropped {sum(cleaning.values()):,} ({by_reason})")
    if dropped.get("sampled_out"):
        steps.append(f"user sampling dropped {dropped['sampled_out']:,}")
    if dropped.get("k_core"):
        steps.append(f"k-core filtering dropped {dropped['k_core']:,}")
    unseen = {r: dropped[r] for r in LATER_REASONS if dropped.get(r)}
    if unseen:  # the leak-free temporal split: later events whose user or item the training period lacks
        by_reason = ", ".join(f"{r} {n:,}" for r, n in unseen.items())
        steps.append(f"the validation and test periods dropped {sum(unseen.values()):,} ({by_reason})")
    head = (
        "no events left after cleaning and k-core filtering "
        f"(min {cfg.min_user_events} per user, {cfg.min_item_events} per item): "
    )
    if rows_read == 0:
        return head + "the input has no data rows"
    return head + f"of {rows_read:,} rows read, " + "; ".join(steps)


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

    def when(t: int) -> str:  # (S3-Rec times are positions; a time datetime cannot show stays a number)
        if meta.get("ordinal_time") or meta["format"] == "s3rec":
            return str(t)
        try:
            return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(sep=" ")
        except (ValueError, OverflowError, OSError):
            return str(t)

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

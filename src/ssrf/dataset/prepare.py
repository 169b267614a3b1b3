"""Cleaning, filtering, id remapping and splitting: pure frame -> frame steps.

"Dirty data" (the paper's 3.1), counted by reason and never dropped silently:
- `wrong_column_count`, `bad_id`, `bad_timestamp`: rows that do not parse (found by the readers);
- `unknown_behavior`: a behaviour value the format does not define;
- `out_of_window`: a timestamp outside the dataset's collection window (Taobao: 2017-11-25..12-03, UTC+8);
- `duplicate`: an exact repeat of an earlier event (same user, item, time, behaviour and context).
Then, also counted: `sampled_out` (seeded user sampling) and `k_core` (iterated k-core filtering).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ssrf.core import DataError
from ssrf.io.schema import BEHAVIOR, FILE, ITEM, LINE, REASON, TS, USER, RawLog

SPLITS = ("temporal", "loo")
TRAIN, VALID, TEST = 0, 1, 2
ORDER = "_order"


@dataclass(frozen=True, kw_only=True)
class PrepareConfig:
    split: str = "auto"  # "temporal" (the paper's global 70/30 time cut), "loo" (leave-one-out), "auto"
    test_frac: float = 0.3  # temporal: share of events (by time) in the test period
    valid_frac: float = 0.1  # temporal: share of events carved from the end of training for validation
    min_user_events: int = 5  # k-core: users need at least this many events (iterated with items)
    min_item_events: int = 5  # k-core: items need at least this many events
    sample_users: int | None = None  # keep a seeded random sample of this many users (before k-core)
    seed: int = 0  # seed of the user sample
    window: tuple[int, int] | None = None  # valid [start, end) unix seconds; overrides the format's window
    strict: bool = False  # the first dirty row is an error instead of a counted drop

    def __post_init__(self) -> None:
        if self.split not in (*SPLITS, "auto"):
            raise DataError(f"split must be one of temporal, loo, auto; got {self.split!r}")
        if not (0 < self.test_frac < 1 and 0 <= self.valid_frac < 1 and self.test_frac + self.valid_frac < 1):
            raise DataError("need 0 < test_frac, 0 <= valid_frac and test_frac + valid_frac < 1")
        if self.min_user_events < 1 or self.min_item_events < 1:
            raise DataError("k-core thresholds must be >= 1")

    def resolved_split(self, fmt: str) -> str:
        if self.split != "auto":
            return self.split
        return "loo" if fmt == "s3rec" else "temporal"  # S3-Rec files have no real time


def clean(log: RawLog, cfg: PrepareConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """Parse, label every dirty row with its reason, count them, and return the clean events."""
    df = log.events.with_row_index(ORDER).collect(engine="streaming")
    reason = pl.col(REASON)
    if log.behaviors is not None:
        reason = pl.coalesce(
            reason,
            pl.when(~pl.col(BEHAVIOR).is_in(log.behaviors) | pl.col(BEHAVIOR).is_null()).then(
                pl.lit("unknown_behavior")
            ),
        )
    window = cfg.window or log.window
    if window is not None:
        reason = pl.coalesce(
            reason,
            pl.when((pl.col(TS) < window[0]) | (pl.col(TS) >= window[1])).then(pl.lit("out_of_window")),
        )
    df = df.with_columns(reason.alias(REASON))
    keys = [USER, ITEM, TS, BEHAVIOR, *log.context_fields]
    valid = pl.col(REASON).is_null()
    df = df.with_columns(
        pl.when(valid & ~pl.struct(keys).is_first_distinct().over(REASON))
        .then(pl.lit("duplicate"))
        .otherwise(pl.col(REASON))
        .alias(REASON)
    )
    counts = df.group_by(REASON).len()
    dropped = {r: int(n) for r, n in counts.iter_rows() if r is not None}
    if cfg.strict and dropped:
        first = df.filter(pl.col(REASON).is_not_null()).sort(ORDER).row(0, named=True)
        raise DataError(f"{first[REASON].replace('_', ' ')} (--strict)", path=first[FILE], line=first[LINE])
    return df.filter(pl.col(REASON).is_null()).drop(REASON), dropped


def sample_users(df: pl.DataFrame, n: int | None, seed: int) -> pl.DataFrame:
    if n is None:
        return df
    users = df.get_column(USER).unique().sort()
    if n >= users.len():
        return df
    keep = users.sample(n, seed=seed, shuffle=True)
    return df.filter(pl.col(USER).is_in(keep.implode()))


def k_core(df: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Drop users with < min_user and items with < min_item events, repeatedly, until neither changes."""
    while True:
        before = df.height
        df = df.filter(pl.len().over(ITEM) >= min_item).filter(pl.len().over(USER) >= min_user)
        if df.height == before:
            return df


def _dense_ids(df: pl.DataFrame, col: str) -> tuple[pl.DataFrame, list[str]]:
    """Replace raw ids in `col` with 1..N (0 is padding), numeric-looking ids in numeric order."""
    uniq = (
        df.select(pl.col(col).unique())
        .sort([pl.col(col).str.len_bytes(), pl.col(col)])
        .with_row_index("_id", offset=1)
        .with_columns(pl.col("_id").cast(pl.Int32))
    )
    out = df.join(uniq, on=col, how="left").drop(col).rename({"_id": col})
    return out, uniq.get_column(col).to_list()


def remap(
    df: pl.DataFrame, log: RawLog, item_context: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, list[str]]]:
    """Contiguous ids for users, items, behaviours and every context value.

    Returns (events [user, item, ts, behavior, _order], items [item, <field>: List(Int32)], vocabularies)."""
    vocab: dict[str, list[str]] = {}
    # Static item fields, plus event-level fields reduced to the value in force at the item's last event.
    fields: dict[str, pl.DataFrame] = {}
    for f in log.context_fields:
        fields[f] = (
            df.filter(pl.col(f).is_not_null())
            .sort(ORDER)
            .group_by(ITEM)
            .agg(pl.col(f).last())
            .with_columns(pl.concat_list(f).alias(f))
        )
    if item_context is not None:
        for f in log.item_fields:
            fields[f] = item_context.select(ITEM, f)
    df, vocab["user"] = _dense_ids(df.select(USER, ITEM, TS, BEHAVIOR, ORDER), USER)
    df, vocab["item"] = _dense_ids(df, ITEM)
    item_ids = (
        pl.DataFrame({ITEM: vocab["item"]})
        .with_row_index("_id", offset=1)
        .with_columns(pl.col("_id").cast(pl.Int32))
    )
    behaviors = log.behaviors or sorted(
        x for x in df.get_column(BEHAVIOR).unique().to_list() if x is not None
    )
    vocab["behavior"] = list(behaviors) if behaviors else ["interaction"]
    bmap = {b: i + 1 for i, b in enumerate(vocab["behavior"])}
    df = df.with_columns(pl.col(BEHAVIOR).replace_strict(bmap, default=1, return_dtype=pl.Int8))
    items = item_ids.select(pl.col("_id").alias(ITEM))
    for f, table in fields.items():
        exploded = (
            table.join(item_ids, on=ITEM, how="inner")
            .select(pl.col("_id").alias("_item"), pl.col(f).alias("_v"))
            .explode("_v")
        )
        exploded = exploded.filter(pl.col("_v").is_not_null())
        exploded, vocab[f"field:{f}"] = _dense_ids(exploded, "_v")
        per_item = (
            exploded.group_by("_item").agg(pl.col("_v").unique().sort().alias(f)).rename({"_item": ITEM})
        )
        items = items.join(per_item, on=ITEM, how="left").with_columns(
            pl.col(f).fill_null(pl.lit([], dtype=pl.List(pl.Int32)))
        )
    return df.sort([USER, TS, ORDER]), items.sort(ITEM), vocab


def split(df: pl.DataFrame, protocol: str, cfg: PrepareConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """Add a `split` column (0 train, 1 valid, 2 test). `df` is sorted by user, time, input order."""
    if protocol == "temporal":
        ts = df.get_column(TS).sort()
        n = ts.len()
        cut_valid = ts[min(n - 1, int(n * (1 - cfg.test_frac - cfg.valid_frac)))]
        cut_test = ts[min(n - 1, int(n * (1 - cfg.test_frac)))]
        df = df.with_columns(
            pl.when(pl.col(TS) >= cut_test)
            .then(TEST)
            .when(pl.col(TS) >= cut_valid)
            .then(VALID)
            .otherwise(TRAIN)
            .cast(pl.Int8)
            .alias("split")
        )
        has_history = (pl.col("split") < TEST).any().over(USER)
        test_users = df.filter(has_history & (pl.col("split") == TEST)).get_column(USER).n_unique()
        info = {"cut_valid": int(cut_valid), "cut_test": int(cut_test)}
    elif protocol == "loo":
        from_end = pl.int_range(pl.len(), 0, -1).over(USER)  # n .. 1 within each user
        long_enough = pl.len().over(USER) >= 3
        df = df.with_columns(
            pl.when(long_enough & (from_end == 1))
            .then(TEST)
            .when(long_enough & (from_end == 2))
            .then(VALID)
            .otherwise(TRAIN)
            .cast(pl.Int8)
            .alias("split")
        )
        test_users = df.filter(pl.col("split") == TEST).height
        info = {}
    else:
        raise DataError(f"unknown split {protocol!r}; choose one of {', '.join(SPLITS)}")
    if test_users == 0:
        raise DataError(f"the {protocol} split leaves no test users (every user's events fall on one side)")
    sizes = df.group_by("split").len()
    counts = {("train", "valid", "test")[s]: int(n) for s, n in sizes.iter_rows()}
    return df, {
        **info,
        "test_users": int(test_users),
        **{f"{k}_events": counts.get(k, 0) for k in ("train", "valid", "test")},
    }

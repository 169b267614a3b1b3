"""Cleaning, filtering, id remapping and splitting: pure frame -> frame steps.

"Dirty data" (the paper's 3.1), counted by reason and never dropped silently:
- `wrong_column_count`, `bad_id`, `bad_timestamp`: rows that do not parse (found by the readers; a
  timestamp outside 1970..2099 UTC, `schema.TS_RANGE`, is a `bad_timestamp` too);
- `unknown_behavior`: a behaviour value the format does not define;
- `out_of_window`: a timestamp outside the dataset's collection window (Taobao: 2017-11-25..12-03, UTC+8);
- `duplicate`: an exact repeat of an earlier event (same user, item, time, behaviour and context).
Then, also counted: `sampled_out` (seeded user sampling) and `k_core` (iterated k-core filtering).

The temporal split is leak-free by default (`fit_on = "train"`): the time cuts are fixed first, k-core
filtering, the vocabularies and the items' event-level context see the training period only, and a later
(validation or test) event whose user or item the training period does not know is dropped and counted
(`unseen_user`, `unseen_item`, split by period in the split info). `fit_on = "all"` is the earlier
protocol (k-core and vocabularies over the whole log, test period included), kept only to show its
artefact: filtering on future activity makes popularity anti-predictive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from ssrf.core import DataError, NonNegativeInt, PositiveInt, check_config
from ssrf.io.schema import BEHAVIOR, FILE, ITEM, LINE, REASON, TS, USER, RawLog

SPLITS = ("temporal", "loo")
FIT_ON = ("train", "all")
TRAIN, VALID, TEST = 0, 1, 2
ORDER = "_order"


@dataclass(frozen=True, kw_only=True)
class PrepareConfig:
    split: str = "auto"  # "temporal" (the paper's global 70/30 time cut), "loo" (leave-one-out), "auto"
    test_frac: float = 0.3  # temporal: share of events (by time) in the test period
    valid_frac: float = 0.1  # temporal: share of events carved from the end of training for validation
    min_user_events: PositiveInt = 5  # k-core: users need at least this many events (iterated with items)
    min_item_events: PositiveInt = 5  # k-core: items need at least this many events
    sample_users: PositiveInt | None = None  # keep a seeded random sample of this many users (before k-core)
    seed: NonNegativeInt = 0  # seed of the user sample
    fit_on: str = "train"  # temporal: what k-core and vocabularies see: "train" (the training period,
    # leak-free) or "all" (the whole log, test period included: the old protocol, it leaks; see above)
    window: tuple[int, int] | None = None  # valid [start, end) unix seconds; overrides the format's window
    strict: bool = False  # the first dirty row is an error instead of a counted drop

    def __post_init__(self) -> None:
        check_config(self, "data")
        if self.split not in (*SPLITS, "auto"):
            raise DataError(f"split must be one of temporal, loo, auto; got {self.split!r}")
        if not (0 < self.test_frac < 1 and 0 <= self.valid_frac < 1 and self.test_frac + self.valid_frac < 1):
            raise DataError("need 0 < test_frac, 0 <= valid_frac and test_frac + valid_frac < 1")
        if self.fit_on not in FIT_ON:
            raise DataError(f"fit_on must be one of {', '.join(FIT_ON)}; got {self.fit_on!r}")

    def resolved_split(self, fmt: str, ordinal_time: bool = False) -> str:
        if self.split != "auto":
            return self.split
        # no real time (S3-Rec files, atomic files without timestamps): only each user's order means anything
        return "loo" if ordinal_time or fmt == "s3rec" else "temporal"


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
    # Categorical: 4 bytes a row instead of a 16-byte string view, for a column that is nearly all null
    df = df.with_columns(reason.cast(pl.Categorical).alias(REASON))
    # From here on, Series and frames of picked columns: this column's chunks do not line up with the
    # others', and an expression over the whole (misaligned) frame would copy all of it to realign it.
    reasons = df.get_column(REASON)
    keys = [USER, ITEM, TS, BEHAVIOR, *log.context_fields]
    dup = df.get_column(ORDER).is_in(_repeats(df, reasons.is_null(), keys).implode())
    duplicate = pl.lit("duplicate", dtype=pl.Categorical)
    reasons = pl.select(pl.when(dup).then(duplicate).otherwise(reasons).alias(REASON)).to_series()
    df = df.replace_column(df.get_column_index(REASON), reasons)
    counts = reasons.to_frame().group_by(REASON).len()
    dropped = {r: int(n) for r, n in counts.iter_rows() if r is not None}
    if cfg.strict and dropped:
        first = df.filter(pl.col(REASON).is_not_null()).sort(ORDER).row(0, named=True)
        raise DataError(f"{first[REASON].replace('_', ' ')} (--strict)", path=first[FILE], line=first[LINE])
    keep = df.drop_in_place(REASON).is_null()
    return filter_in_place(df, keep), dropped


def _repeats(df: pl.DataFrame, valid: pl.Series, keys: list[str]) -> pl.Series:
    """`ORDER` of every `valid` row that exactly repeats an earlier valid row on `keys`.

    Same answer as `~struct(keys).is_first_distinct()` over the valid rows, but that hashes and compares
    whole rows; this hashes them once to a u64, and compares rows only where a hash is seen twice."""
    rows = pl.DataFrame([df.get_column(c) for c in (ORDER, *keys)])  # shares the columns, copies nothing
    h = rows.select(pl.struct(keys).hash()).to_series()
    h = pl.select(pl.when(valid).then(h)).to_series()
    again = h.filter(~h.is_first_distinct() & h.is_not_null()).unique()
    if again.len() == 0:
        return rows.get_column(ORDER).clear()
    candidates = rows.filter(h.is_in(again.implode()).fill_null(False)).select(
        ORDER, pl.struct(keys).is_first_distinct().alias("_first")
    )
    return candidates.filter(~pl.col("_first")).get_column(ORDER)


def filter_in_place(df: pl.DataFrame, keep: pl.Series) -> pl.DataFrame:
    """`df.filter(keep)`, a column at a time, emptying `df` as it goes: peak memory is about one frame plus
    one column instead of two frames. Only for a frame the caller owns and drops.

    Each column comes out in one chunk, so columns added later line up with it: an expression over a frame
    whose columns are chunked differently copies the whole frame to realign them."""
    keep = keep.rechunk()
    return pl.DataFrame([df.drop_in_place(c).filter(keep).rechunk() for c in df.columns])


def sample_users(df: pl.DataFrame, n: int | None, seed: int, before: int | None = None) -> pl.DataFrame:
    """A seeded sample of `n` users with all their events; with `before`, drawn among the users with an
    event before that time (the training period), so that no sampled user lacks a history."""
    if n is None:
        return df
    pool = df if before is None else df.select(USER, TS).filter(pl.col(TS) < before)
    users = pool.get_column(USER).unique().sort()
    if n >= users.len():  # every eligible user: nothing to sample (the others are dropped later, as unseen)
        return df
    keep = users.sample(n, seed=seed, shuffle=True)
    return df.filter(pl.col(USER).is_in(keep.implode()))


def k_core(df: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Drop users with < min_user and items with < min_item events, repeatedly, until neither changes."""
    return df.filter(k_core_mask(df, min_user, min_item))


def k_core_mask(df: pl.DataFrame, min_user: int, min_item: int) -> pl.Series:
    """The rows `k_core` keeps. Each round drops items first, then users (counted after the items went);
    the ids are coded to integers once, so a round is two bincounts instead of two hash group-bys."""
    if df.height == 0:
        return pl.Series(dtype=pl.Boolean)
    item, user = _codes(df.get_column(ITEM)), _codes(df.get_column(USER))
    keep = np.ones(df.height, dtype=bool)
    while True:
        before = int(keep.sum())
        keep &= (np.bincount(item[keep], minlength=int(item.max()) + 1) >= min_item)[item]
        keep &= (np.bincount(user[keep], minlength=int(user.max()) + 1) >= min_user)[user]
        if int(keep.sum()) == before:
            return pl.Series(keep)


def _codes(s: pl.Series) -> np.ndarray:
    """Integer codes of a column's values, equal exactly where the values are (null is a value of its own)."""
    if s.dtype == pl.String:  # a private categories object: codes 0..k-1, not shared with the process
        codes = s.cast(pl.Categorical(pl.Categories.random())).to_physical()
    else:
        codes = s.rank("dense")
    return codes.fill_null((codes.max() or 0) + 1).to_numpy()


def _dense_ids(df: pl.DataFrame, col: str) -> tuple[pl.DataFrame, list[str]]:
    """Replace raw ids in `col` with 1..N (0 is padding), numeric-looking ids in numeric order."""
    raw = df.get_column(col)
    if raw.dtype == pl.String and raw.null_count() == 0:
        ids, values = _dense_strings(raw)
    else:  # (a null is a value here: it sorts first and takes id 1, while its rows get a null id)
        uniq = (
            df.select(pl.col(col).unique())
            .sort([pl.col(col).str.len_bytes(), pl.col(col)])
            .with_row_index("_id", offset=1)
            .with_columns(pl.col("_id").cast(pl.Int32))
        )
        ids = df.select(col).join(uniq, on=col, how="left", maintain_order="left").get_column("_id")
        values = uniq.get_column(col).to_list()
    # the new ids go last, where the former `join ... drop ... rename` put them
    return df.drop(col).with_columns(ids.alias(col)), values


def _dense_strings(raw: pl.Series) -> tuple[pl.Series, list[str]]:
    """`_dense_ids` for a String column without nulls: one hashing pass (a cast to a private Categorical)
    and a gather, instead of a unique, then a join of every row against the distinct values."""
    cat = raw.cast(pl.Categorical(pl.Categories.random()))  # (the mapping lives as long as `cat`)
    codes = cat.to_physical().to_numpy()
    table = (  # (a code reserved but never assigned shows as null: drop it)
        cat.dtype.categories.to_series()
        .alias("_v")
        .to_frame()
        .with_row_index("_code")
        .drop_nulls("_v")
        .sort([pl.col("_v").str.len_bytes(), pl.col("_v")])
    )
    new_id = np.zeros(table.get_column("_code").max() + 1 if table.height else 0, dtype=np.int32)
    new_id[table.get_column("_code").to_numpy()] = np.arange(1, table.height + 1, dtype=np.int32)
    return pl.Series(raw.name, new_id[codes], dtype=pl.Int32), table.get_column("_v").to_list()


def remap(
    df: pl.DataFrame, log: RawLog, item_context: pl.DataFrame | None, context_before: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, list[str]]]:
    """Contiguous ids for users, items, behaviours and every context value.

    Event-level context is read from the events before `context_before` only (the training period of the
    leak-free temporal split), so no later event decides an item's category.
    Returns (events [user, item, ts, behavior, _order], items [item, <field>: List(Int32)], vocabularies)."""
    vocab: dict[str, list[str]] = {}
    # Static item fields, plus event-level fields reduced to the value in force at the item's last event.
    fields: dict[str, pl.DataFrame] = {}
    seen = pl.lit(True) if context_before is None else pl.col(TS) < context_before
    for f in log.context_fields:
        fields[f] = (  # the value at each item's last event, without sorting (a copy of) the whole frame
            df.lazy()
            .select(ITEM, f, TS, ORDER)
            .filter(pl.col(f).is_not_null() & seen)
            .group_by(ITEM)
            .agg(pl.col(f).sort_by([TS, ORDER]).last())
            .with_columns(pl.concat_list(f).alias(f))
            .collect()
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


def _floor(x: float) -> int:
    """floor(x), robust to float error: 90 * 0.7 = 62.999... is 63."""
    return math.floor(x + 1e-9)


def temporal_cuts(ts: pl.Series, cfg: PrepareConfig) -> tuple[int, int]:
    """(cut_valid, cut_test): the times at which the last `valid_frac + test_frac` and the last
    `test_frac` of the events (by time) begin."""
    ts = ts.sort()
    n = ts.len()
    if n == 0:
        raise DataError("no events to split")
    cut_valid = ts[min(n - 1, _floor(n * (1 - cfg.test_frac - cfg.valid_frac)))]
    cut_test = ts[min(n - 1, _floor(n * (1 - cfg.test_frac)))]
    return int(cut_valid), int(cut_test)


def fit_on_training_period(
    df: pl.DataFrame, cfg: PrepareConfig, cut_valid: int, cut_test: int
) -> tuple[pl.DataFrame, dict[str, int], dict[str, int]]:
    """The leak-free temporal filter: k-core over the training period (before `cut_valid`) only; later
    events kept only where the training period knows their user and item.

    Returns (events, dropped {k_core, unseen_user, unseen_item}, the same drops split by period)."""
    train = (df.get_column(TS) < cut_valid).rechunk()
    ids = df.select(USER, ITEM).filter(train)
    kept = ids.filter(k_core_mask(ids, cfg.min_user_events, cfg.min_item_events))
    users, items = kept.get_column(USER).unique(), kept.get_column(ITEM).unique()
    known_user = df.get_column(USER).is_in(users.implode())
    known_item = df.get_column(ITEM).is_in(items.implode())
    later = ~train
    period = pl.select(pl.when(df.get_column(TS) >= cut_test).then(pl.lit("test")).otherwise(pl.lit("valid")))
    period = period.to_series()
    dropped = {"k_core": int(train.sum()) - kept.height}
    by_period: dict[str, int] = {}
    no_user = later & ~known_user
    no_item = later & known_user & ~known_item
    for reason, rows in (("unseen_user", no_user), ("unseen_item", no_item)):
        dropped[reason] = int(rows.sum())
        for p in ("valid", "test"):
            by_period[f"{p}_{reason}"] = int((rows & (period == p)).sum())
    keep = known_user & known_item  # (a training row survives k-core exactly when both are known)
    return filter_in_place(df, keep), dropped, by_period


def split(
    df: pl.DataFrame,
    protocol: str,
    cfg: PrepareConfig,
    source: str | None = None,
    cuts: tuple[int, int] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Add a `split` column (0 train, 1 valid, 2 test). `df` is sorted by user, time, input order.
    Temporal: at `cuts` (cut_valid, cut_test) when given, else at the quantiles of `df`'s own times."""
    if protocol == "temporal":
        cut_valid, cut_test = cuts if cuts is not None else temporal_cuts(df.get_column(TS), cfg)
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
        raise DataError(f"unknown split {protocol!r}; choose one of {', '.join(SPLITS)}", path=source)
    if test_users == 0:
        raise DataError(
            f"the {protocol} split leaves no test users (every user's events fall on one side)", path=source
        )
    sizes = df.group_by("split").len()
    counts = {("train", "valid", "test")[s]: int(n) for s, n in sizes.iter_rows()}
    return df, {
        **info,
        "test_users": int(test_users),
        **{f"{k}_events": counts.get(k, 0) for k in ("train", "valid", "test")},
    }

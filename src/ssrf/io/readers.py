"""Readers: one per source format, each returning a `RawLog` in the canonical schema.

Every reader keeps every input row: rows that do not parse are kept with a `_reason`, so the cleaning step
can count them (or, under `--strict`, stop at the first one with its file and line).

A file whose name ends in `.gz` is decompressed first (every format, through `_source`); one that is not
gzip, or is truncated or corrupt, is a DataError naming it. A timestamp is `bad_timestamp` when it does not
parse or falls outside `schema.TS_RANGE` (positions, where a source has no clock, excepted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import tomllib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import polars as pl

from ssrf.core import DataError
from ssrf.io.schema import BEHAVIOR, FILE, ITEM, LINE, REASON, TS, TS_RANGE, USER, RawLog

FORMATS = ("taobao", "retailrocket", "s3rec", "diginetica", "generic", "atomic")
EXTRA = "_extra"

TAOBAO_BEHAVIORS = ("pv", "fav", "cart", "buy")
# The official window: 2017-11-25 00:00 to 2017-12-03 24:00 in China time (UTC+8).
TAOBAO_WINDOW = (1511539200, 1512316800)
RETAILROCKET_BEHAVIORS = ("view", "addtocart", "transaction")
DIGINETICA_BEHAVIORS = ("view", "purchase")
GZIP_MAGIC = b"\x1f\x8b"


# ----------------------------------------------------------------------------------------------- helpers


def _require_file(path: Path) -> Path:
    if not path.exists():
        raise DataError("file not found", path=path)
    if path.is_dir():
        raise DataError("is a directory, expected a file", path=path)
    if path.stat().st_size == 0:
        raise DataError("empty file", path=path)
    return path


def _header(path: Path, sep: str) -> list[str]:
    if _gzipped(path):
        with _gzip_errors(path), gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    else:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    names = [c.strip().strip('"').lstrip("\ufeff") for c in first.rstrip("\r\n").split(sep)]
    if not any(names):
        raise DataError("empty header line", path=path, line=1)
    return names


def _gzipped(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


@contextlib.contextmanager
def _gzip_errors(path: Path) -> Iterator[None]:
    """Decompressing `path` ends in a DataError saying what is wrong with it, not a traceback. (An
    EOFError must not escape: the CLI's framework takes it for end of input and prints only `Aborted.`)"""
    try:
        yield
    except EOFError:
        raise DataError(
            "truncated gzip: the compressed data ends before its end-of-stream marker "
            "(an incomplete download or copy?)",
            path=path,
        ) from None
    except gzip.BadGzipFile as exc:
        with open(path, "rb") as fh:
            start = fh.read(8)
        if not start.startswith(GZIP_MAGIC):
            raise DataError(
                f"not a gzip file, though its name ends in .gz (it starts with {start!r})", path=path
            ) from None
        raise DataError(f"corrupt gzip: {exc}", path=path) from None
    except zlib.error as exc:
        raise DataError(f"corrupt gzip: {exc}", path=path) from None


def _source(path: Path) -> Path | bytes:
    """What Polars' CSV scanner reads: the file itself, or a `.gz` file's content decompressed in memory
    (the scanner reads plain files; the compressed inputs are small archives)."""
    if not _gzipped(path):
        return path
    with _gzip_errors(path):
        data = gzip.decompress(path.read_bytes())
    if not data:
        raise DataError("empty file once decompressed", path=path)
    return data


def _scan_delimited(path: Path, names: Sequence[str], sep: str, header: bool) -> pl.LazyFrame:
    """Every column as a String, plus `_extra` (non-null when a row has too many fields) and `_line`."""
    schema = {n: pl.String for n in names} | {EXTRA: pl.String}
    lf = pl.scan_csv(
        _source(path),
        has_header=False,
        separator=sep,
        schema=schema,
        skip_rows=1 if header else 0,
        truncate_ragged_lines=True,
        missing_columns="insert",
        quote_char='"',
    )
    return lf.with_row_index(LINE, offset=2 if header else 1).with_columns(
        pl.lit(str(path)).cast(pl.Categorical).alias(FILE)
    )


def read_json(path: Path) -> object:
    """A JSON file's value; a file that cannot be read or parsed is a DataError naming it (and the line and
    column of a syntax error)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"malformed JSON: {exc.msg}", path=path, line=exc.lineno, column=str(exc.colno)
        ) from None


def _int(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().cast(pl.Int64, strict=False)


def _epoch(col: str, unit: str = "s") -> pl.Expr:
    """Unix seconds from a number of seconds or milliseconds (`unit`): an integer, or a decimal such as
    `1600000000.5`, floored to whole seconds (as integer division floors milliseconds); null when neither."""
    raw = pl.col(col).str.strip_chars()
    as_int = raw.cast(pl.Int64, strict=False)
    as_float = raw.cast(pl.Float64, strict=False)
    if unit == "ms":
        as_int, as_float = as_int // 1000, as_float / 1000
    return pl.coalesce(as_int, as_float.floor().cast(pl.Int64, strict=False))


def _id(col: str) -> pl.Expr:
    """A raw integer id, normalised ("007" -> "7"); null when it is not an integer."""
    return _int(col).cast(pl.String)


def _reason(short_row: pl.Expr, ids: Sequence[pl.Expr], ts: pl.Expr) -> pl.Expr:
    bad_id = pl.any_horizontal([e.is_null() for e in ids])
    return (
        pl.when(pl.col(EXTRA).is_not_null() | short_row)
        .then(pl.lit("wrong_column_count"))
        .when(bad_id)
        .then(pl.lit("bad_id"))
        .when(ts.is_null() | (ts < TS_RANGE[0]) | (ts >= TS_RANGE[1]))
        .then(pl.lit("bad_timestamp"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias(REASON)
    )


def _missing(header: Sequence[str], required: Sequence[str], path: Path) -> None:
    lost = [c for c in required if c not in header]
    if lost:
        raise DataError(
            f"missing column(s) {', '.join(lost)}; the header has {', '.join(header)}", path=path, line=1
        )


def _canonical(lf: pl.LazyFrame, context: Sequence[str] = ()) -> pl.LazyFrame:
    return lf.select(FILE, LINE, REASON, USER, ITEM, TS, BEHAVIOR, *context)


# ----------------------------------------------------------------------------------------------- taobao


def read_taobao(path: Path) -> RawLog:
    """Alibaba UserBehavior.csv: no header; user_id, item_id, category_id, behavior, unix seconds."""
    _require_file(path)
    names = ["u", "i", "c", "b", "t"]
    lf = _scan_delimited(path, names, ",", header=False)
    ids = [_id("u"), _id("i"), _id("c")]
    ts = _epoch("t")
    lf = lf.with_columns(
        _reason(pl.col("t").is_null(), ids, ts),
        ids[0].alias(USER),
        ids[1].alias(ITEM),
        ids[2].alias("category"),
        ts.alias(TS),
        pl.col("b").str.strip_chars().alias(BEHAVIOR),
    )
    return RawLog(
        "taobao",
        (str(path),),
        _canonical(lf, ["category"]),
        context_fields=("category",),
        behaviors=TAOBAO_BEHAVIORS,
        window=TAOBAO_WINDOW,
    )


# ----------------------------------------------------------------------------------------------- retailrocket


def read_retailrocket(paths: Sequence[Path]) -> RawLog:
    """events.csv, plus optional item_properties*.csv (`categoryid`) and category_tree.csv (parent)."""
    events_paths, prop_paths, tree_paths = [], [], []
    for p in paths:
        name = p.name.lower()
        (
            prop_paths
            if "item_properties" in name
            else tree_paths
            if "category_tree" in name
            else events_paths
        ).append(_require_file(p))
    if len(events_paths) != 1:
        raise DataError(
            f"retailrocket needs exactly one events file, got {len(events_paths)}",
            path=", ".join(map(str, paths)),
        )
    path = events_paths[0]
    header = _header(path, ",")
    _missing(header, ["timestamp", "visitorid", "event", "itemid"], path)
    lf = _scan_delimited(path, header, ",", header=True)
    ids = [_id("visitorid"), _id("itemid")]
    ts = _epoch("timestamp", "ms")
    last_required = max(header.index(c) for c in ("timestamp", "visitorid", "event", "itemid"))
    short = pl.all_horizontal([pl.col(c).is_null() for c in header[last_required:]])
    lf = lf.with_columns(
        _reason(short, ids, ts),
        ids[0].alias(USER),
        ids[1].alias(ITEM),
        ts.alias(TS),
        pl.col("event").str.strip_chars().alias(BEHAVIOR),
    )
    lf = _canonical(lf)
    context: tuple[str, ...] = ()
    if prop_paths:
        lf = _join_categories(lf, prop_paths, tree_paths)
        context = ("category", "parent_category") if tree_paths else ("category",)
    return RawLog(
        "retailrocket", tuple(map(str, paths)), lf, context_fields=context, behaviors=RETAILROCKET_BEHAVIORS
    )


def _join_categories(
    events: pl.LazyFrame, prop_paths: Sequence[Path], tree_paths: Sequence[Path]
) -> pl.LazyFrame:
    """The `categoryid` in force at each event: the latest value set at or before it (an event before the
    item's first record takes that first value); the category tree adds the parent as a second field."""
    frames = []
    for p in prop_paths:
        header = _header(p, ",")
        _missing(header, ["timestamp", "itemid", "property", "value"], p)
        frames.append(
            _scan_delimited(p, header, ",", header=True).select(
                _epoch("timestamp", "ms").alias("_pts"),
                _id("itemid").alias(ITEM),
                pl.col("property").str.strip_chars(),
                _id("value").alias("category"),
            )
        )
    props = (
        pl.concat(frames)
        .filter(
            (pl.col("property") == "categoryid")
            & pl.col(ITEM).is_not_null()
            & pl.col("category").is_not_null()
            & pl.col("_pts").is_not_null()
        )
        .select(ITEM, "_pts", "category")
        .sort("_pts")
    )
    first = props.group_by(ITEM).agg(pl.col("category").first().alias("_first"))
    keyed = events.with_columns(pl.col(TS).fill_null(-1).alias("_pts")).sort("_pts")
    out = keyed.join_asof(props, on="_pts", by=ITEM, strategy="backward", check_sortedness=False)
    out = (
        out.join(first, on=ITEM, how="left")
        .with_columns(pl.coalesce("category", "_first").alias("category"))
        .drop("_pts", "_first")
    )
    if tree_paths:
        path = tree_paths[0]
        header = _header(path, ",")
        _missing(header, ["categoryid", "parentid"], path)
        tree = _scan_delimited(path, header, ",", header=True).select(
            _id("categoryid").alias("category"), _id("parentid").alias("parent_category")
        )
        out = out.join(tree.unique("category"), on="category", how="left")
    return out.sort(FILE, LINE)


# ----------------------------------------------------------------------------------------------- s3rec


def read_s3rec(path: Path) -> RawLog:
    """S3-Rec `<name>.txt` (`user item item ...`, in time order) and `<name>_item2attributes.json` beside it.
    There are no timestamps: an item's position in its user's line is its time."""
    _require_file(path)
    stem = (path.with_suffix("") if _gzipped(path) else path).stem  # Beauty.txt.gz -> Beauty
    attr_path = path.with_name(f"{stem}_item2attributes.json")
    lf = (
        pl.scan_csv(
            _source(path), has_header=False, separator="\x1f", quote_char=None, schema={"raw": pl.String}
        )
        .with_row_index(LINE, offset=1)
        .with_columns(
            pl.lit(str(path)).cast(pl.Categorical).alias(FILE),
            pl.col("raw").fill_null("").str.strip_chars().str.split(" ").alias("tok"),
        )
    )
    lf = (
        lf.with_columns(
            pl.col("tok").list.first().alias("_u"),
            pl.col("tok").list.slice(1).alias("_items"),
            (pl.col("tok").list.len() < 2).alias("_short"),
        )
        .with_columns(
            pl.when(pl.col("_short")).then(pl.lit([""])).otherwise(pl.col("_items")).alias("_items")
        )
        .explode("_items")
        .with_columns(pl.int_range(pl.len()).over(LINE).cast(pl.Int64).alias(TS))
    )
    user, item = _int("_u").cast(pl.String), _int("_items").cast(pl.String)
    reason = (
        pl.when(pl.col("_short"))
        .then(pl.lit("wrong_column_count"))
        .when(user.is_null() | item.is_null())
        .then(pl.lit("bad_id"))
        .otherwise(pl.lit(None, dtype=pl.String))
        .alias(REASON)
    )
    lf = lf.with_columns(
        reason, user.alias(USER), item.alias(ITEM), pl.lit(None, dtype=pl.String).alias(BEHAVIOR)
    )
    item_context, item_fields = None, ()
    if attr_path.exists():
        item_context, item_fields = _read_item2attributes(attr_path), ("attributes",)
    return RawLog(
        "s3rec",
        tuple(map(str, [path, attr_path] if item_fields else [path])),
        _canonical(lf),
        item_context=item_context,
        item_fields=item_fields,
        ordinal_time=True,
    )


def _read_item2attributes(path: Path) -> pl.LazyFrame:
    _require_file(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError("expected a JSON object {item_id: [attribute_id, ...]}", path=path)
    items, attrs = [], []
    for key, values in data.items():
        if not isinstance(values, list) or not all(isinstance(v, int | str) for v in values):
            raise DataError(
                f"item {key!r}: expected a list of attribute ids, got {json.dumps(values)[:60]}", path=path
            )
        items.append(str(key))
        attrs.append([str(v) for v in values])
    return pl.LazyFrame(
        {ITEM: items, "attributes": attrs}, schema={ITEM: pl.String, "attributes": pl.List(pl.String)}
    )


# ----------------------------------------------------------------------------------------------- diginetica


def read_diginetica(paths: Sequence[Path]) -> RawLog:
    """CIKM Cup 2016: train-item-views and/or train-purchases (`;`), plus product-categories.csv.
    A session is the sequence unit (most sessions are anonymous); time = eventdate + timeframe (ms)."""
    frames, categories = [], None
    for p in map(_require_file, paths):
        header = _header(p, ";")
        lower = [h.lower().replace("_", "") for h in header]
        lf = _scan_delimited(p, header, ";", header=True).rename(dict(zip(header, lower, strict=True)))
        if "categoryid" in lower:
            _missing(lower, ["itemid", "categoryid"], p)
            categories = lf.select(_id("itemid").alias(ITEM), _id("categoryid").alias("category"))
            continue
        _missing(lower, ["sessionid", "itemid", "timeframe", "eventdate"], p)
        behavior = "purchase" if "ordernumber" in lower else "view"
        day = pl.col("eventdate").str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        ts = day.cast(pl.Datetime("ms")).dt.epoch("s") + _epoch("timeframe", "ms")
        ids = [_id("sessionid"), _id("itemid")]
        short = pl.col(lower[-1]).is_null()
        frames.append(
            _canonical(
                lf.with_columns(
                    _reason(short, ids, ts),
                    ids[0].alias(USER),
                    ids[1].alias(ITEM),
                    ts.alias(TS),
                    pl.lit(behavior).alias(BEHAVIOR),
                )
            )
        )
    if not frames:
        raise DataError(
            "diginetica needs a train-item-views or train-purchases file", path=", ".join(map(str, paths))
        )
    item_context, item_fields = None, ()
    if categories is not None:
        item_context = (
            categories.filter(pl.col(ITEM).is_not_null() & pl.col("category").is_not_null())
            .group_by(ITEM)
            .agg(pl.col("category").unique().sort())
        )
        item_fields = ("category",)
    return RawLog(
        "diginetica",
        tuple(map(str, paths)),
        pl.concat(frames),
        item_context=item_context,
        item_fields=item_fields,
        behaviors=DIGINETICA_BEHAVIORS,
    )


# ----------------------------------------------------------------------------------------------- generic


@dataclass(frozen=True, kw_only=True)
class GenericMapping:
    """Which columns of a CSV or Parquet file hold what."""

    user: str  # column with the user id
    item: str  # column with the item id
    timestamp: str  # column with the time: a number in ts_unit (in a CSV also a decimal, floored to whole
    # seconds) or a date-time string / type; it must fall in [1970-01-01, 2100-01-01) UTC (schema.TS_RANGE)
    behavior: str | None = None  # optional behaviour-type column
    context: tuple[str, ...] = ()  # optional event-level context columns (category, brand, ...)
    ts_unit: str = "s"  # unit of a numeric timestamp: "s" or "ms"
    separator: str = ","  # CSV field separator
    behaviors: tuple[str, ...] | None = None  # allowed behaviour values (others are dropped as unknown)
    window: tuple[int, int] | None = None  # valid [start, end) in unix seconds

    def __post_init__(self) -> None:
        if self.ts_unit not in ("s", "ms"):
            raise DataError(f"ts_unit must be 's' or 'ms', got {self.ts_unit!r}")

    @classmethod
    def from_toml(cls, path: Path) -> GenericMapping:
        _require_file(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise DataError(f"malformed TOML: {exc}", path=path) from None
        table = raw.get("columns", raw)
        return cls.from_dict(table, source=str(path))

    @classmethod
    def from_dict(cls, table: dict, source: str | None = None) -> GenericMapping:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise DataError(
                f"unknown mapping key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", path=source
            )
        lost = [k for k in ("user", "item", "timestamp") if not table.get(k)]
        if lost:
            raise DataError(f"the column mapping needs {', '.join(lost)}", path=source)
        values = dict(table)
        for key in ("context", "behaviors", "window"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def read_generic(path: Path, mapping: GenericMapping) -> RawLog:
    """Any CSV (with a header) or Parquet file, through a column mapping."""
    _require_file(path)
    wanted = [
        mapping.user,
        mapping.item,
        mapping.timestamp,
        *([mapping.behavior] if mapping.behavior else []),
        *mapping.context,
    ]
    if path.suffix.lower() in (".parquet", ".pq"):
        lf = _scan_parquet(path, mapping, wanted)
        short = pl.lit(False)
    else:
        header = _header(path, mapping.separator)
        _missing_mapping(header, wanted, path)
        lf = _scan_delimited(path, header, mapping.separator, header=True)
        short = pl.col(header[-1]).is_null() & pl.all_horizontal([pl.col(c).is_null() for c in wanted])
    as_time = pl.col(mapping.timestamp).str.strip_chars().str.to_datetime(strict=False, time_unit="ms")
    ts = pl.coalesce(_epoch(mapping.timestamp, mapping.ts_unit), as_time.dt.epoch("s"))
    ids = [pl.col(mapping.user).str.strip_chars(), pl.col(mapping.item).str.strip_chars()]
    ids = [pl.when(e != "").then(e) for e in ids]
    behavior = (
        pl.col(mapping.behavior).str.strip_chars() if mapping.behavior else pl.lit(None, dtype=pl.String)
    )
    lf = lf.with_columns(
        _reason(short, ids, ts),
        ids[0].alias(USER),
        ids[1].alias(ITEM),
        ts.alias(TS),
        behavior.alias(BEHAVIOR),
        *[pl.col(c).str.strip_chars().alias(f"ctx_{c}") for c in mapping.context],
    )
    lf = lf.drop(mapping.context).rename({f"ctx_{c}": c for c in mapping.context}) if mapping.context else lf
    return RawLog(
        "generic",
        (str(path),),
        _canonical(lf, mapping.context),
        context_fields=mapping.context,
        behaviors=mapping.behaviors,
        window=mapping.window,
        reader_options=json.dumps(asdict(mapping), sort_keys=True),
    )


def _missing_mapping(columns: Sequence[str], wanted: Sequence[str], path: Path) -> None:
    lost = [c for c in wanted if c not in columns]
    if lost:
        raise DataError(
            f"column(s) {', '.join(lost)} named in the mapping are missing; the file has "
            f"{', '.join(columns)}",
            path=path,
        )


def _scan_parquet(path: Path, mapping: GenericMapping, wanted: Sequence[str]) -> pl.LazyFrame:
    try:
        lf = pl.scan_parquet(path)
        schema = lf.collect_schema()
    except Exception as exc:  # polars raises several error types for a file that is not Parquet
        raise DataError(f"cannot read as Parquet: {exc}", path=path) from None
    _missing_mapping(list(schema.names()), wanted, path)
    for col in (mapping.user, mapping.item):
        if not (schema[col].is_integer() or schema[col] == pl.String or schema[col] == pl.Categorical):
            raise DataError(f"expected integer or string ids, found {schema[col]}", path=path, column=col)
    ts_type = schema[mapping.timestamp]
    if not (ts_type.is_integer() or ts_type == pl.String or isinstance(ts_type, pl.Datetime | pl.Date)):
        raise DataError(
            f"expected an integer, date-time or string timestamp, found {ts_type}",
            path=path,
            column=mapping.timestamp,
        )
    ts = pl.col(mapping.timestamp)
    if isinstance(ts_type, pl.Datetime | pl.Date):
        ts = ts.cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.Int64) * (
            1000 if mapping.ts_unit == "ms" else 1
        )
    return lf.with_row_index(LINE, offset=1).with_columns(
        *[pl.col(c).cast(pl.String) for c in wanted if c != mapping.timestamp],
        ts.cast(pl.String).alias(mapping.timestamp),
        pl.lit(str(path)).cast(pl.Categorical).alias(FILE),
        pl.lit(None, dtype=pl.String).alias(EXTRA),
    )


# ----------------------------------------------------------------------------------------------- atomic

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
# .inter fields taken as the behaviour type when present as a token field (the first of them, in this order)
ATOMIC_BEHAVIOR_FIELDS = ("behavior", "behaviour", "event", "event_type", "action")
RAW, PARTS = "_raw", "_parts"


def read_atomic(paths: Sequence[Path], behavior: str | None = None) -> RawLog:
    """RecBole atomic files: `<name>.inter`, and `<name>.item` (given, or found beside it).

    Both are tab-separated with a typed header, `name:type` per field, the type one of `token`,
    `token_seq` (values separated by single spaces), `float`, `float_seq`. From the `.inter`:
    - `user_id` and `item_id` (both `token`, required) are the user and the item, taken as written (no
      integer normalisation: RecBole's tokens are strings); an empty one is a `bad_id`;
    - `timestamp` (`float`, optional) is the time in unix seconds, a decimal floored to whole seconds; one
      that does not parse or falls outside `schema.TS_RANGE` is a `bad_timestamp`. Without it, the file's
      order is the time, as for S3-Rec files: each event's time is its position among its user's rows
      (0, 1, 2, ...) and the log has `ordinal_time`;
    - the behaviour type is the field named by `behavior` (token or float, its values as written: say
      `rating`), else the first token field named as in `ATOMIC_BEHAVIOR_FIELDS`, else there is none (the
      `behavior` option is this function's; from the command line, name the field `behavior` in the header);
    - other fields (`rating` unless named as the behaviour, reviews, ...) are not read.
    Lines are split at tabs with no quoting (RecBole writes none); one whose number of fields is not the
    header's (a blank line too) is a `wrong_column_count`.
    From the `.item`: every `token` and `token_seq` field other than `item_id` is a multi-valued item field
    (a token is one value, an empty field none); floats are not read; its lines must all parse (a DataError
    names the first that does not; blank lines are skipped), and an item on several lines gets the values
    of all of them. A header that is not `name:type` with a known type, or lacks a required field or
    gives it another type, is a DataError naming the file, line 1 and the field's position. RecBole's other
    atomic files (`.user`, `.kg`, `.link`, `.net`) are not read."""
    ps = [_require_file(p) for p in paths]
    item_paths = [p for p in ps if _atomic_suffix(p) == ".item"]
    inter_paths = [p for p in ps if _atomic_suffix(p) != ".item"]
    if len(inter_paths) != 1 or len(item_paths) > 1:
        raise DataError(
            "atomic takes one <name>.inter, and optionally its <name>.item (found beside it when not given)",
            path=", ".join(map(str, ps)),
        )
    path = inter_paths[0]
    item_path = item_paths[0] if item_paths else _beside(path, ".item")
    header = _atomic_header(path)
    _atomic_require(header, path, {"user_id": ("token",), "item_id": ("token",)})
    ordinal = "timestamp" not in header
    if not ordinal:
        _atomic_require(header, path, {"timestamp": ("float",)})
    if behavior is not None:
        _atomic_require(header, path, {behavior: ("token", "float")})
    found = behavior or next((f for f in ATOMIC_BEHAVIOR_FIELDS if header.get(f) == "token"), None)
    lf = _atomic_lines(path, header)
    ids = [pl.when(_field(f) != "").then(_field(f)) for f in ("user_id", "item_id")]
    ts = (
        pl.int_range(pl.len()).over(_field("user_id")).cast(pl.Int64)
        if ordinal
        else _epoch(_col("timestamp"))
    )
    lf = lf.with_columns(
        _reason(_atomic_wrong_count(header), ids, ts),
        ids[0].alias(USER),
        ids[1].alias(ITEM),
        ts.alias(TS),
        (_field(found) if found else pl.lit(None, dtype=pl.String)).alias(BEHAVIOR),
    )
    item_context, item_fields = _read_atomic_items(item_path) if item_path is not None else (None, ())
    return RawLog(
        "atomic",
        tuple(str(p) for p in (path, item_path) if p is not None),
        _canonical(lf),
        item_context=item_context,
        item_fields=item_fields,
        reader_options=None if behavior is None else json.dumps({"behavior": behavior}),
        ordinal_time=ordinal,
    )


def _atomic_suffix(path: Path) -> str:
    """The atomic file type of `x.inter` or `x.inter.gz`: `.inter`."""
    return (path.with_suffix("") if _gzipped(path) else path).suffix.lower()


def _beside(path: Path, suffix: str) -> Path | None:
    """`<name><suffix>` (or `<name><suffix>.gz`) in the folder of `<name>.inter[.gz]`, if there is one."""
    stem = (path.with_suffix("") if _gzipped(path) else path).stem
    for name in (f"{stem}{suffix}", f"{stem}{suffix}.gz"):
        if path.with_name(name).is_file():
            return path.with_name(name)
    return None


def _atomic_header(path: Path) -> dict[str, str]:
    """The typed header line as {field: type}, in order."""
    header: dict[str, str] = {}
    for i, raw in enumerate(_header(path, "\t"), start=1):
        name, sep, ftype = raw.rpartition(":")
        if not sep or not name:
            raise DataError(
                f"header field {raw!r} is not name:type (RecBole's typed header; types: "
                f"{', '.join(ATOMIC_TYPES)})",
                path=path,
                line=1,
                column=str(i),
            )
        if ftype not in ATOMIC_TYPES:
            raise DataError(
                f"field {name} has unknown type {ftype!r}; expected one of {', '.join(ATOMIC_TYPES)}",
                path=path,
                line=1,
                column=str(i),
            )
        if name in header:
            raise DataError(f"field {name} appears twice in the header", path=path, line=1, column=str(i))
        header[name] = ftype
    return header


def _atomic_require(header: dict[str, str], path: Path, wanted: dict[str, tuple[str, ...]]) -> None:
    """Each field of `wanted` is in the header, with one of the types listed for it."""
    lost = [f for f in wanted if f not in header]
    if lost:
        have = ", ".join(f"{f}:{t}" for f, t in header.items())
        raise DataError(f"missing field(s) {', '.join(lost)}; the header has {have}", path=path, line=1)
    for f, types in wanted.items():
        if header[f] not in types:
            raise DataError(
                f"field {f} must be of type {' or '.join(types)}, not {header[f]}",
                path=path,
                line=1,
                column=str(list(header).index(f) + 1),
            )


def _atomic_lines(path: Path, header: dict[str, str]) -> pl.LazyFrame:
    """One row per line after the header: `_line`, `_file`, the line's fields split at tabs (`_parts`), and
    one String column per header field (`_col(name)`: the field stripped, null past the line's end). Lines
    are read whole, with no quoting (RecBole writes none), so that a line's field count is exact."""
    lf = pl.scan_csv(
        _source(path),
        has_header=False,
        separator="\x1f",  # a control character no text field holds (one that does goes to `_extra`)
        quote_char=None,
        schema={RAW: pl.String, EXTRA: pl.String},
        skip_rows=1,
        truncate_ragged_lines=True,
        missing_columns="insert",
    )
    return (
        lf.with_row_index(LINE, offset=2)
        .with_columns(
            pl.lit(str(path)).cast(pl.Categorical).alias(FILE),
            pl.col(RAW).fill_null("").str.split("\t").alias(PARTS),
        )
        .with_columns(
            pl.col(PARTS).list.get(i, null_on_oob=True).str.strip_chars().alias(_col(name))
            for i, name in enumerate(header)
        )
    )


def _col(name: str) -> str:
    return f"_field:{name}"


def _field(name: str) -> pl.Expr:
    return pl.col(_col(name))


def _atomic_wrong_count(header: dict[str, str]) -> pl.Expr:
    """A line that is not exactly the header's fields: too few, too many, blank, or holding `\\x1f`."""
    return pl.col(RAW).is_null() | (pl.col(PARTS).list.len() != len(header)) | pl.col(EXTRA).is_not_null()


def _read_atomic_items(path: Path) -> tuple[pl.LazyFrame | None, tuple[str, ...]]:
    """A `.item` file's token and token_seq fields, as (item context, its field names). Read at once (it
    is one line per item), so that its first bad line is a DataError naming it."""
    header = _atomic_header(path)
    _atomic_require(header, path, {"item_id": ("token",)})
    fields = {f: t for f, t in header.items() if f != "item_id" and t in ("token", "token_seq")}
    if ITEM in fields:
        raise DataError(f"a field may not be named {ITEM!r} (the canonical item column)", path=path, line=1)
    try:
        df = _atomic_lines(path, header).filter(pl.col(RAW).is_not_null()).collect()
    except pl.exceptions.PolarsError as exc:  # bytes that are not UTF-8, say
        raise DataError(f"cannot parse: {' '.join(str(exc).split())[:200]}", path=path) from None
    bad = df.filter(_atomic_wrong_count(header) | (_field("item_id") == ""))
    if bad.height:
        row = bad.row(0, named=True)
        n = len(row[PARTS])
        raise DataError(
            "cannot split the line: it holds the control character \\x1f"
            if row[EXTRA] is not None
            else f"{n} tab-separated field{'s' * (n != 1)}, the header has {len(header)}"
            if n != len(header)
            else "empty item_id",
            path=path,
            line=row[LINE],
        )
    if not fields:
        return None, ()
    values = []
    for f, ftype in fields.items():
        v = _field(f).fill_null("")
        values.append(
            (
                v.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
                if ftype == "token_seq"
                else pl.when(v != "").then(pl.concat_list(v)).otherwise(pl.lit([], dtype=pl.List(pl.String)))
            ).alias(f)
        )
    table = df.select(_field("item_id").alias(ITEM), *values)
    return table.lazy(), tuple(fields)


# ----------------------------------------------------------------------------------------------- dispatch


def read(fmt: str, paths: Sequence[str | Path], mapping: GenericMapping | None = None) -> RawLog:
    """Read `paths` in format `fmt` (one of FORMATS) into the canonical schema."""
    ps = [Path(p) for p in paths]
    if not ps:
        raise DataError("no input file given")
    if fmt == "taobao":
        logs = [read_taobao(p) for p in ps]
        if len(logs) == 1:
            return logs[0]
        first = logs[0]
        return RawLog(
            first.format,
            tuple(str(p) for p in ps),
            pl.concat([lg.events for lg in logs]),
            context_fields=first.context_fields,
            behaviors=first.behaviors,
            window=first.window,
        )
    if fmt == "retailrocket":
        return read_retailrocket(ps)
    if fmt == "s3rec":
        if len(ps) != 1:
            raise DataError("s3rec takes one <name>.txt (its _item2attributes.json is found beside it)")
        return read_s3rec(ps[0])
    if fmt == "diginetica":
        return read_diginetica(ps)
    if fmt == "atomic":
        return read_atomic(ps)
    if fmt == "generic":
        if mapping is None:
            raise DataError(
                "the generic format needs a column mapping (--map user=...,item=...,timestamp=...)"
            )
        if len(ps) != 1:
            raise DataError("the generic format takes one file")
        return read_generic(ps[0], mapping)
    raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def day_start(date: str) -> int:
    """Unix seconds of a UTC date, for windows given as dates."""
    return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp())

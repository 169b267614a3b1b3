"""The canonical schema every reader produces.

`RawLog.events` is one row per line of input, parsed or not, so that nothing is lost silently:

| column     | dtype  | meaning                                                                 |
|------------|--------|-------------------------------------------------------------------------|
| `_file`    | String | the file the row came from                                              |
| `_line`    | UInt32 | its 1-based line number in that file                                    |
| `_reason`  | String | null for a parsed row, else why it cannot be used (see `PARSE_REASONS`)  |
| `user`     | String | raw user id (null when unparsable)                                       |
| `item`     | String | raw item id                                                              |
| `ts`       | Int64  | unix seconds, or the position in the user's sequence (`ordinal_time`)     |
| `behavior` | String | behaviour type as the source spells it, or null when the source has none |
| `<field>`  | String | one column per event-level context field (`RawLog.context_fields`)       |

`RawLog.item_context` is an optional static table: `item` (String) plus one `List(String)` column per
multi-valued item field (`RawLog.item_fields`), such as S3-Rec's attributes.

`RawLog.ordinal_time` says the source has no clock: `ts` is then the event's position in its user's
sequence (0, 1, 2, ...: S3-Rec files, RecBole atomic files without a `timestamp` field), so only the order
of a user's events means anything, a time cut across users does not, and the times are not dates.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

USER, ITEM, TS, BEHAVIOR = "user", "item", "ts", "behavior"
FILE, LINE, REASON = "_file", "_line", "_reason"

# The unix seconds a timestamp may take: [1970-01-01, 2100-01-01) UTC. A time outside it (negative, or
# milliseconds read as seconds) is a `bad_timestamp`: no event log is that old or that far ahead, and
# Python's datetime cannot print years beyond 9999. S3-Rec's times are positions and are not checked.
TS_RANGE = (0, 4_102_444_800)

# Reasons a row is dropped, in the order they are checked. The first three come from the readers.
PARSE_REASONS = ("wrong_column_count", "bad_id", "bad_timestamp")
REASONS = (*PARSE_REASONS, "unknown_behavior", "out_of_window", "duplicate")


@dataclass(frozen=True)
class RawLog:
    format: str  # reader name
    paths: tuple[str, ...]  # every input file, for the artifact hash and messages
    events: pl.LazyFrame  # see the module docstring
    context_fields: tuple[str, ...] = ()  # event-level context columns
    item_context: pl.LazyFrame | None = None  # static, multi-valued item fields
    item_fields: tuple[str, ...] = ()
    behaviors: tuple[str, ...] | None = None  # the known behaviour values, weakest first
    window: tuple[int, int] | None = None  # valid [start, end) in unix seconds
    reader_options: str | None = None  # how the files were read (generic: the mapping), for the cache key
    ordinal_time: bool = False  # `ts` is a position in the user's sequence, not unix seconds (see above)


def event_columns(log: RawLog) -> list[str]:
    return [FILE, LINE, REASON, USER, ITEM, TS, BEHAVIOR, *log.context_fields]

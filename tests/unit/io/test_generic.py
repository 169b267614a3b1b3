"""The generic reader: any CSV (with a header) or Parquet file through a column mapping."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from ssrf.core import DataError
from ssrf.io import GenericMapping, read


def _rows(df: pl.DataFrame, *cols: str) -> list[tuple]:
    return df.select(cols).rows()


def test_csv_through_a_toml_mapping(tiny):
    mapping = GenericMapping.from_toml(tiny / "generic_mapping.toml")
    assert mapping == GenericMapping(
        user="uid", item="sku", timestamp="when", behavior="action", context=("shop",), ts_unit="ms"
    )
    log = read("generic", [tiny / "generic.csv"], mapping)
    df = log.events.collect()

    assert log.context_fields == ("shop",)
    assert log.behaviors is None and log.window is None
    assert df.columns == ["_file", "_line", "_reason", "user", "item", "ts", "behavior", "shop"]
    assert df["_reason"].null_count() == 10
    assert _rows(df, "_line", "user", "item", "ts", "behavior", "shop") == [
        (2, "alice", "apple", 1, "click", "s1"),
        (3, "alice", "pear", 2, "click", "s1"),
        (4, "alice", "apple", 3, "buy", "s1"),
        (5, "alice", "fig", 4, "click", "s2"),
        (6, "bob", "pear", 5, "click", "s2"),
        (7, "bob", "fig", 6, "buy", "s2"),
        (8, "carol", "apple", 7, "click", "s1"),
        (9, "alice", "pear", 8, "click", "s1"),
        (10, "bob", "apple", 8, "click", "s3"),
        (11, "carol", "fig", 10, "buy", "s2"),
    ]


def test_csv_date_time_strings_separator_and_bad_rows(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text(
        "who\twhat\twhen\n"
        "u1\ti1\t2017-11-25 10:00:00\n"  # a date-time string is read as UTC
        "u2\ti2\t1511600000\n"  # an integer is unix seconds (ts_unit s)
        "u3\ti3\tyesterday\n"
        "\ti4\t1511600000\n"  # no user
        "u5\ti5\t1511600000\textra\n"
    )
    mapping = GenericMapping(user="who", item="what", timestamp="when", separator="\t")
    df = read("generic", [path], mapping).events.collect()
    assert df["ts"].to_list()[:2] == [1511604000, 1511600000]
    assert df["_reason"].to_list() == [None, None, "bad_timestamp", "bad_id", "wrong_column_count"]
    assert df["behavior"].null_count() == 5


def test_parquet_with_typed_columns(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "u": pl.Series([1, 2, 2], dtype=pl.Int64),
            "i": ["a", "b", None],
            "t": [dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1, 0, 0, 30), dt.datetime(2020, 1, 2)],
            "kind": pl.Series(["view", "buy", "view"], dtype=pl.Categorical),
            "brand": pl.Series([7, None, 9], dtype=pl.Int32),
        }
    ).write_parquet(path)
    mapping = GenericMapping.from_dict(
        {"user": "u", "item": "i", "timestamp": "t", "behavior": "kind", "context": ["brand"]}
    )
    log = read("generic", [path], mapping)
    df = log.events.collect()

    assert df.schema["user"] == pl.String and df.schema["brand"] == pl.String
    assert _rows(df, "_line", "_reason", "user", "item", "ts", "behavior", "brand") == [
        (1, None, "1", "a", 1577836800, "view", "7"),
        (2, None, "2", "b", 1577836830, "buy", None),
        (3, "bad_id", "2", None, 1577923200, "view", "9"),
    ]


def test_parquet_integer_milliseconds_and_date_column(tmp_path):
    path = tmp_path / "ms.parquet"
    pl.DataFrame({"u": ["x", "y"], "i": [5, 6], "t": [1_500_000_000_999, 1_500_000_001_000]}).write_parquet(
        path
    )
    ms = GenericMapping(user="u", item="i", timestamp="t", ts_unit="ms")
    assert read("generic", [path], ms).events.collect()["ts"].to_list() == [1_500_000_000, 1_500_000_001]

    dated = tmp_path / "dated.parquet"
    pl.DataFrame({"u": ["x"], "i": ["a"], "d": [dt.date(2020, 1, 2)]}).write_parquet(dated)
    for unit in ("s", "ms"):  # a Date/Datetime column is unix seconds whatever ts_unit says
        mapping = GenericMapping(user="u", item="i", timestamp="d", ts_unit=unit)
        assert read("generic", [dated], mapping).events.collect()["ts"].to_list() == [1577923200]


@pytest.mark.parametrize(
    ("frame", "column", "found"),
    [
        ({"u": [1.0, 2.0], "i": [1, 2], "t": [1, 2]}, "u", "Float64"),
        ({"u": [1, 2], "i": [True, False], "t": [1, 2]}, "i", "Boolean"),
        ({"u": [1, 2], "i": [1, 2], "t": [1.5, 2.5]}, "t", "Float64"),
    ],
)
def test_parquet_wrong_types_name_the_file_and_column(tmp_path, frame, column, found):
    path = tmp_path / "typed.parquet"
    pl.DataFrame(frame).write_parquet(path)
    with pytest.raises(DataError) as err:
        read("generic", [path], GenericMapping(user="u", item="i", timestamp="t"))
    assert err.value.path == str(path) and err.value.column == column
    assert str(err.value).startswith(f"{path} (column {column}): expected ")
    assert found in str(err.value)


def test_not_parquet_and_missing_columns(tmp_path):
    fake = tmp_path / "fake.parquet"
    fake.write_text("u,i,t\n1,2,3\n")
    mapping = GenericMapping(user="u", item="i", timestamp="t")
    with pytest.raises(DataError, match="cannot read as Parquet") as err:
        read("generic", [fake], mapping)
    assert err.value.path == str(fake)

    good = tmp_path / "good.parquet"
    pl.DataFrame({"u": [1], "i": [2], "time": [3]}).write_parquet(good)
    with pytest.raises(
        DataError, match=r"column\(s\) t named in the mapping are missing; the file has u, i, time"
    ):
        read("generic", [good], mapping)

    csv = tmp_path / "log.csv"
    csv.write_text("u,i,time,b\n1,2,3,x\n")
    with pytest.raises(DataError, match=r"column\(s\) t, kind named in the mapping are missing") as err:
        read("generic", [csv], GenericMapping(user="u", item="i", timestamp="t", behavior="kind"))
    assert str(err.value).startswith(f"{csv}: ")


def test_mapping_validation(tmp_path):
    with pytest.raises(DataError, match=r"unknown mapping key\(s\) colour, size; known: behavior, behaviors"):
        GenericMapping.from_dict({"user": "u", "item": "i", "timestamp": "t", "colour": "c", "size": "s"})
    with pytest.raises(DataError, match=r"^--map: the column mapping needs item, timestamp$"):
        GenericMapping.from_dict({"user": "u"}, source="--map")
    with pytest.raises(DataError, match="ts_unit must be 's' or 'ms'"):
        GenericMapping(user="u", item="i", timestamp="t", ts_unit="us")

    toml = tmp_path / "m.toml"
    toml.write_text('user = "u"\nitem = "i"\ntimestamp = "t"\nbehaviors = ["a", "b"]\nwindow = [10, 20]\n')
    assert GenericMapping.from_toml(toml) == GenericMapping(
        user="u", item="i", timestamp="t", behaviors=("a", "b"), window=(10, 20)
    )
    toml.write_text('[columns]\nuser = "u"\nitem = "i"\ntimestamp = "t"\nbrand = "b"\n')
    with pytest.raises(DataError, match=r"unknown mapping key\(s\) brand") as err:
        GenericMapping.from_toml(toml)
    assert err.value.path == str(toml)
    toml.write_text("user = \n")
    with pytest.raises(DataError, match="malformed TOML") as err:
        GenericMapping.from_toml(toml)
    assert err.value.path == str(toml)


def test_mapping_behaviours_and_window_reach_the_log(tiny):
    mapping = GenericMapping(
        user="uid", item="sku", timestamp="when", behavior="action", behaviors=("click", "buy"), window=(0, 9)
    )
    log = read("generic", [tiny / "generic.csv"], mapping)
    assert log.behaviors == ("click", "buy") and log.window == (0, 9)

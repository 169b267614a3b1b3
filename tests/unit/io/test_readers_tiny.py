"""Each reader on a hand-written tiny input: the canonical frame, row by row.

How every expected value was worked out is in tests/fixtures/README.md."""

from __future__ import annotations

import gzip
import shutil

import polars as pl

from ssrf.io import read
from ssrf.io.schema import event_columns

W0 = 1511539200  # 2017-11-25 00:00 in China time (UTC+8)


def _rows(df: pl.DataFrame, *cols: str) -> list[tuple]:
    return df.select(cols).rows()


def _reasons(df: pl.DataFrame) -> list[str | None]:
    return df["_reason"].to_list()


# ------------------------------------------------------------------------------------------- taobao


def test_taobao_tiny_canonical_rows(tiny):
    path = tiny / "taobao.csv"
    log = read("taobao", [path])
    df = log.events.collect()

    assert (
        df.columns
        == event_columns(log)
        == [
            "_file",
            "_line",
            "_reason",
            "user",
            "item",
            "ts",
            "behavior",
            "category",
        ]
    )
    assert df.schema["_line"] == pl.UInt32 and df.schema["ts"] == pl.Int64 and df.schema["user"] == pl.String
    assert set(df["_file"].cast(pl.String)) == {str(path)}
    assert df["_line"].to_list() == list(range(1, 17))
    # The reader finds only parse problems; window, behaviour and duplicates are the cleaning step's.
    assert _reasons(df) == [None] * 12 + [
        "bad_id",
        "wrong_column_count",
        "bad_timestamp",
        "wrong_column_count",
    ]
    assert _rows(df.head(12), "user", "item", "category", "behavior", "ts") == [
        ("1", "10", "100", "pv", W0),
        ("1", "11", "100", "pv", W0 + 100),
        ("1", "10", "100", "cart", W0 + 200),
        ("1", "12", "101", "buy", 1512316799),
        ("2", "10", "100", "pv", W0 + 50),
        ("2", "10", "100", "cart", W0 + 50),
        ("2", "11", "100", "fav", W0 + 150),
        ("2", "12", "102", "pv", W0 + 250),
        ("1", "10", "100", "pv", W0 - 1),
        ("2", "12", "102", "buy", 1512316800),
        ("1", "11", "100", "pv", W0 + 100),
        ("3", "10", "100", "click", W0 + 300),
    ]
    # line 13 `3,x1,...`: the item is not an integer; line 15: the time is not one
    assert _rows(df[12:15], "user", "item", "ts") == [
        ("3", None, W0 + 300),
        ("3", "10", None),
        ("3", "10", None),
    ]


def test_taobao_ids_are_normalised_integers(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("007,0010, 5 ,pv,1511539300\r\n-3,1.5,5,pv,1511539300\r\n")
    df = read("taobao", [path]).events.collect()
    assert _rows(df, "user", "item", "category", "behavior", "ts")[0] == ("7", "10", "5", "pv", 1511539300)
    assert _reasons(df) == [None, "bad_id"]  # "1.5" is not an integer id


def test_taobao_gzip_reads_like_the_plain_file(tiny, tmp_path):
    gz = tmp_path / "taobao.csv.gz"
    with open(tiny / "taobao.csv", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain = read("taobao", [tiny / "taobao.csv"]).events.collect().drop("_file")
    zipped = read("taobao", [gz]).events.collect().drop("_file")
    assert zipped.equals(plain)


# ------------------------------------------------------------------------------------- retailrocket


def test_retailrocket_category_in_force_at_event_time_and_parent(tiny):
    folder = tiny / "retailrocket"
    log = read(
        "retailrocket",
        [folder / "events.csv", folder / "item_properties.csv", folder / "category_tree.csv"],
    )
    df = log.events.collect()

    assert log.context_fields == ("category", "parent_category")
    assert log.behaviors == ("view", "addtocart", "transaction")
    assert df["_line"].to_list() == list(range(2, 11))  # input order, header on line 1
    assert _reasons(df) == [None] * 9  # `click` is for the cleaning step to reject
    assert _rows(df, "user", "item", "ts", "behavior", "category", "parent_category") == [
        ("1", "100", 2500, "view", "2", "10"),  # after the change at 2000 s
        ("2", "100", 1000, "view", "1", "10"),  # exactly at the first record
        ("2", "100", 1999, "addtocart", "1", "10"),  # 1 s before the change
        ("3", "100", 2000, "transaction", "2", "10"),  # at the change
        ("1", "200", 1200, "view", "3", "20"),  # before item 200's first record: its first value
        ("2", "200", 1600, "view", "3", "20"),
        ("3", "300", 1700, "view", None, None),  # item 300 has no categoryid record
        ("3", "300", 1800, "click", None, None),
        ("1", "100", 500, "view", "1", "10"),  # before item 100's first record: its first value
    ]


def test_retailrocket_properties_without_tree_give_category_only(tiny):
    folder = tiny / "retailrocket"
    log = read("retailrocket", [folder / "events.csv", folder / "item_properties.csv"])
    df = log.events.collect()
    assert log.context_fields == ("category",)
    assert df["category"].to_list() == ["2", "1", "1", "2", "3", "3", None, None, "1"]


def test_retailrocket_bad_rows_are_labelled(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1000,1,view,5,\n"  # fine (1000 ms = 1 s)
        "2000,1,view\n"  # too few fields
        "3000,1,view,5,,surplus\n"  # too many
        "4000,abc,view,5,\n"  # visitor id not an integer
        "soon,1,view,5,\n"  # timestamp not an integer
    )
    df = read("retailrocket", [path]).events.collect()
    assert _reasons(df) == [None, "wrong_column_count", "wrong_column_count", "bad_id", "bad_timestamp"]
    assert df["ts"].to_list()[:1] == [1]


# -------------------------------------------------------------------------------------------- s3rec


def test_s3rec_positions_are_time_and_attributes_are_read(tiny):
    log = read("s3rec", [tiny / "s3rec" / "Tiny.txt"])
    df = log.events.collect()

    assert log.behaviors is None and log.window is None
    assert _rows(df, "_line", "user", "item", "ts") == [
        (1, "1", "3", 0),
        (1, "1", "1", 1),
        (1, "1", "2", 2),
        (2, "2", "1", 0),
        (2, "2", "2", 1),
        (3, "3", "2", 0),
        (3, "3", "3", 1),
        (3, "3", "1", 2),
        (3, "3", "4", 3),
    ]
    assert _reasons(df) == [None] * 9
    assert df["behavior"].null_count() == 9
    attrs = dict(log.item_context.collect().iter_rows())
    assert attrs == {"1": ["5", "6"], "2": ["6"], "3": ["7"], "4": [], "9": ["8"]}
    assert [p.rsplit("/", 1)[-1] for p in log.paths] == ["Tiny.txt", "Tiny_item2attributes.json"]


def test_s3rec_without_attributes_and_with_bad_lines(tmp_path):
    path = tmp_path / "Plain.txt"
    path.write_text("1 2 3\n\n4\n5 6 x\n")
    log = read("s3rec", [path])
    df = log.events.collect()
    assert log.item_context is None and log.item_fields == () and len(log.paths) == 1
    # a blank line and a user with no items are wrong column counts; "x" is a bad id; lines stay exact
    assert _rows(df, "_line", "_reason", "user", "item") == [
        (1, None, "1", "2"),
        (1, None, "1", "3"),
        (2, "wrong_column_count", None, None),
        (3, "wrong_column_count", "4", None),
        (4, None, "5", "6"),
        (4, "bad_id", "5", None),
    ]


# --------------------------------------------------------------------------------------- diginetica


def test_diginetica_views_purchases_and_categories(tiny):
    folder = tiny / "diginetica"
    log = read(
        "diginetica",
        [folder / "train-item-views.csv", folder / "train-purchases.csv", folder / "product-categories.csv"],
    )
    df = log.events.collect()
    day = {"2016-05-09": 1462752000, "2016-05-10": 1462838400, "2016-05-11": 1462924800}

    assert _reasons(df) == [None] * 6
    assert _rows(df, "_line", "user", "item", "ts", "behavior") == [
        (2, "1", "10", day["2016-05-09"] + 1, "view"),
        (3, "1", "11", day["2016-05-09"] + 61, "view"),
        (4, "2", "10", day["2016-05-10"] + 0, "view"),
        (5, "2", "12", day["2016-05-10"] + 5, "view"),  # 5500 ms -> 5 s
        (2, "2", "12", day["2016-05-10"] + 9, "purchase"),
        (3, "3", "11", day["2016-05-11"] + 3, "purchase"),
    ]
    assert log.item_fields == ("category",)
    cats = dict(log.item_context.collect().iter_rows())
    assert cats == {"10": ["100"], "11": ["100"], "12": ["200", "201"]}


def test_diginetica_views_alone(tiny):
    log = read("diginetica", [tiny / "diginetica" / "train-item-views.csv"])
    assert log.item_context is None
    assert log.events.collect()["behavior"].to_list() == ["view"] * 4

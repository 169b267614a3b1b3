"""Every reader on its real sample in shared/data. The expected numbers are those stated in each folder's
PROVENANCE.md (counted there with Python's csv module, independently of these readers)."""

from __future__ import annotations

import csv
import datetime as dt

import polars as pl
import pytest

from ssrf.io import read
from ssrf.io.readers import TAOBAO_WINDOW


def _utc_date(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def _behaviour_counts(df: pl.DataFrame) -> dict[str, int]:
    return dict(df.group_by("behavior").len().iter_rows())


# ------------------------------------------------------------------------------------------- taobao


def test_taobao_head100k_matches_provenance(shared_data):
    path = shared_data / "taobao-userbehavior" / "UserBehavior_head100k.csv"
    log = read("taobao", [path])
    df = log.events.collect()

    assert df.height == 100_001
    assert df["_reason"].null_count() == 100_001  # every row has 5 fields and integer ids and timestamps
    assert df["user"].n_unique() == 983
    assert df["item"].n_unique() == 64_467
    assert df["category"].n_unique() == 3_128
    assert _behaviour_counts(df) == {"pv": 89_710, "cart": 5_446, "fav": 2_744, "buy": 2_101}
    assert (_utc_date(df["ts"].min()), _utc_date(df["ts"].max())) == ("2017-09-11", "2017-12-03")
    # "One item has two category ids."
    per_item = df.group_by("item").agg(pl.col("category").n_unique().alias("n"))
    assert per_item.filter(pl.col("n") > 1).height == 1
    # CRLF line endings leave no "\r" in the last column; lines are numbered from 1 (no header)
    assert set(df["behavior"].unique()) == {"pv", "cart", "fav", "buy"}
    assert (df["_line"][0], df["_line"][-1]) == (1, 100_001)
    # users run 1, 100, 1000, ... (the file is sorted by user id as a string)
    assert df["user"].unique(maintain_order=True).head(3).to_list() == ["1", "100", "1000"]
    assert log.window == TAOBAO_WINDOW == (1511539200, 1512316800)
    assert log.context_fields == ("category",)


@pytest.mark.parametrize(
    ("name", "rows", "users", "items", "categories"),
    [
        ("UserBehavior_tail10k.csv", 10_000, 114, 7_623, 1_096),
        ("UserBehavior_timesorted_96k.csv", 96_168, 58_732, 75_384, 3_757),
    ],
)
def test_taobao_other_samples_match_provenance(shared_data, name, rows, users, items, categories):
    df = read("taobao", [shared_data / "taobao-userbehavior" / name]).events.collect()
    assert df.height == rows
    assert df["_reason"].null_count() == rows
    assert df.select(pl.col("user", "item", "category").n_unique()).row(0) == (users, items, categories)


def test_taobao_several_files_are_read_as_one_log(shared_data):
    folder = shared_data / "taobao-userbehavior"
    log = read("taobao", [folder / "UserBehavior_head100k.csv", folder / "UserBehavior_tail10k.csv"])
    df = log.events.collect()
    assert df.height == 110_001
    assert df["user"].n_unique() == 983 + 114  # "The head and tail files share no users."
    assert len(log.paths) == 2


# ------------------------------------------------------------------------------------- retailrocket


def test_retailrocket_sample_events_match_provenance(shared_data):
    folder = shared_data / "retailrocket"
    log = read("retailrocket", [folder / "sample_events.csv", folder / "category_tree.csv"])
    df = log.events.collect()

    assert df.height == 9_385
    assert df["_reason"].null_count() == 9_385
    assert df["user"].n_unique() == 5_000
    assert df["item"].n_unique() == 6_610
    assert _behaviour_counts(df) == {"view": 9_076, "addtocart": 263, "transaction": 46}
    assert (_utc_date(df["ts"].min()), _utc_date(df["ts"].max())) == ("2015-05-03", "2015-09-18")
    per_user = df.group_by("user").len()
    assert per_user["len"].max() == 55
    assert per_user.filter(pl.col("len") >= 3).height == 770
    # the extra `datetime` column the source repo added is ignored; the header is line 1
    assert df.columns == ["_file", "_line", "_reason", "user", "item", "ts", "behavior"]
    assert df["_line"][0] == 2
    # without item_properties there is no item->category map, so the tree alone adds no field
    assert log.context_fields == ()


def test_retailrocket_real_category_tree_gives_parents(shared_data, tmp_path):
    """The three items whose categories PROVENANCE.md cross-checked (188698->1402, 373384->373, 80299->1277)
    get that category on every one of their events, and the parent the real category_tree.csv gives."""
    folder = shared_data / "retailrocket"
    categories = {"188698": "1402", "373384": "373", "80299": "1277"}
    props = tmp_path / "item_properties.csv"
    props.write_text(
        "timestamp,itemid,property,value\n"
        + "".join(f"0,{i},categoryid,{c}\n" for i, c in categories.items())
    )
    with open(folder / "category_tree.csv", newline="") as fh:
        parent = {r["categoryid"]: r["parentid"] or None for r in csv.DictReader(fh)}
    with open(folder / "sample_events.csv", newline="") as fh:
        n_events = sum(1 for r in csv.DictReader(fh) if r["itemid"] in categories)

    log = read("retailrocket", [folder / "sample_events.csv", props, folder / "category_tree.csv"])
    df = log.events.collect()

    assert log.context_fields == ("category", "parent_category")
    assert df.height == 9_385
    known = df.filter(pl.col("item").is_in(list(categories)))
    assert known.height == n_events > 0
    for item, category, parent_category in known.select("item", "category", "parent_category").iter_rows():
        assert category == categories[item]
        assert parent_category == parent[category]
    assert df.filter(~pl.col("item").is_in(list(categories)))["category"].null_count() == 9_385 - n_events


# -------------------------------------------------------------------------------------------- s3rec


def test_s3rec_beauty_matches_provenance(shared_data):
    log = read("s3rec", [shared_data / "beauty" / "Beauty.txt"])
    df = log.events.collect()

    assert df.height == 198_502
    assert df["_reason"].null_count() == 198_502
    assert df["user"].n_unique() == 22_363
    assert df["item"].n_unique() == 12_101
    lengths = df.group_by("user").len()["len"]
    assert lengths.min() == 5
    assert round(lengths.mean(), 2) == 8.88
    # no timestamps: the position in the user's line (0-based) is the time
    assert df.filter(pl.col("user") == "1")["ts"].to_list() == [0, 1, 2, 3, 4]
    assert df.filter(pl.col("user") == "1")["item"].to_list() == ["1", "2", "3", "4", "5"]
    assert df["behavior"].null_count() == 198_502

    assert log.item_fields == ("attributes",)
    assert log.paths[1].endswith("Beauty_item2attributes.json")
    attrs = log.item_context.collect()
    assert attrs.height == 12_101
    assert set(attrs["item"]) == set(df["item"].unique())  # all items have attributes
    assert attrs["attributes"].explode().n_unique() == 637
    assert attrs.filter(pl.col("item") == "4")["attributes"].to_list() == [["1", "2", "3"]]


# --------------------------------------------------------------------------------------- diginetica


def test_diginetica_files_match_provenance(shared_data):
    folder = shared_data / "diginetica"
    views, purchases = folder / "sample_train-item-views.csv", folder / "train-purchases.csv"
    log = read("diginetica", [views, purchases, folder / "product-categories.csv"])
    df = log.events.collect().with_columns(pl.col("_file").cast(pl.String))

    assert df["_reason"].null_count() == df.height == 12_391 + 18_025
    by_file = {
        f: row
        for f, *row in df.group_by("_file")
        .agg(pl.len(), pl.col("user").n_unique(), pl.col("item").n_unique(), pl.col("behavior").unique())
        .iter_rows()
    }
    # rows, sessions (the sequence unit), items, behaviour
    assert by_file[str(views)] == [12_391, 2_986, 7_139, ["view"]]
    assert by_file[str(purchases)] == [18_025, 12_630, 11_244, ["purchase"]]
    view_rows = df.filter(pl.col("_file") == str(views))
    assert view_rows.group_by("user").len().filter(pl.col("len") >= 2).height == 2_053
    # time = eventdate (2016-01-03..2016-06-01 in the views) + timeframe (ms, under a day there)
    assert (_utc_date(view_rows["ts"].min()), _utc_date(view_rows["ts"].max())) == (
        "2016-01-03",
        "2016-06-01",
    )
    first = view_rows.row(0, named=True)  # 1;NA;81766;526309;2016-05-09
    assert (first["user"], first["item"], first["ts"]) == ("1", "81766", 1462752000 + 526)

    cats = log.item_context.collect()
    assert log.item_fields == ("category",)
    assert cats.height == 184_047
    assert cats["category"].explode().n_unique() == 1_217
    # "100% of its items have a category" (views), and all purchase items too
    assert set(df["item"].unique()) <= set(cats["item"])
    assert (
        view_rows.join(cats, on="item", how="inner").select(pl.col("category").explode().n_unique()).item()
        == 560
    )

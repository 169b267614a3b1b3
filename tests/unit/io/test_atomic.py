"""RecBole atomic files (`--format atomic`): the reader on hand-made `.inter`/`.item` files, its one-line
errors, and Amazon Beauty converted by benchmarks/beauty_to_atomic.py preparing exactly as through
`--format s3rec`.

How the expected values of tests/fixtures/tiny/atomic were worked out is in that folder's README.md."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from ssrf import pipeline
from ssrf.cli import app
from ssrf.core import DataError
from ssrf.dataset.prepare import PrepareConfig
from ssrf.io import read
from ssrf.io.readers import read_atomic

ROOT = Path(__file__).resolve().parents[3]
NO_FILTER = {"min_user_events": 1, "min_item_events": 1}


def _converter():
    """benchmarks/beauty_to_atomic.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "beauty_to_atomic", ROOT / "benchmarks" / "beauty_to_atomic.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _table_one(data) -> dict:
    return {k: data.meta[k] for k in ("stats", "dropped", "split_info", "split", "fields")}


# ----------------------------------------------------------------------------------------- reading


def test_tiny_inter_rows_reasons_and_item_fields(tiny):
    folder = tiny / "atomic"
    log = read("atomic", [folder / "Tiny.inter"])
    df = log.events.collect()

    assert log.format == "atomic" and not log.ordinal_time and log.behaviors is None and log.window is None
    assert log.paths == (str(folder / "Tiny.inter"), str(folder / "Tiny.item"))  # the .item found beside
    assert df.columns == ["_file", "_line", "_reason", "user", "item", "ts", "behavior"]
    assert df["_line"].to_list() == list(range(2, 15))  # header on line 1
    assert df.select("_reason", "user", "item", "ts", "behavior").rows() == [
        (None, "u1", "i1", 1600000000, "view"),
        (None, "u1", "i2", 1600000100, "buy"),  # 1600000100.7 floored
        (None, "u2", "i1", 1600000050, "view"),
        (None, "u2", "i3", 1600000200, "cart"),  # an empty rating: rating is not read
        (None, "u1", "i1", 1600000000, "view"),  # repeats line 2: for the cleaning step to count
        ("bad_timestamp", "u3", "i2", None, "view"),  # "soon"
        ("bad_id", "u3", None, 1600000300, "view"),  # an empty item_id
        ("wrong_column_count", "u3", "i2", 1600000300, None),  # 4 fields
        ("wrong_column_count", "u3", "i2", 1600000300, "view"),  # 6 fields
        ("wrong_column_count", None, None, None, None),  # a blank line
        ("bad_timestamp", "u3", "i2", -5, "view"),  # before 1970
        (None, "u3", "i3", 1000000000, "view"),  # " u3 " stripped; 1e9 parses
        (None, "u1", "i3", 1600000400, "view"),
    ]
    assert log.item_fields == ("categories", "brand")  # price:float is not read
    assert log.item_context.collect().rows() == [
        ("i1", ["Makeup", "Face"], ["Acme"]),
        ("i2", ["Skin"], []),  # a blank token: no value
        ("i3", [], ["Bolt"]),  # an empty token_seq: none
        ("i9", ["Hair", "Skin"], ["Acme"]),  # two spaces between values: no empty value
    ]


def test_without_timestamp_the_file_order_is_the_time(tiny):
    log = read("atomic", [tiny / "atomic" / "Order.inter"])
    df = log.events.collect()
    assert log.ordinal_time and log.item_context is None and len(log.paths) == 1
    # each event's time is its position among its own user's lines
    assert df.select("_line", "user", "item", "ts").rows() == [
        (2, "a", "x", 0),
        (3, "b", "y", 0),
        (4, "a", "y", 1),
        (5, "a", "z", 2),
        (6, "b", "x", 1),
    ]
    assert df["behavior"].null_count() == 5


def test_item_file_given_second_and_gzipped_files(tiny, tmp_path):
    folder = tiny / "atomic"
    plain = read("atomic", [folder / "Tiny.inter"])
    given = read("atomic", [folder / "Tiny.item", folder / "Tiny.inter"])  # either order
    assert given.paths == plain.paths
    for name in ("Tiny.inter", "Tiny.item"):
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress((folder / name).read_bytes()))
    packed = read("atomic", [tmp_path / "Tiny.inter.gz"])  # finds Tiny.item.gz beside it
    assert packed.paths == (str(tmp_path / "Tiny.inter.gz"), str(tmp_path / "Tiny.item.gz"))
    assert packed.events.collect().drop("_file").equals(plain.events.collect().drop("_file"))
    assert packed.item_context.collect().equals(plain.item_context.collect())


def test_behaviour_field_by_name_or_by_option(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\tevent:token"
    path = _write(tmp_path / "b.inter", header, "1\t2\t5\tclick", "1\t3\t4.0\tbuy")
    log = read("atomic", [path])
    assert log.events.collect()["behavior"].to_list() == ["click", "buy"] and log.reader_options is None
    rated = read_atomic([path], behavior="rating")  # the rating as written, as the behaviour type
    assert rated.events.collect()["behavior"].to_list() == ["5", "4.0"]
    assert json.loads(rated.reader_options) == {"behavior": "rating"}  # so the cache tells them apart
    with pytest.raises(DataError, match=r"missing field\(s\) stars; the header has user_id:token"):
        read_atomic([path], behavior="stars")


def test_float_behaviour_named_event_is_not_taken(tmp_path):
    path = _write(tmp_path / "f.inter", "user_id:token\titem_id:token\tevent:float", "1\t2\t0.5")
    assert read("atomic", [path]).events.collect()["behavior"].to_list() == [None]


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("user_id\titem_id:token", "(column 1): header field 'user_id' is not name:type"),
        (
            "user_id:token\titem_id:int",
            "(column 2): field item_id has unknown type 'int'; expected one of "
            "token, token_seq, float, float_seq",
        ),
        ("user_id:token\titem_id:token\tuser_id:token", "(column 3): field user_id appears twice"),
        (
            "user_id:token\trating:float",
            ": missing field(s) item_id; the header has user_id:token, rating:float",
        ),
        ("user_id:float\titem_id:token", "(column 1): field user_id must be of type token, not float"),
        (
            "user_id:token\titem_id:token_seq",
            "(column 2): field item_id must be of type token, not token_seq",
        ),
        (
            "user_id:token\titem_id:token\ttimestamp:token",
            "(column 3): field timestamp must be of type float",
        ),
    ],
)
def test_bad_inter_header_is_one_line_naming_file_line_and_field(tmp_path, header, message):
    path = _write(tmp_path / "x.inter", header, "1\t2\t3")
    with pytest.raises(DataError) as err:
        read("atomic", [path])
    assert str(err.value).startswith(f"{path}:1 {message}".replace(":1 :", ":1:"))
    assert (err.value.path, err.value.line) == (str(path), 1)


@pytest.mark.parametrize(
    ("lines", "where", "message"),
    [
        (["i1\ta b", "i2"], 3, "1 tab-separated field, the header has 2"),
        (["i1\ta b\tc"], 2, "3 tab-separated fields, the header has 2"),
        (["i1\ta", "\tb"], 3, "empty item_id"),
        (["i1\ta\x1fb"], 2, "cannot split the line: it holds the control character \\x1f"),
    ],
)
def test_bad_item_line_is_a_data_error(tmp_path, lines, where, message):
    inter = _write(tmp_path / "x.inter", "user_id:token\titem_id:token", "1\ti1")
    item = _write(tmp_path / "x.item", "item_id:token\tcats:token_seq", *lines)
    with pytest.raises(DataError) as err:
        read("atomic", [inter])
    assert str(err.value) == f"{item}:{where}: {message}"


def test_bad_item_header(tmp_path):
    inter = _write(tmp_path / "x.inter", "user_id:token\titem_id:token", "1\ti1")
    item = _write(tmp_path / "x.item", "id:token\tcats:token_seq", "i1\ta")
    with pytest.raises(DataError, match=r"missing field\(s\) item_id; the header has id:token") as err:
        read("atomic", [inter])
    assert err.value.path == str(item)
    _write(item, "item_id:token\titem:token", "i1\ta")
    with pytest.raises(DataError, match="a field may not be named 'item'"):
        read("atomic", [inter])


def test_item_file_of_floats_only_gives_no_fields_and_blank_lines_are_skipped(tmp_path):
    inter = _write(tmp_path / "x.inter", "user_id:token\titem_id:token", "1\ti1")
    _write(tmp_path / "x.item", "item_id:token\tprice:float", "i1\t2.5", "", "i2\t")
    log = read("atomic", [inter])
    assert log.item_context is None and log.item_fields == () and len(log.paths) == 2


def test_an_item_on_two_lines_gets_the_values_of_both(tmp_path):
    inter = _write(tmp_path / "x.inter", "user_id:token\titem_id:token", "1\ti1", "1\ti2", "1\ti1")
    _write(tmp_path / "x.item", "item_id:token\tcats:token_seq", "i1\ta b", "i2\tc", "i1\tb d")
    data = pipeline.prepare([inter], "atomic", PrepareConfig(split="loo", **NO_FILTER), root=tmp_path / "c")
    cats = data.vocabs["field:cats"].raw
    assert [[cats[v] for v in vs] for vs in data.items["cats"].to_list()] == [["a", "b", "d"], ["c"]]


def test_which_files(tiny, tmp_path):
    folder = tiny / "atomic"
    for paths in (
        [folder / "Tiny.inter", folder / "Order.inter"],
        [folder / "Tiny.item"],
        [folder / "Tiny.inter", folder / "Tiny.item", folder / "Tiny.item"],
    ):
        with pytest.raises(
            DataError, match=r"atomic takes one <name>\.inter, and optionally its <name>\.item"
        ):
            read("atomic", paths)


# ----------------------------------------------------------------------------------------- preparing


def test_tiny_prepared_counts_and_strict(tiny, tmp_path):
    cfg = PrepareConfig(split="loo", **NO_FILTER)
    data = pipeline.prepare([tiny / "atomic" / "Tiny.inter"], "atomic", cfg, root=tmp_path)
    dropped = {k: v for k, v in data.meta["dropped"].items() if v}
    assert dropped == {"wrong_column_count": 3, "bad_id": 1, "bad_timestamp": 2, "duplicate": 1}
    assert data.meta["rows_read"] == 13 and data.meta["fields"] == ["categories", "brand"]
    stats = data.meta["stats"]
    assert (stats["users"], stats["items"], stats["events"]) == (3, 3, 6)
    assert stats["context_fields"] == {"categories": 3, "brand": 2}  # i9 has no event, so no Hair
    assert stats["behavior_mix"] == {"buy": 1, "cart": 1, "view": 4}
    with pytest.raises(DataError) as err:  # the first dirty row, by line
        pipeline.prepare(
            [tiny / "atomic" / "Tiny.inter"], "atomic", PrepareConfig(strict=True, **NO_FILTER), root=tmp_path
        )
    assert str(err.value) == f"{tiny / 'atomic' / 'Tiny.inter'}:6: duplicate (--strict)"


def test_data_stats_on_the_command_line(tiny, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "data",
            "stats",
            str(tiny / "atomic" / "Tiny.inter"),
            "--format",
            "atomic",
            "--split",
            "loo",
            "--min-user-events",
            "1",
            "--min-item-events",
            "1",
            "--cache-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("dataset: atomic")
    assert "context fields: categories (3 values), brand (2 values)" in result.stdout


def _both(txt: Path, tmp_path: Path, cfg: PrepareConfig):
    """`txt` prepared through --format s3rec, and through --format atomic after conversion."""
    figures = _converter().convert(txt, tmp_path / "atomic")
    s3rec = pipeline.prepare([txt], "s3rec", cfg, root=tmp_path / "s3rec-cache")
    atomic = pipeline.prepare([figures["inter"]], "atomic", cfg, root=tmp_path / "atomic-cache")
    return figures, s3rec, atomic


def _same_dataset(s3rec, atomic) -> None:
    """Same Table I, same events (ids, times, splits), same item fields and vocabularies. (The time span is
    left to test_no_timestamp_prepares_like_s3rec: the positions print as dates until the statistics know
    a log has ordinal time.)"""
    one, two = _table_one(s3rec), _table_one(atomic)
    for table in (one, two):
        del table["stats"]["time_start"], table["stats"]["time_end"]
    assert one == two
    assert s3rec.events.equals(atomic.events) and s3rec.items.equals(atomic.items)
    assert s3rec.vocabs == atomic.vocabs


def test_tiny_s3rec_converted_prepares_the_same(tiny, tmp_path):
    _, s3rec, atomic = _both(tiny / "s3rec" / "Tiny.txt", tmp_path, PrepareConfig(split="loo", **NO_FILTER))
    _same_dataset(s3rec, atomic)


def test_no_timestamp_prepares_like_s3rec(tiny, tmp_path):
    """With the default options (split "auto"), an atomic file without timestamps is split leave-one-out
    as S3-Rec's files are, and its time span shows positions, not 1970 dates."""
    _, s3rec, atomic = _both(tiny / "s3rec" / "Tiny.txt", tmp_path, PrepareConfig(**NO_FILTER))
    assert atomic.meta["split"] == "loo"
    assert _table_one(s3rec) == _table_one(atomic)


def test_beauty_through_atomic_has_the_same_table_one(shared_data, tmp_path):
    txt = shared_data / "beauty" / "Beauty.txt"
    figures, s3rec, atomic = _both(txt, tmp_path, PrepareConfig(split="loo"))
    assert (figures["rows"], figures["users"], figures["items"], figures["attributes"]) == (
        198502,
        22363,
        12101,
        637,
    )
    _same_dataset(s3rec, atomic)
    assert atomic.meta["stats"]["context_fields"] == {"attributes": 637}
    assert atomic.meta["split_info"] == {
        "test_users": 22363,
        "train_events": 153776,
        "valid_events": 22363,
        "test_events": 22363,
    }


def test_converter_without_attributes(tmp_path):
    txt = _write(tmp_path / "Toy.txt", "1 2 3", "2 3 4 5")
    figures = _converter().convert(txt, tmp_path / "out")
    assert figures["item"] is None and not (tmp_path / "out" / "Toy.item").exists()
    assert (tmp_path / "out" / "Toy.inter").read_text() == (
        "user_id:token\titem_id:token\n1\t2\n1\t3\n2\t3\n2\t4\n2\t5\n"
    )
    assert pl.read_csv(figures["inter"], separator="\t").height == 5

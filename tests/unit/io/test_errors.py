"""Readers reject unusable input with a DataError that names the file (and line/column where it applies)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from ssrf.cli import app
from ssrf.core import DataError
from ssrf.dataset.artifacts import prepare_dataset, statistics
from ssrf.dataset.prepare import PrepareConfig
from ssrf.io import FORMATS, GenericMapping, read

MAPPING = GenericMapping(user="u", item="i", timestamp="t")


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_file(tmp_path, fmt):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError) as err:
        read(fmt, [path], MAPPING)
    assert str(err.value) == f"{path}: file not found"
    assert err.value.path == str(path) and err.value.line is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_file(tmp_path, fmt):
    path = tmp_path / "empty.csv"
    path.touch()
    with pytest.raises(DataError) as err:
        read(fmt, [path], MAPPING)
    assert str(err.value) == f"{path}: empty file"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a directory, expected a file"):
        read("taobao", [tmp_path])


def test_retailrocket_missing_column_names_header_line(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("timestamp,visitorid,event,item\n1,2,view,3\n")
    with pytest.raises(DataError) as err:
        read("retailrocket", [path])
    assert err.value.line == 1
    assert (
        str(err.value)
        == f"{path}:1: missing column(s) itemid; the header has timestamp, visitorid, event, item"
    )


def test_retailrocket_properties_missing_column(tiny, tmp_path):
    props = tmp_path / "item_properties.csv"
    props.write_text("timestamp,itemid,value\n1,2,3\n")
    with pytest.raises(DataError, match=r"missing column\(s\) property") as err:
        read("retailrocket", [tiny / "retailrocket" / "events.csv", props])
    assert err.value.path == str(props)


def test_retailrocket_needs_exactly_one_events_file(tiny):
    events = tiny / "retailrocket" / "events.csv"
    with pytest.raises(DataError, match="exactly one events file, got 2"):
        read("retailrocket", [events, events])
    with pytest.raises(DataError, match="exactly one events file, got 0"):
        read("retailrocket", [tiny / "retailrocket" / "category_tree.csv"])


def test_diginetica_needs_an_event_file(tiny):
    with pytest.raises(DataError, match="needs a train-item-views or train-purchases file"):
        read("diginetica", [tiny / "diginetica" / "product-categories.csv"])


def test_diginetica_missing_column(tmp_path):
    path = tmp_path / "train-item-views.csv"
    path.write_text("session_id;user_id;item_id;eventdate\n1;NA;2;2016-01-01\n")
    with pytest.raises(DataError, match=r"missing column\(s\) timeframe") as err:
        read("diginetica", [path])
    assert (err.value.path, err.value.line) == (str(path), 1)


def _s3rec_with_json(tmp_path, text: str):
    (tmp_path / "Toy.txt").write_text("1 2 3\n")
    (tmp_path / "Toy_item2attributes.json").write_text(text)
    return tmp_path / "Toy.txt"


def test_malformed_item2attributes_json_names_line_and_column(tmp_path):
    path = _s3rec_with_json(tmp_path, '{"1": [1, 2],\n "2": [3,, 4]}\n')
    with pytest.raises(DataError) as err:
        read("s3rec", [path])
    json_path = tmp_path / "Toy_item2attributes.json"
    assert (err.value.path, err.value.line, err.value.column) == (
        str(json_path),
        2,
        "10",
    )  # the second comma of ` "2": [3,, 4]}`
    assert str(err.value) == f"{json_path}:2 (column 10): malformed JSON: Expecting value"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a JSON object"),
        ('{"1": 5}', "item '1': expected a list of attribute ids, got 5"),
        ('{"1": [1, {"a": 2}]}', "item '1': expected a list of attribute ids"),
    ],
)
def test_item2attributes_of_the_wrong_shape(tmp_path, text, message):
    path = _s3rec_with_json(tmp_path, text)
    with pytest.raises(DataError, match=message) as err:
        read("s3rec", [path])
    assert err.value.path == str(tmp_path / "Toy_item2attributes.json")


def test_dispatch_errors(tiny, tmp_path):
    with pytest.raises(DataError, match="no input file given"):
        read("taobao", [])
    with pytest.raises(DataError, match="unknown format 'csv'; choose one of taobao, retailrocket, s3rec"):
        read("csv", [tiny / "taobao.csv"])
    with pytest.raises(DataError, match="the generic format needs a column mapping"):
        read("generic", [tiny / "generic.csv"])
    with pytest.raises(DataError, match="the generic format takes one file"):
        read("generic", [tiny / "generic.csv", tiny / "kcore.csv"], MAPPING)
    with pytest.raises(DataError, match="s3rec takes one"):
        read("s3rec", [tiny / "s3rec" / "Tiny.txt", tiny / "s3rec" / "Tiny.txt"])
    blank = tmp_path / "blank.csv"
    blank.write_text("\n1,2,3\n")
    with pytest.raises(DataError, match="empty header line") as err:
        read("generic", [blank], MAPPING)
    assert err.value.line == 1


# ------------------------------------------------------------------------------------ compressed input

GZ_INPUTS = {  # one tiny input per format, with the mapping the generic one needs
    "taobao": ("taobao.csv", None),
    "retailrocket": ("retailrocket/events.csv", None),
    "diginetica": ("diginetica/train-item-views.csv", None),
    "generic": ("generic.csv", GenericMapping(user="uid", item="sku", timestamp="when", ts_unit="ms")),
    "s3rec": ("s3rec/Tiny.txt", None),
    "atomic": ("atomic/Tiny.inter", None),
}


def _gz(tiny, tmp_path, fmt: str) -> tuple[Path, bytes]:
    """Where a gzipped copy of the format's tiny input goes (its name + .gz), and that copy's bytes."""
    name, _ = GZ_INPUTS[fmt]
    source = tiny / name
    besides = [*source.parent.glob(f"{source.stem}_*.json"), *source.parent.glob(f"{source.stem}.item")]
    for beside in besides:  # S3-Rec's attributes file, an atomic .inter's .item file
        shutil.copy(beside, tmp_path / beside.name)
    return tmp_path / f"{source.name}.gz", gzip.compress(source.read_bytes())


@pytest.mark.parametrize("fmt", FORMATS)
def test_gzipped_input_reads_like_the_plain_file(tiny, tmp_path, fmt):
    path, data = _gz(tiny, tmp_path, fmt)
    path.write_bytes(data)
    name, mapping = GZ_INPUTS[fmt]
    plain, packed = read(fmt, [tiny / name], mapping), read(fmt, [path], mapping)
    assert packed.events.collect().drop("_file").equals(plain.events.collect().drop("_file"))
    assert len(packed.paths) == len(plain.paths)  # (S3-Rec: Tiny_item2attributes.json found beside it)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_gzip_names_the_file(tiny, tmp_path, fmt):
    path, data = _gz(tiny, tmp_path, fmt)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        read(fmt, [path], GZ_INPUTS[fmt][1])
    assert str(err.value) == (
        f"{path}: truncated gzip: the compressed data ends before its end-of-stream marker "
        "(an incomplete download or copy?)"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_plain_text_named_gz_names_the_file(tiny, tmp_path, fmt):
    path, _ = _gz(tiny, tmp_path, fmt)
    path.write_bytes((tiny / GZ_INPUTS[fmt][0]).read_bytes())
    with pytest.raises(DataError, match=r"not a gzip file, though its name ends in \.gz \(it starts with b'"):
        read(fmt, [path], GZ_INPUTS[fmt][1])
    with pytest.raises(DataError) as err:
        read(fmt, [path], GZ_INPUTS[fmt][1])
    assert err.value.path == str(path)


def test_corrupt_gzip_names_the_file(tiny, tmp_path):
    path, data = _gz(tiny, tmp_path, "taobao")
    path.write_bytes(data[:-8] + bytes(8))  # the trailer's checksum and length zeroed
    with pytest.raises(DataError, match=r"corrupt gzip: CRC check failed") as err:
        read("taobao", [path])
    assert err.value.path == str(path)


def test_bad_gzip_through_the_cli_is_one_line_naming_the_file(tiny, tmp_path):
    """A truncated archive used to end in click's bare `Aborted.` (exit 1): gzip raised EOFError, which
    click takes for the end of interactive input."""
    path, data = _gz(tiny, tmp_path, "taobao")
    runner = CliRunner()
    for content, message in ((data[: len(data) // 2], "truncated gzip: "), (b"1,2,3\n", "not a gzip file")):
        path.write_bytes(content)
        cache = tmp_path / "cache"
        result = runner.invoke(
            app, ["data", "prepare", str(path), "--format", "taobao", "--cache-dir", str(cache)]
        )
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {path}: {message}") and result.stderr.count("\n") == 1
        assert not cache.exists()


# ------------------------------------------------------------------------------------------- timestamps


def _generic(tmp_path, times: list[str], unit: str = "s") -> tuple[Path, GenericMapping]:
    path = tmp_path / "log.csv"
    path.write_text("u,i,t\n" + "".join(f"u{n % 2},i{n % 3},{t}\n" for n, t in enumerate(times)))
    return path, GenericMapping(user="u", item="i", timestamp="t", ts_unit=unit)


def test_timestamps_outside_1970_to_2100_are_bad_timestamps(tmp_path):
    times = ["-1000000000000", "-1", "0", "4102444799", "4102444800", "1600000000000", "99999999999999999999"]
    path, mapping = _generic(tmp_path, times)
    df = read("generic", [path], mapping).events.collect()
    bad = "bad_timestamp"
    assert df["_reason"].to_list() == [bad, bad, None, None, bad, bad, bad]  # (ms read as seconds: bad)
    # the Taobao reader checks the same range before its window
    taobao = tmp_path / "taobao.csv"
    taobao.write_text("1,10,100,pv,-1000000000000\n1,10,100,pv,1511539200\n")
    assert read("taobao", [taobao]).events.collect()["_reason"].to_list() == [bad, None]


def test_far_out_timestamps_are_counted_not_a_traceback(tmp_path):
    """A date-time that Python cannot show (year -29719) used to crash the statistics."""
    path, mapping = _generic(tmp_path, ["-1000000000000"] * 2 + [str(1600000000 + n) for n in range(6)])
    cfg = PrepareConfig(split="loo", min_user_events=1, min_item_events=1)
    data = prepare_dataset(read("generic", [path], mapping), cfg, root=tmp_path / "cache")
    assert data.meta["dropped"]["bad_timestamp"] == 2 and data.meta["rows_read"] == 8
    assert data.meta["stats"]["time_start"] == "2020-09-13 12:26:40+00:00"
    # and a prepared frame holding such a time (an older folder) prints it as a number
    stats = statistics(
        data.events.with_columns(pl.lit(-(10**12)).alias("ts")), data.items, {"behavior": ["x"]}, data.meta
    )
    assert stats["time_start"] == stats["time_end"] == "-1000000000000"


def test_decimal_epoch_times_are_floored_to_whole_seconds(tmp_path):
    path, mapping = _generic(
        tmp_path, ["1600000000.5", "1600000000.9", " 1600000001.0 ", "-0.5", "nan", "inf"]
    )
    df = read("generic", [path], mapping).events.collect()
    assert df["ts"].to_list()[:4] == [1600000000, 1600000000, 1600000001, -1]
    assert df["_reason"].to_list() == [None, None, None, *["bad_timestamp"] * 3]
    path, mapping = _generic(tmp_path, ["1600000000999.9", "1600000001000"], unit="ms")
    assert read("generic", [path], mapping).events.collect()["ts"].to_list() == [1600000000, 1600000001]
    taobao = tmp_path / "taobao.csv"
    taobao.write_text("1,10,100,pv,1511539200.75\n")
    assert read("taobao", [taobao]).events.collect()["ts"].to_list() == [1511539200]


# --------------------------------------------------------------------------------- nothing left to keep


def test_nothing_left_says_how_many_rows_were_read_and_why_they_went(tmp_path):
    path, mapping = _generic(tmp_path, ["2020/13/45 25:61"] * 1000)
    log = read("generic", [path], mapping)
    with pytest.raises(DataError) as err:
        prepare_dataset(log, PrepareConfig(), root=tmp_path / "cache")
    assert str(err.value) == (
        f"{path}: no events left after cleaning and k-core filtering (min 5 per user, 5 per item): "
        "of 1,000 rows read, cleaning dropped 1,000 (bad_timestamp 1,000)"
    )


def test_nothing_left_after_k_core_counts_each_step(tiny, tmp_path):
    path = tiny / "taobao.csv"
    # (temporal: k-core sees the training period; later events of the users it dropped go as unseen)
    for split, k_core in (
        ("loo", "8"),
        ("temporal", "4; the validation and test periods dropped 4 (unseen_user 4)"),
    ):
        with pytest.raises(DataError) as err:
            prepare_dataset(read("taobao", [path]), PrepareConfig(split=split), root=tmp_path / "cache")
        assert str(err.value) == (
            f"{path}: no events left after cleaning and k-core filtering (min 5 per user, 5 per item): "
            "of 16 rows read, cleaning dropped 8 (wrong_column_count 2, bad_id 1, bad_timestamp 1, "
            f"unknown_behavior 1, out_of_window 2, duplicate 1); k-core filtering dropped {k_core}"
        )

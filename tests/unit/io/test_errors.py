"""Readers reject unusable input with a DataError that names the file (and line/column where it applies)."""

from __future__ import annotations

import pytest

from ssrf.core import DataError
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

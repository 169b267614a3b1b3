"""Prepared folders: keyed by inputs and options, reused when they match, written whole or not at all."""

from __future__ import annotations

import csv
import json
import re
import shutil

import polars as pl
import pytest

from ssrf.core import DataError
from ssrf.dataset.artifacts import Prepared, artifact_key, prepare_dataset
from ssrf.dataset.prepare import PrepareConfig
from ssrf.io import GenericMapping, read

FILES = {"interactions.parquet", "items.parquet", "meta.json", "vocab.json"}
LOO = PrepareConfig(split="loo", min_user_events=1, min_item_events=1)


@pytest.fixture
def taobao(tiny, tmp_path):
    """A private copy of the tiny Taobao file, so a test may change it."""
    path = tmp_path / "in" / "taobao.csv"
    path.parent.mkdir()
    shutil.copy(tiny / "taobao.csv", path)
    return path


def _stamp(folder):
    """Identity of a folder and its files: a rewrite (even with the same bytes) changes it."""
    return folder.stat().st_ino, {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}


def test_folder_layout_and_meta(taobao, tmp_path):
    root = tmp_path / "cache"
    data = prepare_dataset(read("taobao", [taobao]), LOO, root=root)

    assert data.path.parent == root
    assert data.path.name == f"taobao-{artifact_key(read('taobao', [taobao]), LOO)}"
    assert {f.name for f in data.path.iterdir()} == FILES
    assert [p.name for p in root.iterdir()] == [data.path.name]  # no temporary folder left behind
    assert data.events.schema == pl.Schema(
        {"user": pl.Int32, "item": pl.Int32, "ts": pl.Int64, "behavior": pl.Int8, "split": pl.Int8}
    )
    assert data.items.schema == pl.Schema({"item": pl.Int32, "category": pl.List(pl.Int32)})
    meta = json.loads((data.path / "meta.json").read_text())
    assert meta == data.meta
    assert meta["format"] == "taobao" and meta["inputs"] == [str(taobao)] and meta["key"] == data.path.name
    assert meta["options"]["split"] == "loo" and meta["fields"] == ["category"] and meta["has_behavior"]
    assert (data.n_users, data.n_items, data.fields) == (2, 3, ["category"])
    stats = meta["stats"]
    assert (stats["users"], stats["items"], stats["events"]) == (2, 3, 8)
    assert (stats["actions_per_user"], stats["actions_per_item"]) == (4.0, 2.67)
    assert stats["behavior_mix"] == {"pv": 4, "fav": 1, "cart": 2, "buy": 1}
    assert stats["time_start"] == "2017-11-24 16:00:00+00:00"  # W0 = 2017-11-25 00:00 in UTC+8


def test_vocab_pad_and_raw_ids_round_trip(taobao, tmp_path):
    data = prepare_dataset(read("taobao", [taobao]), LOO, root=tmp_path / "cache")
    raw = json.loads((data.path / "vocab.json").read_text())
    assert set(raw) == {"user", "item", "behavior", "field:category"}
    assert all(v[0] == "<pad>" for v in raw.values())
    assert all(len(set(v)) == len(v) for v in raw.values())

    # the kept input rows (lines 1-8 of the fixture), read back through the vocabularies
    with open(taobao, newline="") as fh:
        rows = list(csv.reader(fh))[:8]
    expected = sorted((u, i, int(t), b) for u, i, _, b, t in rows)
    decoded = sorted(
        zip(
            data.vocabs["user"].decode(data.events["user"]),
            data.vocabs["item"].decode(data.events["item"]),
            data.events["ts"].to_list(),
            data.vocabs["behavior"].decode(data.events["behavior"]),
            strict=True,
        )
    )
    assert decoded == expected
    assert data.vocabs["user"].lookup(["1", "2", "3"]) == [1, 2, None]  # user 3 had no clean row


def test_rerun_reuses_the_folder_without_rewriting(taobao, tmp_path):
    root = tmp_path / "cache"
    first = prepare_dataset(read("taobao", [taobao]), LOO, root=root)
    before = _stamp(first.path)
    again = prepare_dataset(read("taobao", [taobao]), LOO, root=root)
    assert again.path == first.path
    assert _stamp(again.path) == before
    assert again.events.equals(first.events) and again.meta == first.meta
    # strict is not part of the key: a clean input under --strict reuses the lenient build
    clean = taobao.with_name("clean.csv")
    clean.write_text("".join(taobao.read_text().splitlines(keepends=True)[:8]))
    lenient = prepare_dataset(read("taobao", [clean]), LOO, root=root)
    strict = prepare_dataset(
        read("taobao", [clean]),
        PrepareConfig(split="loo", min_user_events=1, min_item_events=1, strict=True),
        root=root,
    )
    assert strict.path == lenient.path


def test_strict_still_rejects_a_dirty_input_that_was_cached_leniently(taobao, tmp_path):
    root = tmp_path / "cache"
    prepare_dataset(read("taobao", [taobao]), LOO, root=root)
    strict = PrepareConfig(split="loo", min_user_events=1, min_item_events=1, strict=True)
    with pytest.raises(DataError, match=r"taobao\.csv:9: out of window \(--strict\)"):
        prepare_dataset(read("taobao", [taobao]), strict, root=root)


def test_force_rebuilds_in_place(taobao, tmp_path):
    root = tmp_path / "cache"
    first = prepare_dataset(read("taobao", [taobao]), LOO, root=root)
    before = _stamp(first.path)
    forced = prepare_dataset(read("taobao", [taobao]), LOO, root=root, force=True)
    assert forced.path == first.path
    assert _stamp(forced.path) != before
    assert forced.events.equals(first.events)
    assert [p.name for p in root.iterdir()] == [first.path.name]  # the old copy is gone


def test_changed_input_or_option_gives_another_folder(taobao, tmp_path):
    root = tmp_path / "cache"
    base = prepare_dataset(read("taobao", [taobao]), LOO, root=root).path
    paths = {base}
    for cfg in (
        PrepareConfig(split="temporal", min_user_events=1, min_item_events=1),
        PrepareConfig(split="loo", min_user_events=2, min_item_events=1),
        PrepareConfig(split="loo", min_user_events=1, min_item_events=1, sample_users=1, seed=0),
        PrepareConfig(split="loo", min_user_events=1, min_item_events=1, sample_users=1, seed=1),
        PrepareConfig(split="loo", min_user_events=1, min_item_events=1, window=(0, 1512316800)),
    ):
        paths.add(artifact_key(read("taobao", [taobao]), cfg))
    assert len(paths) == 6

    # the same file name, one byte different
    taobao.write_text(taobao.read_text().replace("1,10,100,pv,1511539200", "1,10,100,pv,1511539201"))
    changed = prepare_dataset(read("taobao", [taobao]), LOO, root=root)
    assert changed.path != base and base.is_dir()
    assert changed.events["ts"].min() == 1511539201


def test_same_bytes_elsewhere_share_a_key(taobao, tiny):
    assert artifact_key(read("taobao", [taobao]), LOO) == artifact_key(
        read("taobao", [tiny / "taobao.csv"]), LOO
    )


def test_generic_mapping_is_part_of_the_key(tiny, tmp_path):
    """The same file read through another column mapping is another dataset."""
    path = tiny / "generic.csv"
    root = tmp_path / "cache"
    cfg = PrepareConfig(split="loo", min_user_events=1, min_item_events=1)
    plain = GenericMapping(user="uid", item="sku", timestamp="when", ts_unit="ms")
    swapped = GenericMapping(user="sku", item="uid", timestamp="when", ts_unit="ms")
    with_behaviour = GenericMapping(user="uid", item="sku", timestamp="when", ts_unit="ms", behavior="action")
    built = [
        prepare_dataset(read("generic", [path], m), cfg, root=root) for m in (plain, swapped, with_behaviour)
    ]
    assert len({b.path for b in built}) == 3
    assert built[0].vocabs["user"].raw == ("<pad>", "bob", "alice", "carol")
    assert built[1].vocabs["user"].raw == ("<pad>", "fig", "pear", "apple")
    assert built[2].vocabs["behavior"].raw == ("<pad>", "buy", "click")
    assert built[0].vocabs["behavior"].raw == ("<pad>", "interaction") and not built[0].meta["has_behavior"]


def test_failed_prepare_leaves_no_folder(tmp_path):
    root = tmp_path / "cache"
    path = tmp_path / "split.csv"
    # temporal cut at ts[7] = 8: a's events all come before it, b's all after, so no user has both
    path.write_text(
        "user,item,ts\n" + "".join(f"a,x{t},{t}\n" for t in range(1, 8)) + "b,y,8\nb,y,9\nb,z,10\n"
    )
    log = read("generic", [path], GenericMapping(user="user", item="item", timestamp="ts"))
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: the temporal split leaves no test users"):
        prepare_dataset(log, PrepareConfig(min_user_events=1, min_item_events=1), root=root)
    assert not root.exists() or list(root.iterdir()) == []


def test_load_rejects_a_folder_that_is_not_prepared(taobao, tmp_path):
    data = prepare_dataset(read("taobao", [taobao]), LOO, root=tmp_path / "cache")
    assert Prepared.load(data.path).events.equals(data.events)
    (data.path / "items.parquet").unlink()
    with pytest.raises(DataError, match=r"not a prepared dataset folder \(no items.parquet\)") as err:
        Prepared.load(data.path)
    assert err.value.path == str(data.path)


# ----------------------------------------------------------------------------- a damaged folder on load


@pytest.fixture(scope="module")
def prepared_once(tiny, tmp_path_factory):
    """One prepared folder; each test below damages its own copy."""
    root = tmp_path_factory.mktemp("prepared")
    return prepare_dataset(read("taobao", [tiny / "taobao.csv"]), LOO, root=root).path


def _vocab(folder, change):
    raw = json.loads((folder / "vocab.json").read_text())
    change(raw)
    (folder / "vocab.json").write_text(json.dumps(raw))


def _half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rewrite(path, change):
    change(pl.read_parquet(path)).write_parquet(path)


DAMAGE = {  # what is done to the copy -> (the file named, and where in it; the message)
    "vocab not JSON": (
        lambda d: (d / "vocab.json").write_text("["),
        "vocab.json:1 (column 2)",
        "malformed JSON: Expecting value",
    ),
    "vocab a list": (
        lambda d: (d / "vocab.json").write_text("[]"),
        "vocab.json",
        "expected a JSON object of vocabularies, found list",
    ),
    "vocab without item": (
        lambda d: _vocab(d, lambda v: v.pop("item")),
        "vocab.json",
        "missing vocabulary 'item'",
    ),
    "vocab value not a list": (
        lambda d: _vocab(d, lambda v: v.update(user="<pad>")),
        "vocab.json",
        "vocabulary 'user': expected a list of strings",
    ),
    "vocab without padding": (
        lambda d: _vocab(d, lambda v: v["behavior"].pop(0)),
        "vocab.json",
        "vocabulary 'behavior': the first entry must be '<pad>'",
    ),
    "vocab repeats": (
        lambda d: _vocab(d, lambda v: v["item"].append(v["item"][1])),
        "vocab.json",
        "vocabulary 'item': repeated entries",
    ),
    "meta not JSON": (
        lambda d: (d / "meta.json").write_bytes(b"\xff\xfe{}"),
        "meta.json:1 (column 1)",
        "malformed JSON: Expecting value",
    ),
    "meta a list": (
        lambda d: (d / "meta.json").write_text("[]"),
        "meta.json",
        "expected a JSON object, found list",
    ),
    "meta without stats": (
        lambda d: (d / "meta.json").write_text('{"format": "taobao"}'),
        "meta.json",
        "missing key(s) key, split, split_info, rows_read, dropped, stats",
    ),
    "interactions truncated": (
        lambda d: _half(d / "interactions.parquet"),
        "interactions.parquet",
        "cannot read as Parquet (corrupt or truncated?): parquet: File out of specification: "
        "The file must end with PAR1 or PARE",
    ),
    "interactions without split": (
        lambda d: _rewrite(d / "interactions.parquet", lambda f: f.drop("split")),
        "interactions.parquet",
        "missing column(s) split; it has user, item, ts, behavior",
    ),
    "interactions with text ids": (
        lambda d: _rewrite(d / "interactions.parquet", lambda f: f.with_columns(pl.col("item").cast(str))),
        "interactions.parquet (column item)",
        "expected integers, found String",
    ),
    "item id beyond the vocabulary": (
        lambda d: _rewrite(d / "interactions.parquet", lambda f: f.with_columns(pl.col("item") + 1)),
        "interactions.parquet (column item)",
        "values 2..4, outside 1..3 (the 3 entries of vocab.json's 'item')",
    ),
    "items truncated": (
        lambda d: _half(d / "items.parquet"),
        "items.parquet",
        "cannot read as Parquet (corrupt or truncated?): parquet: File out of specification: "
        "The file must end with PAR1 or PARE",
    ),
    "an item row lost": (
        lambda d: _rewrite(d / "items.parquet", lambda f: f.head(2)),
        "items.parquet",
        "2 rows (2 distinct items), but vocab.json has 3 items",
    ),
    "category beyond its vocabulary": (
        lambda d: _rewrite(
            d / "items.parquet", lambda f: f.with_columns(pl.col("category").list.eval(pl.element() * 9))
        ),
        "items.parquet (column category)",
        "values 9..18, outside 1..2 (the 2 entries of vocab.json's 'field:category')",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_load_names_the_damaged_file_and_the_problem(prepared_once, tmp_path, damage):
    """As a run folder's copy (`<run>/data/`) would be: the message names the file in that copy."""
    folder = tmp_path / "run" / "data"
    shutil.copytree(prepared_once, folder)
    assert Prepared.load(folder).events.height == 8
    change, name, message = DAMAGE[damage]
    change(folder)
    with pytest.raises(DataError) as err:
        Prepared.load(folder)
    assert str(err.value) == f"{folder / name}: {message}"

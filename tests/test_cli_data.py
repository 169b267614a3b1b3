"""`ssrf data prepare` and `ssrf data stats` through typer's CliRunner: Table I on every real sample, and
bad input -> a one-line error naming the file, exit code 2, and nothing left in the cache folder."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from ssrf.cli import app

runner = CliRunner()
ALL = ["--min-user-events", "1", "--min-item-events", "1"]  # no k-core
RAW = [*ALL, "--split", "loo"]  # no k-core, and no later event dropped by the leak-free temporal split
TAOBAO_WINDOW = (1511539200, 1512316800)


def invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def table_one(output: str) -> dict[str, str]:
    """The Table I row of `data stats`, by column name."""
    lines = output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| users |"))
    head = [c.strip() for c in lines[at].strip("|").split("|")]
    values = [c.strip() for c in lines[at + 2].strip("|").split("|")]
    return dict(zip(head, values, strict=True))


def expected_row(events: list[tuple]) -> dict[str, str]:
    """Table I from a list of (user, item, ...) events, worked out here with plain Python."""
    users, items = len({e[0] for e in events}), len({e[1] for e in events})
    return {
        "users": str(users),
        "items": str(items),
        "actions per user": f"{round(len(events) / users, 2):.1f}",
        "actions per item": f"{round(len(events) / items, 2):.1f}",
        "events": str(len(events)),
    }


def stats(*args: str | Path, root: Path) -> str:
    result = invoke("data", "stats", *args, "--cache-dir", root)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.splitlines()[2] == (
        "| users | items | actions per user | actions per item | events | categories |"
    )
    return out


def unique(rows: list[tuple]) -> list[tuple]:
    return list(dict.fromkeys(rows))


# --------------------------------------------------------------------------------- stats, real data


def test_stats_taobao(shared_data, tmp_path):
    path = shared_data / "taobao-userbehavior" / "UserBehavior_head100k.csv"
    with open(path, newline="") as fh:
        rows = [tuple(r) for r in csv.reader(fh)]
    kept = unique([r for r in rows if TAOBAO_WINDOW[0] <= int(r[4]) < TAOBAO_WINDOW[1]])
    assert len(rows) - len(kept) == 44  # "a few timestamps outside the official window", no repeats

    out = stats("-f", "taobao", path, *RAW, root=tmp_path)
    row = table_one(out)
    assert {k: row[k] for k in expected_row(kept)} == expected_row(kept)
    assert row["categories"] == str(len({r[2] for r in kept}))
    assert "rows read: 100001; kept 99957; dropped 44:" in out
    assert "  out_of_window        44" in out.splitlines()
    assert "behaviour mix: pv " in out and "time span: 2017-11-24 16:" in out


def test_stats_taobao_default_k_core(shared_data, tmp_path):
    out = stats(
        "-f", "taobao", shared_data / "taobao-userbehavior" / "UserBehavior_head100k.csv", root=tmp_path
    )
    meta = json.loads(next(tmp_path.iterdir()).joinpath("meta.json").read_text())
    row = table_one(out)
    assert int(row["users"]) == meta["stats"]["users"] < 983
    assert meta["dropped"]["k_core"] > 0
    # after 5-core filtering every user and item keeps at least 5 events
    events = pl.read_parquet(next(tmp_path.iterdir()) / "interactions.parquet")
    assert events.group_by("user").len()["len"].min() >= 5 and events.group_by("item").len()["len"].min() >= 5


def test_stats_retailrocket(shared_data, tmp_path):
    folder = shared_data / "retailrocket"
    with open(folder / "sample_events.csv", newline="") as fh:
        rows = [
            (r["visitorid"], r["itemid"], int(r["timestamp"]) // 1000, r["event"]) for r in csv.DictReader(fh)
        ]
    # duplicates are exact repeats at the canonical resolution of one second (3 repeat to the millisecond)
    kept = unique(rows)
    assert len(rows) - len(kept) == 25

    out = stats(
        "-f", "retailrocket", folder / "sample_events.csv", folder / "category_tree.csv", *RAW, root=tmp_path
    )
    row = table_one(out)
    assert {k: row[k] for k in expected_row(kept)} == expected_row(kept)
    assert row["users"] == "5000" and row["items"] == "6610"
    assert "  duplicate            25" in out.splitlines()


def test_stats_s3rec_beauty(shared_data, tmp_path):
    out = stats("-f", "s3rec", shared_data / "beauty" / "Beauty.txt", root=tmp_path)
    # PROVENANCE: 22,363 users, 12,101 items, 198,502 interactions (already 5-core), 637 attribute ids
    assert table_one(out) == {
        "users": "22363",
        "items": "12101",
        "actions per user": "8.9",  # 198502 / 22363 = 8.88
        "actions per item": "16.4",  # 198502 / 12101 = 16.40
        "events": "198502",
        "categories": "637",
    }
    assert "split (loo): train 153776, valid 22363, test 22363 events; 22363 test users" in out


def test_stats_diginetica(shared_data, tmp_path):
    folder = shared_data / "diginetica"
    files = [folder / "sample_train-item-views.csv", folder / "train-purchases.csv"]
    rows = []
    for path, behaviour in zip(files, ("view", "purchase"), strict=True):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh, delimiter=";"):
                r = {k.lower().replace("_", ""): v for k, v in r.items()}
                day = dt.datetime.fromisoformat(r["eventdate"]).replace(tzinfo=dt.UTC).timestamp()
                rows.append((r["sessionid"], r["itemid"], int(day) + int(r["timeframe"]) // 1000, behaviour))
    kept = unique(rows)

    out = stats("-f", "diginetica", *files, folder / "product-categories.csv", *RAW, root=tmp_path)
    row = table_one(out)
    assert {k: row[k] for k in expected_row(kept)} == expected_row(kept)
    assert f"rows read: {12_391 + 18_025}; kept {len(kept)};" in out


# ------------------------------------------------------------------------------------ prepare, tiny


def test_prepare_prints_the_folder_and_reuses_it(tiny, tmp_path):
    args = (
        "data",
        "prepare",
        "-f",
        "taobao",
        tiny / "taobao.csv",
        *ALL,
        "--split",
        "loo",
        "--cache-dir",
        tmp_path,
    )
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    folder = Path(first.stdout.strip())
    assert folder.parent == tmp_path and folder.name.startswith("taobao-")
    mtime = (folder / "interactions.parquet").stat().st_mtime_ns
    again = invoke(*args)
    assert again.stdout == first.stdout
    assert (folder / "interactions.parquet").stat().st_mtime_ns == mtime
    forced = invoke(*args, "--force")
    assert forced.stdout == first.stdout
    assert (folder / "interactions.parquet").stat().st_mtime_ns != mtime
    # stats on the prepared folder itself
    out = invoke("data", "stats", "-f", "taobao", folder)
    assert out.exit_code == 0 and table_one(out.stdout)["users"] == "2"
    assert f"artifacts: {folder}" in out.stdout


def test_prepare_sample_seeds_give_other_folders(tiny, tmp_path):
    base = (
        "data",
        "prepare",
        "-f",
        "taobao",
        tiny / "taobao.csv",
        *ALL,
        "--split",
        "loo",
        "--cache-dir",
        tmp_path,
    )
    folders = {invoke(*base, "--sample-users", "1", "--seed", s).stdout for s in ("0", "0", "1")}
    assert len(folders) == 2
    for f in folders:
        meta = json.loads((Path(f.strip()) / "meta.json").read_text())
        assert meta["stats"]["users"] == 1 and meta["dropped"]["sampled_out"] == 4


def test_prepare_generic_with_map(tiny, tmp_path):
    result = invoke(
        "data", "stats", "-f", "generic", tiny / "generic.csv",
        "--map", "user=uid,item=sku,timestamp=when,behavior=action,context=shop,ts_unit=ms",
        *ALL, "--cache-dir", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # the leak-free temporal split: carol has no event before the validation cut (t=7 s), so her two
    # later events are dropped; shop s3 first appears in the test period (see test_prepare.py)
    assert table_one(result.stdout) == {
        "users": "2", "items": "3", "actions per user": "4.0", "actions per item": "2.7", "events": "8",
        "categories": "2",
    }  # fmt: skip
    assert "context fields: shop (2 values)" in result.stdout
    assert "split (temporal): train 6, valid 0, test 2 events; 2 test users" in result.stdout
    assert "  unseen_user          2" in result.stdout.splitlines()
    mapped = invoke(
        "data", "prepare", "-f", "generic", tiny / "generic.csv", "--mapping", tiny / "generic_mapping.toml",
        *ALL, "--cache-dir", tmp_path,
    )  # fmt: skip
    assert mapped.exit_code == 0
    assert Path(mapped.stdout.strip()).is_dir()


def test_dirty_rows_are_counted_without_strict(tmp_path):
    path = tmp_path / "dirty.csv"
    path.write_text(DIRTY)
    result = invoke(
        "data", "stats", "-f", "taobao", path, *ALL, "--split", "loo", "--cache-dir", tmp_path / "c"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "  bad_id               1" in lines and "  wrong_column_count   1" in lines
    assert "rows read: 6; kept 4; dropped 2:" in result.stdout


# ---------------------------------------------------------------------------------------- bad input

DIRTY = (
    "1,10,1,pv,1511600000\n"
    "1,11,1,pv,1511600001\n"
    "1,xx,1,pv,1511600002\n"  # line 3: the item id is not an integer
    "1,12,1,pv\n"  # line 4: four fields
    "1,13,1,pv,1511600003\n"
    "2,10,1,pv,1511600004\n"
)


def fails(*args: str | Path, root: Path) -> str:
    """Run `data prepare`, expect exit 2 and a one-line error; return it without the `error: ` prefix."""
    result = invoke("data", "prepare", *args, "--cache-dir", root)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert not root.exists() or list(root.iterdir()) == []  # no partial artifact folder
    return err.removeprefix("error: ").rstrip("\n")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    assert fails("-f", "taobao", path, root=tmp_path / "c") == f"{path}: file not found"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.touch()
    assert fails("-f", "taobao", path, root=tmp_path / "c") == f"{path}: empty file"


def test_strict_wrong_column_count_and_bad_id(tmp_path):
    path = tmp_path / "dirty.csv"
    path.write_text(DIRTY.replace("1,xx,", "1,14,"))
    assert fails("-f", "taobao", path, *ALL, "--strict", root=tmp_path / "c") == (
        f"{path}:4: wrong column count (--strict)"
    )
    path.write_text(DIRTY)
    assert (
        fails("-f", "taobao", path, *ALL, "--strict", root=tmp_path / "c") == f"{path}:3: bad id (--strict)"
    )


def test_generic_missing_column(tiny, tmp_path):
    err = fails("-f", "generic", tiny / "generic.csv", "--map", "user=uid,item=product,timestamp=when",
                root=tmp_path / "c")  # fmt: skip
    assert err == (
        f"{tiny / 'generic.csv'}: column(s) product named in the mapping are missing; "
        "the file has uid, sku, when, action, shop"
    )


def test_parquet_float_user_ids(tmp_path):
    path = tmp_path / "log.parquet"
    pl.DataFrame({"u": [1.0, 2.0, 3.0], "i": [1, 2, 3], "t": [1, 2, 3]}).write_parquet(path)
    err = fails("-f", "generic", path, "--map", "user=u,item=i,timestamp=t", root=tmp_path / "c")
    assert err == f"{path} (column u): expected integer or string ids, found Float64"


def test_malformed_item2attributes(tmp_path):
    (tmp_path / "Toy.txt").write_text("1 1 2 3\n2 2 3 1\n")
    (tmp_path / "Toy_item2attributes.json").write_text('{"1": [1],\n"2": [2\n')
    err = fails("-f", "s3rec", tmp_path / "Toy.txt", root=tmp_path / "c")
    assert err.startswith(f"{tmp_path / 'Toy_item2attributes.json'}:3 (column 1): malformed JSON: ")


def test_split_with_no_test_users(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text(
        "user,item,ts\n" + "".join(f"a,x{t},{t}\n" for t in range(1, 8)) + "b,y,8\nb,y,9\nb,z,10\n"
    )
    err = fails("-f", "generic", path, "--map", "user=user,item=item,timestamp=ts", *ALL, root=tmp_path / "c")
    assert err == f"{path}: the temporal split leaves no test users (every user's events fall on one side)"
    err = fails("-f", "generic", path, "--map", "user=item,item=user,timestamp=ts", *ALL, "--split", "loo",
                root=tmp_path / "c")  # fmt: skip
    assert err.endswith("the loo split leaves no test users (every user's events fall on one side)")


def test_unknown_mapping_key(tiny, tmp_path):
    spec = "user=uid,item=sku,timestamp=when,colour=shop"
    err = fails("-f", "generic", tiny / "generic.csv", "--map", spec, root=tmp_path / "c")
    assert err.startswith("--map: unknown mapping key(s) colour; known: behavior, behaviors, context")
    toml = tmp_path / "map.toml"
    toml.write_text('[columns]\nuser = "uid"\nitem = "sku"\ntimestamp = "when"\nshop = "shop"\n')
    err = fails("-f", "generic", tiny / "generic.csv", "--mapping", toml, root=tmp_path / "c")
    assert err.startswith(f"{toml}: unknown mapping key(s) shop;")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'u,i,t\na,"b,1511600000\nc,d,1511600001\n', "cannot parse: invalid csv file"),
        (b"u,i,t\na,\xff\xfe,1511600000\nc,d,1511600001\n", "cannot parse: invalid utf-8 sequence"),
    ],
)
def test_file_polars_cannot_parse(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    err = fails("-f", "generic", path, "--map", "user=u,item=i,timestamp=t", root=tmp_path / "c")
    assert err.startswith(f"{path}: {message}")


def test_usage_mistakes(tiny, tmp_path):
    assert fails("-f", "generic", tiny / "generic.csv", root=tmp_path / "c").startswith(
        "the generic format needs a column mapping"
    )
    assert fails("-f", "generic", tiny / "generic.csv", "--map", "user", root=tmp_path / "c") == (
        "--map expects key=column pairs separated by commas, got 'user'"
    )
    assert fails("-f", "parquet", tiny / "generic.csv", root=tmp_path / "c").startswith(
        "unknown format 'parquet'"
    )
    assert fails("-f", "taobao", tiny / "taobao.csv", "--split", "random", root=tmp_path / "c") == (
        "split must be one of temporal, loo, auto; got 'random'"
    )
    assert fails("-f", "taobao", tiny / "taobao.csv", root=tmp_path / "c").startswith(
        f"{tiny / 'taobao.csv'}: no events left after cleaning and k-core filtering"
    )
    assert fails("-f", "taobao", tmp_path, root=tmp_path / "c").startswith(
        f"{tmp_path}: not a prepared dataset folder"
    )

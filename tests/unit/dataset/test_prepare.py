"""Cleaning, sampling, k-core, id remapping and splitting, on hand-written inputs whose results were worked
out by hand (tests/fixtures/README.md shows the working)."""

from __future__ import annotations

import polars as pl
import pytest

from ssrf.core import DataError
from ssrf.dataset import prepare as P
from ssrf.dataset.artifacts import LATER_REASONS, prepare_dataset
from ssrf.io import GenericMapping, read
from ssrf.io.schema import REASONS

W0 = 1511539200  # start of the Taobao window (2017-11-25 00:00 UTC+8)
ALL = {"min_user_events": 1, "min_item_events": 1}  # no k-core


def _generic(path, **extra):
    return read("generic", [path], GenericMapping(user="user", item="item", timestamp="ts", **extra))


def _write(path, text: str):
    path.write_text(text)
    return path


def _dropped(**counts: int) -> dict[str, int]:
    """meta["dropped"]: every reason, zero unless given."""
    return dict.fromkeys((*REASONS, "sampled_out", "k_core", *LATER_REASONS), 0) | counts


# ------------------------------------------------------------------------------------------- config


def test_config_validation():
    with pytest.raises(DataError, match="split must be one of temporal, loo, auto; got 'random'"):
        P.PrepareConfig(split="random")
    for fracs in (
        {"test_frac": 0},
        {"test_frac": 1.0},
        {"valid_frac": -0.1},
        {"test_frac": 0.6, "valid_frac": 0.4},
    ):
        with pytest.raises(DataError, match="test_frac"):
            P.PrepareConfig(**fracs)
    with pytest.raises(DataError, match=r"data.min_item_events = 0: must be greater than or equal to 1"):
        P.PrepareConfig(min_item_events=0)
    cfg = P.PrepareConfig()
    assert (cfg.resolved_split("s3rec"), cfg.resolved_split("taobao"), cfg.resolved_split("generic")) == (
        "loo",
        "temporal",
        "temporal",
    )
    assert P.PrepareConfig(split="temporal").resolved_split("s3rec") == "temporal"


# ----------------------------------------------------------------------------------------- cleaning


def test_taobao_cleaning_counts_every_reason(tiny):
    events, dropped = P.clean(read("taobao", [tiny / "taobao.csv"]), P.PrepareConfig())
    assert dropped == {
        "out_of_window": 2,  # lines 9 (1 s before the window) and 10 (at its exclusive end)
        "duplicate": 1,  # line 11 repeats line 2
        "unknown_behavior": 1,  # line 12: click
        "bad_id": 1,  # line 13
        "wrong_column_count": 2,  # lines 14 (4 fields) and 16 (6 fields)
        "bad_timestamp": 1,  # line 15
    }
    # lines 1-8 survive, in input order; line 6 repeats line 5's user, item and time with another behaviour
    assert events["_line"].to_list() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert "_reason" not in events.columns
    assert events.select("user", "item", "behavior").row(5) == ("2", "10", "cart")


def test_window_bounds_are_start_inclusive_end_exclusive(tmp_path):
    path = _write(
        tmp_path / "w.csv",
        "1,1,1,pv,1511539199\n1,1,1,pv,1511539200\n1,1,1,pv,1512316799\n1,1,1,pv,1512316800\n",
    )
    events, dropped = P.clean(read("taobao", [path]), P.PrepareConfig())
    assert events["ts"].to_list() == [1511539200, 1512316799]
    assert dropped == {"out_of_window": 2}
    # PrepareConfig.window overrides the format's window
    events, dropped = P.clean(read("taobao", [path]), P.PrepareConfig(window=(0, 1512316800)))
    assert events.height == 3 and dropped == {"out_of_window": 1}


def test_duplicates_are_exact_repeats_of_a_clean_row(tmp_path):
    path = _write(
        tmp_path / "d.csv",
        "1,1,7,pv,1511600000\n"
        "1,1,7,pv,1511600000\n"  # duplicate of line 1
        "1,1,8,pv,1511600000\n"  # another category: a different event
        "1,1,7,buy,1511600000\n"  # another behaviour
        "1,1,7,pv,1511600001\n"  # another second
        "1,1,7,pv,1600000000\n"  # out of the window ...
        "1,1,7,pv,1600000000\n"  # ... and so is its repeat: counted as out of window, not duplicate
        "1,1,7,pv,1511600000\n",  # a second repeat of line 1
    )
    events, dropped = P.clean(read("taobao", [path]), P.PrepareConfig())
    assert events["_line"].to_list() == [1, 3, 4, 5]
    assert dropped == {"duplicate": 2, "out_of_window": 2}


def test_strict_stops_at_the_first_dirty_row(tiny, tmp_path):
    with pytest.raises(DataError) as err:
        P.clean(read("taobao", [tiny / "taobao.csv"]), P.PrepareConfig(strict=True))
    assert str(err.value) == f"{tiny / 'taobao.csv'}:9: out of window (--strict)"
    assert err.value.line == 9

    path = _write(tmp_path / "s.csv", "1,1,1,pv,1511600000\n1,1,1,pv,1511600001\n1,oops,1,pv,1511600002\n")
    with pytest.raises(DataError, match=r"s\.csv:3: bad id \(--strict\)$"):
        P.clean(read("taobao", [path]), P.PrepareConfig(strict=True))
    clean_only = _write(tmp_path / "ok.csv", "1,1,1,pv,1511600000\n")
    assert P.clean(read("taobao", [clean_only]), P.PrepareConfig(strict=True))[1] == {}


def test_unknown_behaviour_from_a_generic_mapping(tiny):
    mapping = GenericMapping(
        user="uid", item="sku", timestamp="when", behavior="action", behaviors=("click",)
    )
    events, dropped = P.clean(read("generic", [tiny / "generic.csv"], mapping), P.PrepareConfig())
    assert dropped == {"unknown_behavior": 3}  # the three `buy` rows
    assert set(events["behavior"]) == {"click"}


# ----------------------------------------------------------------------------------------- sampling


def _users_frame(n_users: int = 20) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user": [f"u{u:02d}" for u in range(n_users) for _ in range(2)],
            "item": [str(k % 7) for k in range(2 * n_users)],
            "ts": list(range(2 * n_users)),
        }
    )


def test_user_sampling_is_seeded():
    df = _users_frame()
    a = P.sample_users(df, 5, seed=0)
    assert a.equals(P.sample_users(df, 5, seed=0))  # same seed, same sample
    users_a = set(a["user"])
    assert len(users_a) == 5 and a.height == 10  # every event of a sampled user is kept
    assert a.equals(df.filter(pl.col("user").is_in(list(users_a))))
    users_b = set(P.sample_users(df, 5, seed=1)["user"])
    assert len(users_b) == 5 and users_b != users_a  # another seed, another sample
    # the sample depends on the set of users, not on row order
    assert set(P.sample_users(df.reverse(), 5, seed=0)["user"]) == users_a
    assert P.sample_users(df, None, seed=0) is df
    assert P.sample_users(df, 20, seed=0).equals(df) and P.sample_users(df, 99, seed=3).equals(df)


def test_user_sampling_before_a_time_draws_among_the_users_active_then():
    """`before`: only users with an event before that time are drawn; asking for at least as many as there
    are keeps the whole frame (users without such an event are left for the split to drop and count)."""
    df = _users_frame()  # user u has events at times 2u and 2u + 1
    sample = P.sample_users(df, 3, seed=0, before=8)  # users with an event before 8: 0, 1, 2, 3
    assert set(sample["user"]) < {f"u{u:02d}" for u in range(4)} and sample["user"].n_unique() == 3
    assert P.sample_users(df, 4, seed=0, before=8).equals(df)


# ------------------------------------------------------------------------------------------- k-core


def test_k_core_iterates_to_a_fixpoint(tiny):
    events, _ = P.clean(_generic(tiny / "kcore.csv"), P.PrepareConfig())
    pairs = set(events.select("user", "item").iter_rows())
    # The fixture needs more than one round: one round (items, then users) only removes D...
    one_round = events.filter(pl.len().over("item") >= 2).filter(pl.len().over("user") >= 2)
    assert set(one_round.select("user", "item").iter_rows()) == pairs - {("D", "w")}
    # ... after which w has one event, so C-w goes, so C has one event, so C-y goes; then nothing changes.
    kept = P.k_core(events, 2, 2)
    assert kept.select("user", "item", "ts").rows() == [
        ("A", "x", 1),
        ("A", "y", 2),
        ("B", "x", 3),
        ("B", "y", 4),
        ("A", "x", 8),
        ("B", "y", 9),
    ]
    assert kept.columns == events.columns
    assert P.k_core(kept, 2, 2).equals(kept)  # a fixpoint
    assert P.k_core(events, 1, 1).equals(events)
    # asymmetric thresholds: items need 4 events -> only y's four rows are left
    assert P.k_core(events, 1, 4).select("user", "item").rows() == [
        ("A", "y"),
        ("B", "y"),
        ("C", "y"),
        ("B", "y"),
    ]
    # ... and if users also need 2, only B's two y rows pass the first round, and then y has 2 < 4: nothing
    assert P.k_core(events, 2, 4).height == 0


def test_k_core_counted_in_meta(tiny, tmp_path):
    data = prepare_dataset(
        _generic(tiny / "kcore.csv"),
        P.PrepareConfig(min_user_events=2, min_item_events=2, split="loo"),
        root=tmp_path,
    )
    assert data.meta["dropped"] == _dropped(k_core=3)
    assert data.vocabs["user"].raw == ("<pad>", "A", "B") and data.vocabs["item"].raw == ("<pad>", "x", "y")
    assert data.events.select("user", "item", "ts", "split").rows() == [
        (1, 1, 1, 0),
        (1, 2, 2, 1),
        (1, 1, 8, 2),
        (2, 1, 3, 0),
        (2, 2, 4, 1),
        (2, 2, 9, 2),
    ]


def test_k_core_that_leaves_nothing_is_an_error(tiny, tmp_path):
    with pytest.raises(
        DataError, match=r"no events left after cleaning and k-core filtering \(min 5 per user"
    ):
        prepare_dataset(read("taobao", [tiny / "taobao.csv"]), P.PrepareConfig(), root=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ remap + split, per format


def test_taobao_end_to_end_ids_and_leave_one_out(tiny, tmp_path):
    data = prepare_dataset(
        read("taobao", [tiny / "taobao.csv"]), P.PrepareConfig(split="loo", **ALL), root=tmp_path
    )
    assert data.vocabs["user"].raw == ("<pad>", "1", "2")
    assert data.vocabs["item"].raw == ("<pad>", "10", "11", "12")
    assert data.vocabs["behavior"].raw == ("<pad>", "pv", "fav", "cart", "buy")  # the format's order
    assert data.vocabs["field:category"].raw == ("<pad>", "100", "101")
    assert data.events.columns == ["user", "item", "ts", "behavior", "split"]
    assert data.events.rows() == [
        (1, 1, W0, 1, 0),
        (1, 2, W0 + 100, 1, 0),
        (1, 1, W0 + 200, 3, 1),  # second last: valid
        (1, 3, 1512316799, 4, 2),  # last: test
        (2, 1, W0 + 50, 1, 0),
        (2, 1, W0 + 50, 3, 0),  # same time as the row above: input order decides
        (2, 2, W0 + 150, 2, 1),
        (2, 3, W0 + 250, 1, 2),
    ]
    # item 12 was category 102 at W0+250 (line 8, later in the file) and 101 at 1512316799 (line 4):
    # the value at its latest event in time wins
    assert data.items.rows() == [(1, [1]), (2, [1]), (3, [2])]
    assert data.meta["dropped"] == _dropped(
        wrong_column_count=2, bad_id=1, bad_timestamp=1, unknown_behavior=1, out_of_window=2, duplicate=1
    )
    assert data.meta["rows_read"] == 16
    assert data.meta["split"] == "loo"
    assert data.meta["split_info"] == {
        "test_users": 2,
        "train_events": 4,
        "valid_events": 2,
        "test_events": 2,
    }


def test_retailrocket_end_to_end_items_take_the_category_at_their_latest_event(tiny, tmp_path):
    folder = tiny / "retailrocket"
    log = read(
        "retailrocket", [folder / "events.csv", folder / "item_properties.csv", folder / "category_tree.csv"]
    )
    data = prepare_dataset(log, P.PrepareConfig(split="loo", **ALL), root=tmp_path)

    assert data.meta["dropped"]["unknown_behavior"] == 1  # line 9, click
    assert data.vocabs["user"].raw == ("<pad>", "1", "2", "3")
    assert data.vocabs["item"].raw == ("<pad>", "100", "200", "300")
    assert data.vocabs["behavior"].raw == ("<pad>", "view", "addtocart", "transaction")
    # item 100's latest event (2500 s, line 2) has category 2; its last line in the file (500 s) has 1
    assert data.vocabs["field:category"].raw == ("<pad>", "2", "3")
    assert data.vocabs["field:parent_category"].raw == ("<pad>", "10", "20")
    assert data.items.columns == ["item", "category", "parent_category"]
    assert data.items.rows() == [(1, [1], [1]), (2, [2], [2]), (3, [], [])]
    assert data.events.select("user", "item", "ts", "behavior", "split").rows() == [
        (1, 1, 500, 1, 0),
        (1, 2, 1200, 1, 1),
        (1, 1, 2500, 1, 2),
        (2, 1, 1000, 1, 0),
        (2, 2, 1600, 1, 1),
        (2, 1, 1999, 2, 2),
        (3, 3, 1700, 1, 0),  # user 3 has two events: both stay in train
        (3, 1, 2000, 3, 0),
    ]


def test_s3rec_end_to_end_attributes_and_auto_split(tiny, tmp_path):
    data = prepare_dataset(
        read("s3rec", [tiny / "s3rec" / "Tiny.txt"]), P.PrepareConfig(**ALL), root=tmp_path
    )
    assert data.meta["split"] == "loo"  # auto: S3-Rec files have no real time
    assert data.vocabs["behavior"].raw == ("<pad>", "interaction")
    assert data.vocabs["item"].raw == ("<pad>", "1", "2", "3", "4")  # item 9 has attributes but no events
    assert data.vocabs["field:attributes"].raw == ("<pad>", "5", "6", "7")
    assert data.items.rows() == [(1, [1, 2]), (2, [2]), (3, [3]), (4, [])]
    assert data.events.select("user", "item", "ts", "split").rows() == [
        (1, 3, 0, 0),
        (1, 1, 1, 1),
        (1, 2, 2, 2),
        (2, 1, 0, 0),
        (2, 2, 1, 0),
        (3, 2, 0, 0),
        (3, 3, 1, 0),
        (3, 1, 2, 1),
        (3, 4, 3, 2),
    ]
    assert set(data.events["behavior"]) == {1}


def test_diginetica_end_to_end(tiny, tmp_path):
    folder = tiny / "diginetica"
    log = read(
        "diginetica",
        [folder / "train-item-views.csv", folder / "train-purchases.csv", folder / "product-categories.csv"],
    )
    data = prepare_dataset(log, P.PrepareConfig(split="loo", **ALL), root=tmp_path)
    assert data.vocabs["behavior"].raw == ("<pad>", "view", "purchase")
    assert data.vocabs["field:category"].raw == ("<pad>", "100", "200", "201")
    assert data.items.rows() == [(1, [1]), (2, [1]), (3, [2, 3])]
    # session 2 = view 10, view 12, purchase 12: its purchase is the test event
    assert data.events.select("user", "item", "behavior", "split").rows() == [
        (1, 1, 1, 0),
        (1, 2, 1, 0),
        (2, 1, 1, 0),
        (2, 3, 1, 1),
        (2, 3, 2, 2),
        (3, 2, 2, 0),
    ]


def test_generic_end_to_end_leak_free_temporal_split(tiny, tmp_path):
    """The default temporal split fixes the cuts on the clean log, then learns ids and context from the
    training period only: carol has no training event, so her valid and test events are dropped."""
    log = read("generic", [tiny / "generic.csv"], GenericMapping.from_toml(tiny / "generic_mapping.toml"))
    data = prepare_dataset(log, P.PrepareConfig(**ALL), root=tmp_path)

    # 10 events at 1..8, 8, 10 s: cut_valid = ts[int(10 * 0.6)] = 7, cut_test = ts[int(10 * 0.7)] = 8;
    # training = alice's 4 events and bob's 2 (t < 7)
    assert data.vocabs["user"].raw == ("<pad>", "bob", "alice")
    assert data.vocabs["item"].raw == ("<pad>", "fig", "pear", "apple")
    # shops from training events only: apple s1 (t=3), pear s2 (t=5), fig s2 (t=6); s3 first shows at t=8
    assert data.vocabs["field:shop"].raw == ("<pad>", "s1", "s2")
    assert data.items.rows() == [(1, [2]), (2, [2]), (3, [1])]
    assert data.meta["dropped"] == _dropped(unseen_user=2)
    assert data.meta["fit_on"] == "train"
    assert data.meta["split_info"] == {
        "cut_valid": 7,
        "cut_test": 8,
        "test_users": 2,
        "train_events": 6,
        "valid_events": 0,
        "test_events": 2,
        "valid_unseen_user": 1,  # carol's apple at 7
        "valid_unseen_item": 0,
        "test_unseen_user": 1,  # carol's fig at 10
        "test_unseen_item": 0,
    }
    assert data.events.rows() == [
        (1, 2, 5, 2, 0),  # bob
        (1, 1, 6, 1, 0),
        (1, 3, 8, 2, 2),
        (2, 3, 1, 2, 0),  # alice
        (2, 2, 2, 2, 0),
        (2, 3, 3, 1, 0),
        (2, 1, 4, 2, 0),
        (2, 2, 8, 2, 2),
    ]


def test_leak_free_split_drops_later_events_on_items_the_training_period_lacks(tmp_path):
    """k-core counts training events only: item j has 2 events, both in the test period."""
    rows = "".join(f"u{u},i{t % 2},{t}\n" for u in range(3) for t in range(1, 8))  # 21 events, t 1..7
    rows += "u0,j,9\nu1,j,9\n"
    data = prepare_dataset(
        _generic(_write(tmp_path / "s.csv", "user,item,ts\n" + rows)),
        P.PrepareConfig(min_user_events=2, min_item_events=2, valid_frac=0.0, test_frac=0.3),
        root=tmp_path / "out",
    )
    assert "j" not in data.vocabs["item"].raw
    assert data.meta["dropped"]["unseen_item"] == 2
    assert data.meta["split_info"]["test_unseen_item"] == 2


def test_generic_end_to_end_temporal_split_on_the_whole_log(tiny, tmp_path):
    """fit_on="all", the earlier protocol: ids, context and the cut quantiles over every period."""
    log = read("generic", [tiny / "generic.csv"], GenericMapping.from_toml(tiny / "generic_mapping.toml"))
    data = prepare_dataset(log, P.PrepareConfig(fit_on="all", **ALL), root=tmp_path)

    # ids sort by length, then value (numeric ids in numeric order); string ids follow the same rule
    assert data.vocabs["user"].raw == ("<pad>", "bob", "alice", "carol")
    assert data.vocabs["item"].raw == ("<pad>", "fig", "pear", "apple")
    assert data.vocabs["behavior"].raw == ("<pad>", "buy", "click")  # no list given: sorted
    assert data.vocabs["field:shop"].raw == ("<pad>", "s1", "s2", "s3")
    assert data.items.rows() == [
        (1, [2]),
        (2, [1]),
        (3, [3]),
    ]  # fig s2, pear s1, apple s3 (their last events)

    # 10 events at 1..8, 8, 10 s: cut_valid = ts[int(10 * 0.6)] = 7, cut_test = ts[int(10 * 0.7)] = 8
    assert data.meta["split"] == "temporal"
    assert data.meta["split_info"] == {
        "cut_valid": 7,
        "cut_test": 8,
        "test_users": 3,
        "train_events": 6,
        "valid_events": 1,
        "test_events": 3,
    }
    assert data.events.rows() == [
        (1, 2, 5, 2, 0),  # bob
        (1, 1, 6, 1, 0),
        (1, 3, 8, 2, 2),  # the tie at the cut goes to test
        (2, 3, 1, 2, 0),  # alice
        (2, 2, 2, 2, 0),
        (2, 3, 3, 1, 0),
        (2, 1, 4, 2, 0),
        (2, 2, 8, 2, 2),
        (3, 3, 7, 2, 1),  # carol: her valid event is her history
        (3, 1, 10, 1, 2),
    ]


# -------------------------------------------------------------------------------------------- split


def _remapped(tmp_path, text: str):
    log = _generic(_write(tmp_path / "s.csv", "user,item,ts\n" + text))
    events, _ = P.clean(log, P.PrepareConfig())
    return P.remap(events, log, None)[0]


def test_temporal_split_other_fractions(tmp_path):
    df = _remapped(tmp_path, "".join(f"{'ab'[t % 2]},i{t},{t}\n" for t in range(1, 11)))
    out, info = P.split(df, "temporal", P.PrepareConfig(test_frac=0.5, valid_frac=0.0))
    # cut_valid = cut_test = ts[5] = 6: no valid events; 6..10 are test
    assert (info["cut_valid"], info["cut_test"]) == (6, 6)
    assert out.sort("ts")["split"].to_list() == [0] * 5 + [2] * 5
    assert (info["valid_events"], info["test_events"], info["test_users"]) == (0, 5, 2)


def test_temporal_split_with_no_test_users(tmp_path):
    # a's events are all before the cut (ts[7] = 8), b's all after: b has no history, so no test user
    df = _remapped(tmp_path, "".join(f"a,x{t},{t}\n" for t in range(1, 8)) + "b,y,8\nb,y,9\nb,z,10\n")
    with pytest.raises(DataError, match=r"^src\.csv: the temporal split leaves no test users"):
        P.split(df, "temporal", P.PrepareConfig(), source="src.csv")


def test_leave_one_out_short_users_stay_in_train(tmp_path):
    df = _remapped(tmp_path, "a,x,1\na,y,2\nb,x,1\nb,y,2\nb,z,3\nc,x,5\n")
    out, info = P.split(df, "loo", P.PrepareConfig())
    assert out.select("user", "ts", "split").rows() == [
        (1, 1, 0),  # a: two events, train only
        (1, 2, 0),
        (2, 1, 0),
        (2, 2, 1),
        (2, 3, 2),
        (3, 5, 0),  # c: one event
    ]
    assert info == {"test_users": 1, "train_events": 4, "valid_events": 1, "test_events": 1}
    short = _remapped(tmp_path, "a,x,1\na,y,2\nb,x,1\n")
    with pytest.raises(DataError, match="the loo split leaves no test users"):
        P.split(short, "loo", P.PrepareConfig())
    with pytest.raises(DataError, match="unknown split 'random'"):
        P.split(short, "random", P.PrepareConfig())


def test_temporal_cut_is_exact_despite_float_error():
    # 90 events at times 0..89: 90 * 0.7 = 62.999... in floating point; the test period starts at index 63
    # (63 = 70% of 90 events before the cut), validation at floor(90 * 0.6) = 54
    df = pl.DataFrame({"user": [1 + i % 3 for i in range(90)], "ts": list(range(90))}).sort(["user", "ts"])
    _, info = P.split(df, "temporal", P.PrepareConfig())
    assert info["cut_test"] == 63 and info["cut_valid"] == 54
    assert info["test_events"] == 27 and info["valid_events"] == 9

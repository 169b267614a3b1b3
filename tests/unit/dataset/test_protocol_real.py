"""The leak-free temporal protocol on the real Taobao sample: no test positive is an item the training
period does not know, the dropped later events are counted, and popularity behaves (AUC above chance),
while the old protocol (k-core over the whole log) shows the artefact that made it anti-predictive."""

from __future__ import annotations

import pytest

from ssrf import pipeline
from ssrf.dataset.prepare import TEST, TRAIN, PrepareConfig


@pytest.fixture(scope="module")
def taobao(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    files = [shared_data / "taobao-userbehavior" / "UserBehavior_head100k.csv"]
    new = pipeline.prepare(files, "taobao", PrepareConfig(split="temporal"), root=root)
    old = pipeline.prepare(files, "taobao", PrepareConfig(split="temporal", fit_on="all"), root=root)
    return new, old


def test_no_test_positive_is_unseen_in_training(taobao):
    new, old = taobao
    ev = new.events
    train_items = set(ev.filter(ev["split"] == TRAIN)["item"].to_list())
    train_users = set(ev.filter(ev["split"] == TRAIN)["user"].to_list())
    test = ev.filter(ev["split"] == TEST)
    assert test.height > 0
    assert set(test["item"].to_list()) <= train_items
    assert set(test["user"].to_list()) <= train_users
    # the old protocol kept items whose only events are in the test period
    oe = old.events
    old_train = set(oe.filter(oe["split"] == TRAIN)["item"].to_list())
    assert set(oe.filter(oe["split"] == TEST)["item"].to_list()) - old_train


def test_dropped_later_events_are_counted_in_table_one(taobao):
    new, _ = taobao
    meta = new.meta
    info, dropped = meta["split_info"], meta["dropped"]
    assert dropped["unseen_item"] > 0 and dropped["unseen_user"] > 0
    for reason in ("unseen_user", "unseen_item"):
        assert info[f"valid_{reason}"] + info[f"test_{reason}"] == dropped[reason]
    assert meta["rows_read"] == meta["stats"]["events"] + sum(dropped.values())  # nothing lost


@pytest.mark.parametrize("fit_on, above_chance", [("train", True), ("all", False)])
def test_popularity_auc_is_above_chance_only_without_the_leak(taobao, tmp_path, fit_on, above_chance):
    data = taobao[0] if fit_on == "train" else taobao[1]
    cfg = pipeline.RunConfig(model="pop").override(['train.metric="auc"'])
    auc = pipeline.train(data, cfg, tmp_path / "pop")["test"]["auc"]
    assert (auc > 0.5) is above_chance, auc


def test_repeat_rule_scores_the_users_own_items_first(taobao, tmp_path):
    """On this log most test positives the rule gets right are repeats: its repeat AUC is near 1."""
    data = taobao[0]
    cfg = pipeline.RunConfig(model="repeat").override(['train.metric="auc"'])
    test = pipeline.train(data, cfg, tmp_path / "repeat")["test"]
    assert 0 < test["repeat_share"] < 1
    assert test["auc_repeat"] > 0.95 and test["auc_repeat"] > test["auc_novel"]

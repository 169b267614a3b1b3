"""The reference rules (random, pop by training counts, repeat) against values worked out by hand, and one
such model through the whole pipeline: no training, one validation, a run folder, a bundle that serves."""

from __future__ import annotations

import json
import math

import pytest
import torch
from model_factory import batch, make
from typer.testing import CliRunner

from ssrf import pipeline
from ssrf.cli import app
from ssrf.dataset.batches import SeqBatch
from ssrf.dataset.prepare import PrepareConfig
from ssrf.evaluation.metrics import auc
from ssrf.models import build
from ssrf.models.reference import RECENT
from ssrf.models.registry import load_model, save_model
from ssrf.serving.predictor import Predictor

COUNTS = torch.tensor([0.0, 5, 1, 9, 0, 9, 2, 7, 3])  # items 1..8; 3 and 5 tie at 9


def seq(items: list[list[int]], users: list[int] | None = None) -> SeqBatch:
    x = torch.tensor(items)
    user = torch.tensor(users or list(range(1, len(items) + 1)))
    return SeqBatch(user=user, items=x, behaviors=(x > 0).long())


def test_repeat_ranks_the_history_by_recency_then_the_rest_by_training_counts():
    m = build("repeat", {"n_items": 8})
    m.set_item_counts(COUNTS)
    b = seq([[0, 2, 6, 2, 4], [0, 0, 0, 0, 0]])  # row 0: item 2 twice (latest at age 1), 4 the latest
    scores = m.score(b)
    pop = COUNTS.log1p() / (math.log1p(9) + 1)
    expected = pop.clone()
    expected[[4, 2, 6]] = torch.tensor([RECENT, RECENT - 1, RECENT - 2])  # ages 0, 1 (not 3) and 2
    torch.testing.assert_close(scores[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(scores[1], pop, rtol=0, atol=0)  # no history: popularity alone
    order = scores[0, 1:].sort(descending=True, stable=True).indices + 1
    assert order.tolist() == [4, 2, 6, 3, 5, 7, 1, 8]  # 3 and 5 have equal scores (listed by id here)
    assert scores[0, 3] == scores[0, 5] and bool((pop < 1).all())
    # at an earlier position only the events up to it are history: column 2 sees 2, 6
    pos = torch.zeros_like(b.items, dtype=torch.bool)
    pos[0, 2] = True
    early = m.output(m.hidden(b, pos))[0]
    assert early[6] == RECENT and early[2] == RECENT - 1 and early[4] == pop[4]


def test_pop_scores_every_user_by_log_training_counts():
    m = make("pop")
    assert not any(p.requires_grad for p in m.parameters()) and not m.score(batch()).any()  # zeros: unset
    counts = torch.cat([torch.zeros(1), torch.randint(0, 50, (30,)).float()])
    m.set_item_counts(counts)
    scores = m.score(batch())
    torch.testing.assert_close(scores, counts.log1p().expand(3, -1))  # the same row for every user
    assert torch.equal(scores[0, 1:].argsort(stable=True), counts[1:].argsort(stable=True))
    with pytest.raises(ValueError, match="item counts"):
        m.set_item_counts(torch.zeros(5))


def test_random_is_deterministic_per_user_and_item_and_ignores_the_batch():
    b = batch()
    a, again = make("random"), make("random")
    full = a.score(b)
    torch.testing.assert_close(full, again.score(b), rtol=0, atol=0)  # a function of (user, item, seed)
    assert bool(((full >= 0) & (full < 1)).all())
    other = SeqBatch(user=torch.tensor([3, 9, 1]), items=b.items.flip(0), behaviors=b.behaviors.flip(0))
    moved = a.score(other)  # users 1 and 3 with other histories, other neighbours, other rows
    torch.testing.assert_close(moved[0], full[2], rtol=0, atol=0)
    torch.testing.assert_close(moved[2], full[0], rtol=0, atol=0)
    assert not torch.equal(full[0], full[1])  # users differ
    assert not torch.equal(make("random", seed=1).score(b), full)  # and so do seeds


def test_random_auc_is_about_one_half():
    n_users, n_items = 2000, 300
    m = build("random", {"n_items": n_items})
    users = torch.arange(1, n_users + 1)
    scores = m.score(seq([[1]] * n_users, users.tolist()))[:, 1:]  # [B, N]
    target = torch.randint(0, n_items, (n_users,), generator=torch.Generator().manual_seed(0))
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(n_users), target] = True
    value = float(auc(scores, positive, ~positive).mean())
    assert abs(value - 0.5) < 0.05, value


def test_a_repeat_bundle_reloads_with_its_counts(tmp_path):
    m = make("repeat")
    m.set_item_counts(torch.arange(31).float())
    save_model(tmp_path, "repeat", m)
    name, back = load_model(tmp_path)
    assert name == "repeat" and torch.equal(back.popularity.counts, m.popularity.counts)
    torch.testing.assert_close(back.eval().score(batch()), m.score(batch()), rtol=0, atol=0)


@pytest.fixture(scope="module")
def tiny_data(tiny, tmp_path_factory):
    """Tiny.txt under leave-one-out: training events are user 1: 3; user 2: 1, 2; user 3: 2, 3 (see
    tests/fixtures/README.md), so the training counts of items 1..4 are 1, 2, 2, 0 (of all events: 3, 3, 2,
    1)."""
    cfg = PrepareConfig(min_user_events=1, min_item_events=1)
    return pipeline.prepare([tiny / "s3rec" / "Tiny.txt"], "s3rec", cfg, root=tmp_path_factory.mktemp("prep"))


@pytest.mark.parametrize("name", ["random", "pop", "repeat"])
def test_a_reference_model_runs_through_the_pipeline_without_training(name, tiny_data, tmp_path):
    run = tmp_path / name
    result = pipeline.train(tiny_data, pipeline.RunConfig(model=name), run)
    saved = json.loads((run / "results.json").read_text())
    assert saved["epochs_run"] == 1 and saved["best_epoch"] == 1 and saved["parameters"] == 0
    assert not saved["stopped_early"] and not saved["stopped_by_budget"]
    assert saved["best_valid"]["targets"] == 0 and math.isnan(saved["best_valid"]["loss"])
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0]).keys() == saved["best_valid"].keys()
    assert all(math.isfinite(result["test"][k]) for k in ("auc", "hr@10", "ndcg@10", "mrr"))
    _, best = load_model(run / "best")
    if name != "random":  # counted over the training period only
        assert best.popularity.counts.tolist() == [0, 1, 2, 2, 0]
    p = Predictor.load(run)
    recs = p.recommend(["2"], k=2)[0]  # user 2 has seen items 1 and 2
    assert {r.item for r in recs} == {"3", "4"}
    if name != "random":
        assert [r.item for r in recs] == ["3", "4"]  # by training count, 2 against 0
    if name == "repeat":  # user 3's events are 2, 3, 1, 4: the latest first
        assert [r.item for r in p.recommend(["3"], k=4, include_seen=True)[0]] == ["4", "1", "3", "2"]
    res = CliRunner().invoke(app, ["recommend", "--run", str(run), "--user", "2", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert res.output.count("| 2 |") == 2

"""One test per property over the whole model registry: shapes, causality, padding, batch independence,
gradients."""

from __future__ import annotations

import pytest
import torch
from model_factory import batch, make

from ssrf.dataset.batches import SeqBatch
from ssrf.models import REGISTRY

REFERENCE = {"random", "pop", "repeat"}  # rules with nothing to train (models/reference.py, models/pop.py)


@pytest.mark.parametrize("name", REGISTRY, ids=str)
def test_shapes_and_finite(name):
    m, b = make(name), batch()
    scores = m.score(b)
    assert scores.shape == (3, 31)
    assert torch.isfinite(scores).all()
    assert m.score(b, torch.tensor([[1, 2], [3, 4], [5, 6]])).shape == (3, 2)
    assert m.hidden(b, b.items != 0).shape == ((b.items != 0).sum(), m.encode(b).shape[1])


@pytest.mark.parametrize("name", REGISTRY, ids=str)
def test_candidate_scores_equal_full_scores(name):
    m, b = make(name), batch()
    full = m.score(b)
    cand = torch.tensor([[1, 7], [30, 2], [5, 5]])
    torch.testing.assert_close(m.score(b, cand), full.gather(1, cand))


@pytest.mark.parametrize("name", REGISTRY, ids=str)
def test_shared_candidate_scores_equal_full_scores(name):
    m, b = make(name), batch()
    full = m.score(b)
    shared = torch.tensor([4, 1, 30, 4])
    torch.testing.assert_close(m.output_shared(m.encode(b), shared), full[:, shared])


@pytest.mark.parametrize("name", REGISTRY, ids=str)
def test_a_position_never_sees_later_positions(name):
    """The representation at position t is unchanged when anything after t changes: a target (the item at
    t + 1) cannot influence its own score."""
    m, b = make(name), batch()
    pos = torch.zeros_like(b.items, dtype=torch.bool)
    pos[:, 5] = True  # predicting the item at column 6 from columns <= 5
    before = m.hidden(b, pos)
    items = b.items.clone()
    items[:, 6:] = torch.tensor([[11, 12], [13, 14], [15, 16]])
    after = m.hidden(SeqBatch(user=b.user, items=items, behaviors=b.behaviors), pos)
    torch.testing.assert_close(before, after)
    if not m.reads_history:  # popularity: no position matters
        return
    items[:, 5] = 20  # while the position itself does matter
    changed = m.hidden(SeqBatch(user=b.user, items=items, behaviors=b.behaviors), pos)
    assert not torch.allclose(before[:2], changed[:2])


@pytest.mark.parametrize("name", REGISTRY, ids=str)
def test_left_padding_and_trimming_do_not_change_scores(name):
    m, b = make(name), batch()
    short = SeqBatch(user=b.user[2:], items=b.items[2:], behaviors=b.behaviors[2:])
    torch.testing.assert_close(m.score(short), m.score(short.trimmed()))
    assert short.trimmed().items.shape[1] == 2


@pytest.mark.parametrize("name", REGISTRY, ids=str)
def test_a_user_scores_the_same_alone_and_in_a_batch(name):
    m, b = make(name), batch()
    together = m.score(b)
    for i in range(3):
        alone = m.score(
            SeqBatch(user=b.user[i : i + 1], items=b.items[i : i + 1], behaviors=b.behaviors[i : i + 1])
        )
        torch.testing.assert_close(alone[0], together[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", REGISTRY, ids=str)
def test_gradients_reach_the_embeddings(name):
    m, b = make(name), batch()
    if name in REFERENCE:
        assert not any(p.requires_grad for p in m.parameters())
        pytest.skip(f"{name} has no trainable parameters")
    m.train()
    m.score(b).logsumexp(-1).sum().backward()
    assert m.item_emb.weight.grad is not None and m.item_emb.weight.grad.abs().sum() > 0
    for extra in ("user_emb", "behavior_emb"):
        if hasattr(m, extra):
            assert getattr(m, extra).weight.grad.abs().sum() > 0, extra


def test_the_models_command_lists_the_registry():
    from typer.testing import CliRunner

    from ssrf.cli import app

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == list(REGISTRY)
    assert {"fm", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint"} <= set(REGISTRY)

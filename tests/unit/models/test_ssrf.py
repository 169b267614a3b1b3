"""What is particular to SSRF: context, the pairwise grid, the paper's dimensions, the tied output."""

from __future__ import annotations

import pytest
import torch
from model_factory import COUNTS, batch, make

from ssrf.core import DataError
from ssrf.dataset.batches import SeqBatch
from ssrf.models import build
from ssrf.models.layers.conv import PairwiseCNN


def test_context_changes_ssrf_but_not_ssrf_uc():
    b = batch()
    other = SeqBatch(user=b.user, items=b.items, behaviors=torch.where(b.items > 0, 1, 0))
    full, uc = make("ssrf"), make("ssrf-uc")
    assert not torch.allclose(full.score(b), full.score(other))
    torch.testing.assert_close(uc.score(b), uc.score(other))


def test_pairwise_grid_is_every_ordered_pair():
    """X[a, b] = [e_a ; e_b]: check the grid against an explicit loop."""
    cnn = PairwiseCNN(d=3, window=4, channels=(128, 256), fc_dropout=0.5).eval()
    e = torch.randn(2, 4, 3)
    x = cnn.grid(e)
    assert x.shape == (2, 6, 4, 4)
    for a in range(4):
        for c in range(4):
            torch.testing.assert_close(x[:, :, a, c], torch.cat((e[:, a], e[:, c]), dim=1))


@pytest.mark.parametrize("train", [False, True])
def test_the_factored_first_layer_equals_the_convolution_over_the_grid(train):
    """forward (W_1 e_a + W_2 e_b, no grid) = every layer applied to the explicit grid: outputs and
    gradients, in eval mode and in training mode (batch-norm batch statistics; dropout seeded alike)."""
    torch.manual_seed(0)
    cnn = PairwiseCNN(d=8, window=5, channels=(16, 32), fc_dropout=0.5).train(train)
    e = torch.randn(6, 5, 8, requires_grad=True)
    fast, naive = cnn.first_layer(e), cnn.convs[0](cnn.grid(e))
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)
    torch.manual_seed(1)
    out = cnn(e)
    (g_fast,) = torch.autograd.grad(out.square().sum(), e)
    torch.manual_seed(1)
    ref = cnn.fc(cnn.pool(cnn.convs(cnn.grid(e))).flatten(1))
    (g_naive,) = torch.autograd.grad(ref.square().sum(), e)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_fast, g_naive, rtol=1e-4, atol=1e-5)


def test_tied_output_uses_the_item_and_context_tables():
    m = make("ssrf", tie_output=True)
    assert m.out.rows is None
    table = m.output_table()
    torch.testing.assert_close(table[:, : m.cfg.d], m.item_emb.weight)
    torch.testing.assert_close(table[3, m.cfg.d :], m.item_context(torch.tensor(3)))
    b = batch()
    torch.testing.assert_close(
        m.score(b, torch.tensor([[1, 7], [30, 2], [5, 5]])),
        m.score(b).gather(1, torch.tensor([[1, 7], [30, 2], [5, 5]])),
    )


def test_dimensions_follow_the_paper():
    m = make("ssrf", d=16)
    assert m.fuse.in_features == 3 * 16 and m.fuse.out_features == 16  # W in R^{3d x d}
    assert m.out.rows.weight.shape == (31, 32)  # W' in R^{|I| x 2d} (+ padding row)
    assert make("ssrf-uc", d=16).fuse.in_features == 2 * 16  # no context: 2d x d
    assert m.blocks[0].ffn[0].out_features == 32  # the feed-forward is as wide as the tokens (2d)...
    assert make("ssrf", d=16, ffn=48).blocks[0].ffn[0].out_features == 48  # ... unless ffn says otherwise
    with pytest.raises(DataError, match=r"unknown model option.*dd"):
        build("ssrf", {**COUNTS, "dd": 3})


OPTIONS = [
    {"use_cnn": False},
    {"cnn_input_dropout": 0.3, "user_dropout": 0.3, "fc_dropout": 0.8},
    {"use_user": False, "tie_output": True},
    {"ffn": 48},
]


@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_options_keep_causality_and_padding_invariance(opts):
    m, b = make("ssrf", **opts), batch()
    pos = torch.zeros_like(b.items, dtype=torch.bool)
    pos[:, 5] = True
    items = b.items.clone()
    items[:, 6:] = torch.tensor([[11, 12], [13, 14], [15, 16]])
    later = SeqBatch(user=b.user, items=items, behaviors=b.behaviors)
    torch.testing.assert_close(m.hidden(b, pos), m.hidden(later, pos))
    short = SeqBatch(user=b.user[2:], items=b.items[2:], behaviors=b.behaviors[2:])
    torch.testing.assert_close(m.score(short), m.score(short.trimmed()))


def test_without_the_cnn_only_the_attention_branch_is_fused():
    m = make("ssrf", d=16, use_cnn=False)
    assert m.cnn is None and m.fuse.in_features == 2 * 16
    b = batch()
    last = m.attention(b)[:, -1]  # O_f of the last position
    torch.testing.assert_close(m.hidden(b)[:, :16], m.fuse(last))


def test_input_and_user_dropout_act_in_training_only():
    m, b = make("ssrf", cnn_input_dropout=0.5, user_dropout=0.5), batch()
    torch.testing.assert_close(m.score(b), m.score(b))  # eval: deterministic
    m.train()
    torch.manual_seed(0)
    first = m.hidden(b)
    torch.manual_seed(1)
    assert not torch.allclose(first[:, m.cfg.d :], m.hidden(b)[:, m.cfg.d :])  # P_u half differs
    assert m.user_drop.p == 0.5 and m.cnn_drop.p == 0.5


@pytest.mark.parametrize("tie", [True, False])
def test_without_a_user_the_cut_scoring_equals_the_full_product(tie):
    """P_u = 0, so [O_cf ; 0] . W'_i + b'_i computed in full equals the scoring on the first D columns."""
    m = make("ssrf", use_user=False, tie_output=tie)
    with torch.no_grad():
        m.out.bias.weight.normal_()
    b = batch()
    h = m.hidden(b)
    assert (h[:, m.cfg.d :] == 0).all()
    full = h @ m.output_table().T + m.out.bias.weight.T
    torch.testing.assert_close(m.output(h), full)
    items = torch.tensor([[1, 7], [30, 2], [5, 5]])
    torch.testing.assert_close(m.output(h, items), full.gather(1, items))
    shared = torch.tensor([4, 1, 30])
    torch.testing.assert_close(m.output_shared(h, shared), full[:, shared])

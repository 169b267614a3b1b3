"""What is particular to each baseline: the learned Pop's shared ranking (the default Pop, by training
counts, is in test_reference.py), GRU4Rec's padding-free recurrence, Caser's filters, CosRec's window,
FDSA's two streams."""

from __future__ import annotations

import torch
from model_factory import COUNTS, batch, make
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.caser import CaserConfig, CaserConv
from ssrf.models.registry import load_model, save_model
from ssrf.training.losses import full_softmax_ce


def test_learned_pop_ranks_every_user_by_its_bias():
    m = make("pop", learned=True)
    with torch.no_grad():
        m.item_emb.weight[1:] = torch.randn(30, 1)
    b = batch()
    scores = m.score(b)
    torch.testing.assert_close(scores, m.item_emb.weight.T.expand(3, -1))  # the same row for every user
    other = SeqBatch(user=torch.tensor([4, 5, 1]), items=b.items.flip(0), behaviors=b.behaviors.flip(0))
    torch.testing.assert_close(m.score(other), scores)
    assert torch.equal(scores[0, 1:].argsort(), m.item_emb.weight[1:, 0].argsort())


def test_learned_pop_learns_the_most_frequent_target():
    m = make("pop", learned=True).train()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    targets = torch.tensor([3, 3, 3, 3, 7, 7, 12, 3, 7, 1])
    b = SeqBatch(
        user=torch.arange(10), items=torch.ones(10, 1, dtype=torch.long), behaviors=torch.ones(10, 1)
    )
    for _ in range(30):
        opt.zero_grad()
        full_softmax_ce(m, m.encode(b), targets, torch.ones(10)).backward()
        opt.step()
    top = m.score(b)[0, 1:].topk(3).indices + 1
    assert top.tolist() == [3, 7, 12] or top.tolist() == [3, 7, 1]


def test_gru4rec_equals_a_grucell_run_by_hand_over_the_real_items():
    m = make("gru4rec", d=6, hidden_size=5)
    cell = nn.GRUCell(6, 5)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(m.gru, f"{name}_l0"))
    items = torch.tensor([[0, 0, 0, 4, 9, 2]])
    states = m.states(items)[0]  # [L, H]
    h = torch.zeros(1, 5)
    torch.testing.assert_close(states[:3], torch.zeros(3, 5))  # padding: the state before any item
    for col in range(3, 6):
        h = cell(m.item_emb(items[:, col]), h)
        torch.testing.assert_close(states[col], h[0])
    b = SeqBatch(user=torch.tensor([1]), items=items, behaviors=(items > 0).long())
    torch.testing.assert_close(m.encode(b), m.proj(h))


def test_caser_filters_by_hand():
    cfg = CaserConfig(**COUNTS, d=2, window=3, n_h=1, n_v=2)
    conv = CaserConv(cfg).eval()
    with torch.no_grad():
        for c in conv.horizontal_convs:  # each filter sums its h x d patch
            c.weight.fill_(1.0)
            c.bias.zero_()
        conv.vertical_conv.weight.copy_(torch.tensor([1.0, 0.0, 2.0]).view(1, 1, 3, 1).repeat(2, 1, 1, 1))
        conv.vertical_conv.bias.zero_()
    e = torch.tensor([[[1.0, 2.0], [-5.0, 1.0], [0.5, 0.5]]])  # [T=1, L=3, D=2], row sums 3, -4, 1
    o = conv.horizontal(e)
    assert o.shape == (1, 3)  # n_h * L
    # h=1: max(3, 0, 1); h=2: max(relu(-1), relu(-3)); h=3: relu(0)
    torch.testing.assert_close(o, torch.tensor([[3.0, 0.0, 0.0]]))
    v = conv.vertical(e)
    assert v.shape == (1, 4)  # n_v * D
    torch.testing.assert_close(v, torch.tensor([[2.0, 3.0, 2.0, 3.0]]))  # row 0 + 2 * row 2, per filter
    assert conv.fc.in_features == 3 + 4 and conv.fc.out_features == 2


def test_caser_and_cosrec_read_only_their_window_and_score_untied():
    b = batch()
    for name in ("caser", "cosrec"):
        m = make(name, window=3, d=8)
        items = b.items.clone()
        items[1, :5] = torch.tensor([11, 12, 13, 14, 15])  # older than the last 3 items
        torch.testing.assert_close(
            m.encode(b), m.encode(SeqBatch(user=b.user, items=items, behaviors=b.behaviors))
        )
        items[1, 5] = 16  # inside the window
        assert not torch.allclose(
            m.encode(b)[1], m.encode(SeqBatch(user=b.user, items=items, behaviors=b.behaviors))[1]
        )
        assert m.encode(b).shape == (3, 16) and m.out.rows.weight.shape == (
            31,
            16,
        )  # [z ; P_u], W2 in R^{|I| x 2d}


def test_fdsa_feature_stream_reads_the_fields_and_the_item_stream_does_not():
    m, b = make("fdsa"), batch()
    o_s, o_f = m.streams(b)
    scores = m.score(b)
    m.fields.item_field_0[7] = torch.tensor([6, 5])  # item 7 is the last of row 0 and seen by row 1
    m.fields.item_field_1[7] = torch.tensor([3])
    o_s2, o_f2 = m.streams(b)
    torch.testing.assert_close(o_s2, o_s)
    assert not torch.allclose(o_f2[0, -1], o_f[0, -1]) and not torch.allclose(m.score(b)[0], scores[0])
    torch.testing.assert_close(o_f2[2], o_f[2])  # row 2 never sees item 7
    for t in (
        m.fields.item_field_0,
        m.fields.item_field_1,
    ):  # no fields at all: every item's feature vector is the same
        t.zero_()
    f = m.features(torch.tensor([1, 2, 30]))
    torch.testing.assert_close(f, torch.zeros_like(f))


def test_fdsa_bundle_keeps_the_item_fields(tmp_path):
    m = make("fdsa")
    save_model(tmp_path, "fdsa", m)
    _, back = load_model(tmp_path)
    assert torch.equal(back.fields.item_field_0, m.fields.item_field_0) and back.fields.item_field_0.any()
    torch.testing.assert_close(back.eval().score(batch()), m.score(batch()))


def test_sasrec_feed_forward_width_is_an_option():
    """ffn=0 keeps the paper's d-wide feed-forward; ffn=32 widens its inner layer (RecBole's inner_size)."""
    narrow, wide = make("sasrec", d=16), make("sasrec", d=16, ffn=32)
    assert narrow.blocks[0].ffn[0].weight.shape == (16, 16)
    assert wide.blocks[0].ffn[0].weight.shape == (32, 16) and wide.blocks[0].ffn[3].weight.shape == (16, 32)
    scores = wide.score(batch())
    assert scores.shape == (3, 31) and torch.isfinite(scores).all()

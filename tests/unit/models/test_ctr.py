"""What is particular to the CTR models: the identities their full ranking rests on (FM's O(kn) sum, NFM's
bi-interaction pooling, DCN's cross layer, DIN's masked attention), each model equal to its paper's formula
computed pair by pair over the concatenated fields, the catalogue scored in chunks equal to the candidates
scored row by row, a clear error for a full-catalogue loss that cannot fit, and each model overfitting a
small real sample with the trainer's bce loss."""

from __future__ import annotations

import itertools

import pytest
import torch
from model_factory import batch, make

from ssrf import pipeline
from ssrf.dataset.batches import SeqBatch, train_batch
from ssrf.dataset.prepare import PrepareConfig
from ssrf.dataset.sequences import Sequences
from ssrf.models import build, config_fields
from ssrf.models.ctr import fields as ctr_fields
from ssrf.models.ctr.dcn import CrossNetwork
from ssrf.models.ctr.layers import bi_interaction
from ssrf.models.layers.sequence import last_position, recent_windows
from ssrf.training.losses import bce_with_negatives, sample_negatives

CTR = ("fm", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint")
CANDIDATES = torch.tensor([[1, 7, 30], [30, 2, 9], [5, 5, 0]])


def randomise(m: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random (first-order weights, biases and cross tables start at zero)."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return m


def example(name: str, **opts) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A tiny model with random weights; the users [T] and histories [T, n] of the batch's last positions."""
    m = randomise(make(name, **opts))
    b = batch()
    history = recent_windows(b.items, last_position(b.items), m.cfg.history)
    return m, b.user, history, m.hidden(b)


def pair_fields(m, user, history, items, tables=None) -> torch.Tensor:
    """Every (row, candidate) pair's fields, built pair by pair: [T, C, M, W] = [query ; candidate fields]."""
    tables = m.emb if tables is None else tables
    q = m.query_fields(tables, user, history)  # [T, Fq, W]
    c = m.item_fields(tables, items)  # [T, C, Fi, W]
    return torch.cat((q[:, None].expand(-1, items.shape[1], -1, -1), c), dim=2)


def pairwise_sum(v: torch.Tensor) -> torch.Tensor:
    """sum_{i<j} v_i * v_j over the fields v [..., F, D], one pair at a time."""
    return sum(v[..., i, :] * v[..., j, :] for i, j in itertools.combinations(range(v.shape[-2]), 2))


def test_fm_identity_equals_the_explicit_pairwise_sum():
    v = torch.randn(4, 3, 6, 5)
    explicit = torch.zeros(4, 3)
    for i in range(6):
        for j in range(i + 1, 6):
            explicit += (v[..., i, :] * v[..., j, :]).sum(-1)  # <v_i, v_j>
    torch.testing.assert_close(bi_interaction(v).sum(-1), explicit)


def test_nfm_bi_interaction_pooling_equals_its_definition():
    v = torch.randn(4, 3, 6, 5)
    torch.testing.assert_close(bi_interaction(v), pairwise_sum(v))  # f_BI = sum_{i<j} v_i * v_j, a vector
    assert bi_interaction(v[..., :1, :]).abs().max() == 0  # one field: no pairs


def test_dcn_cross_layer_is_x0_xT_w_plus_b_plus_x():
    net = CrossNetwork(5, 3)
    with torch.no_grad():
        net.b.normal_()
    x0 = torch.randn(5)
    x = x0
    for w, b in zip(net.w, net.b, strict=True):
        x = torch.outer(x0, x) @ w + b + x  # eq. 3, the matrix x_0 x_l^T built
    torch.testing.assert_close(net(x0), x)
    one = CrossNetwork(5, 1)
    torch.testing.assert_close(one(x0), torch.outer(x0, x0) @ one.w[0] + one.b[0] + x0)
    alpha, beta = net.closed_form(x0 @ net.w.T)  # the form full ranking uses: x_L = alpha x_0 + beta
    torch.testing.assert_close(alpha * x0 + beta, x)


def test_fm_scores_are_its_equation_over_the_fields():
    m, user, history, h = example("fm")
    x = pair_fields(m, user, history, CANDIDATES)  # [T, C, M, D]
    w = pair_fields(m, user, history, CANDIDATES, m.first_order).sum((-2, -1))
    pairs = sum(
        (x[..., i, :] * x[..., j, :]).sum(-1) for i, j in itertools.combinations(range(x.shape[2]), 2)
    )
    expected = m.w0 + w + pairs  # eq. 1
    torch.testing.assert_close(m.output(h, CANDIDATES), expected)
    torch.testing.assert_close(m.output(h).gather(1, CANDIDATES), expected)


def test_nfm_and_deepfm_scores_are_their_equations_over_the_fields():
    m, user, history, h = example("nfm")
    x = pair_fields(m, user, history, CANDIDATES)
    w = pair_fields(m, user, history, CANDIDATES, m.first_order).sum((-2, -1))
    expected = m.w0 + w + m.h(m.mlp(pairwise_sum(x))).squeeze(-1)  # NFM eq. 1-5
    torch.testing.assert_close(m.output(h, CANDIDATES), expected)
    torch.testing.assert_close(m.output(h).gather(1, CANDIDATES), expected)

    m, user, history, h = example("deepfm")
    x = pair_fields(m, user, history, CANDIDATES)
    w = pair_fields(m, user, history, CANDIDATES, m.first_order).sum((-2, -1))
    y_fm = w + pairwise_sum(x).sum(-1)
    y_dnn = m.out(m.mlp(x.flatten(-2))).squeeze(-1)  # a^(0) = [e_1, ..., e_m]
    torch.testing.assert_close(m.output(h, CANDIDATES), y_fm + y_dnn)


def test_wide_deep_scores_are_its_equation_with_cross_products_of_values():
    m, user, history, h = example("wide_deep")
    x = pair_fields(m, user, history, CANDIDATES)
    wide = pair_fields(m, user, history, CANDIDATES, m.first_order).sum((-2, -1))  # w^T x
    for f, table in enumerate(m.cross):  # phi(x): each (history value a, candidate value b), by hand
        values = getattr(m, f"item_field_{f}")
        for t in range(len(user)):
            items = [int(i) for i in history[t] if i != 0]
            for c, cand in enumerate(CANDIDATES[t].tolist()):
                b_values = [int(v) for v in values[cand] if v != 0]
                for item in items:
                    a_values = [int(v) for v in values[item] if v != 0]
                    for a in a_values:
                        for b in b_values:
                            share = 1 / len(items) / len(a_values) / len(b_values)
                            wide[t, c] += share * table.weight[a, b]
    expected = wide + m.out(m.mlp(x.flatten(-2))).squeeze(-1)
    torch.testing.assert_close(m.output(h, CANDIDATES), expected)
    torch.testing.assert_close(m.output(h).gather(1, CANDIDATES), expected)


def test_dcn_scores_are_its_equation_over_the_fields():
    m, user, history, h = example("dcn")
    x0 = pair_fields(m, user, history, CANDIDATES).flatten(-2)  # the stacked embeddings
    expected = m.logits(torch.cat((m.cross(x0), m.mlp(x0)), dim=-1)).squeeze(-1)  # eq. 5
    torch.testing.assert_close(m.output(h, CANDIDATES), expected)
    torch.testing.assert_close(m.output(h).gather(1, CANDIDATES), expected)


@pytest.mark.parametrize("layers", [1, 2])
def test_autoint_scores_are_its_equation_over_the_fields(layers):
    m, user, history, h = example("autoint", layers=layers)
    x = pair_fields(m, user, history, CANDIDATES)  # [T, C, M, D]
    for layer in m.interacting:
        x = layer(x)  # eq. 5-9 over each pair's own fields
    expected = m.out(x.flatten(-2)).squeeze(-1)
    torch.testing.assert_close(m.output(h, CANDIDATES), expected)
    torch.testing.assert_close(m.output(h).gather(1, CANDIDATES), expected)


def din_by_hand(m, user, history, items) -> torch.Tensor:
    """DIN pair by pair: the activation unit on the concatenation [e ; v ; e - v ; e * v], the weighted sum
    of the real behaviours (no softmax), the MLP over [profile ; v_U ; ad]."""
    goods = m.item_fields(m.emb, history).flatten(-2)  # [T, n, E]
    out = torch.zeros(items.shape)
    for t in range(len(user)):
        for c, cand in enumerate(items[t]):
            v = m.item_fields(m.emb, cand).flatten()  # the ad
            v_u = torch.zeros_like(v)
            for j, item in enumerate(history[t]):
                if item == 0:
                    continue
                e = goods[t, j]
                unit = m.unit
                a = unit.out(unit.act(unit.hidden(torch.cat((e, v, e - v, e * v)))))
                v_u = v_u + a * e
            out[t, c] = m.out(m.mlp(torch.cat((m.emb.user(user[t]), v_u, v))))[0]
    return out


def test_din_scores_are_its_equation_pair_by_pair():
    m, user, history, h = example("din")
    expected = din_by_hand(m, user, history, CANDIDATES)
    torch.testing.assert_close(m.output(h, CANDIDATES), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(m.output(h).gather(1, CANDIDATES), expected, rtol=1e-4, atol=1e-4)


def test_din_attention_ignores_padded_history():
    m, _, history, h = example("din")
    assert (history == 0).any(dim=1)[[0, 2]].all()  # rows 0 and 2 have padded behaviour slots
    before, before_all = m.output(h, CANDIDATES), m.output(h)
    n, d = m.cfg.history, m.cfg.d
    goods = h[:, d + n :].view(len(h), n, -1).clone()
    padded = history == 0
    goods[padded] = torch.randn(int(padded.sum()), goods.shape[-1])  # whatever a padded slot holds
    changed = torch.cat((h[:, : d + n], goods.flatten(1)), dim=1)
    torch.testing.assert_close(m.output(changed, CANDIDATES), before)
    torch.testing.assert_close(m.output(changed), before_all)
    with torch.no_grad():  # even a non-zero padding row of the item table
        m.emb.item.weight[0] = torch.randn(d)
    torch.testing.assert_close(m.output(m.hidden(batch()), CANDIDATES[:, :2]), before[:, :2])
    goods[~padded] += 1.0  # the real behaviours do matter
    moved = torch.cat((h[:, : d + n], goods.flatten(1)), dim=1)
    assert not torch.allclose(m.output(moved, CANDIDATES), before)


@pytest.mark.parametrize("name", CTR, ids=str)
def test_catalogue_in_chunks_equals_every_candidate_row_by_row(name, monkeypatch):
    """The fast path (chunks of items shared by every row, 7 at a time here) against the per-row path with
    every item as a candidate, at every position of the batch. In float64: the two paths sum in another
    order, and float32's rounding through DCN's cross layers differs by about 1e-5 on some CPUs."""
    m = randomise(make(name)).double()
    b = batch()
    monkeypatch.setattr(ctr_fields, "PAIR_BUDGET", 1)
    monkeypatch.setattr(ctr_fields, "MIN_CHUNK", 7)
    with torch.no_grad():
        h = m.hidden(b, b.items != 0)  # [T, .]: 17 positions
        every = torch.arange(31).expand(len(h), -1)
        torch.testing.assert_close(m.output(h), m.output(h, every), rtol=1e-5, atol=1e-5)
        shared = torch.tensor([4, 30, 1, 4, 17, 9, 2, 11, 12])  # e.g. sampled negatives, in two chunks
        expected = m.output(h, shared.expand(len(h), -1))
        torch.testing.assert_close(m.output_shared(h, shared), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.output_shared(h, shared), expected, rtol=1e-5, atol=1e-5)  # with autograd


def test_a_full_catalogue_loss_that_cannot_fit_is_a_clear_error():
    h = torch.randn(2000, 2 * 64, requires_grad=True)  # 2000 positions: user and history fields
    dcn = build("dcn", {"n_items": 5000, "n_users": 3})
    with pytest.raises(ValueError, match='loss="bce"'):
        dcn.output(h)
    with pytest.raises(ValueError, match='loss="bce"'):  # sampled softmax's 4096 shared negatives too
        dcn.output_shared(h, torch.arange(1, 4097))
    with torch.no_grad():  # evaluation scores it in chunks
        assert dcn.output(h[:4]).shape == (4, 5001)
    fm = build("fm", {"n_items": 5000, "n_users": 3})  # a matrix product per batch: ce works for FM
    assert fm.output(torch.randn(2000, 65, requires_grad=True)).shape == (2000, 5001)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Sequences:
    cfg = PrepareConfig(sample_users=30, seed=5, min_user_events=5, min_item_events=3, split="loo")
    root = tmp_path_factory.mktemp("prepared")
    return Sequences.build(pipeline.prepare([pipeline.demo_data_path()], "taobao", cfg, root=root))


@pytest.mark.parametrize("name", CTR, ids=str)
def test_overfits_a_small_real_sample_with_bce(name, sample):
    """The trainer's loss on every training position of 30 Taobao users (~200 items): the loss falls
    clearly and the training targets rank in the top 10 of all items."""
    torch.manual_seed(0)
    options = {k: v for k, v in {"d": 16, "max_len": 20, "dropout": 0.0}.items() if k in config_fields(name)}
    m = pipeline.build_model(name, options, sample)
    b = train_batch(sample, sample.train_chunks(20), 20).trimmed()
    positions = b.targets != 0
    targets = b.targets[positions]
    optimizer = torch.optim.Adam(m.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(0)
    losses = []
    m.train()
    for _ in range(100):
        negatives = sample_negatives(targets, sample.n_items, 3, gen)
        loss = bce_with_negatives(
            m, m.hidden(b, positions), targets, torch.ones(len(targets)), 1.0, negatives
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    m.eval()
    with torch.no_grad():
        scores = m.output(m.hidden(b, positions))
    scores[:, 0] = float("-inf")
    rank = (scores > scores.gather(1, targets[:, None])).sum(1)
    hr10 = (rank < 10).float().mean().item()
    assert losses[-1] < 0.2 * losses[0], losses[:: len(losses) // 5]
    assert hr10 > 0.9, hr10  # against 10 / ~200 by chance
    assert len(targets) > 500 and sample.n_items > 150


def test_ctr_models_keep_item_fields_in_their_bundle(tmp_path):
    from ssrf.models.registry import load_model, save_model

    m = randomise(make("din"))
    save_model(tmp_path, "din", m)
    _, back = load_model(tmp_path)
    assert torch.equal(back.item_field_0, m.item_field_0) and back.item_field_0.any()
    torch.testing.assert_close(back.eval().score(batch()), m.score(batch()))


def test_only_the_last_n_items_reach_a_position():
    b = batch()
    m = randomise(make("deepfm", history=3))
    items = b.items.clone()
    items[1, :4] = torch.tensor([11, 12, 13, 14])  # row 1's items older than its last 3
    other = SeqBatch(user=b.user, items=items, behaviors=b.behaviors)
    torch.testing.assert_close(m.score(other), m.score(b))
    items[1, 6] = 20  # inside the window
    inside = SeqBatch(user=b.user, items=items, behaviors=b.behaviors)
    assert not torch.allclose(m.score(inside)[1], m.score(b)[1])

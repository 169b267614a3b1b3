"""DIF-SR: the decoupled attention scores against a hand computation, the three fusions, the auxiliary
attribute loss, and overfitting a small real sample (the embedded Taobao subset)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from model_factory import batch, make

from ssrf import pipeline
from ssrf.core import DataError
from ssrf.dataset.batches import SeqBatch
from ssrf.dataset.prepare import PrepareConfig
from ssrf.models import build
from ssrf.models.layers.attention import causal_mask
from ssrf.pipeline import RunConfig

TINY = dict(d=8, attr_d=4, heads=2, blocks=1, dropout=0.0, attn_dropout=0.0)


def inputs(m, b: SeqBatch):
    """What the first layer's attention sees: item queries and keys, attribute and position embeddings."""
    attention = m.blocks[0].attention
    length = b.items.shape[1]
    x = m.emb_ln(m.item_emb(b.items))
    pos = m.pos_emb(torch.arange(m.cfg.max_len - length, m.cfg.max_len))
    q, k, _ = attention.split(attention.item_qkv(x), 3)
    return attention, x, m.attributes(b.items), pos, q, k


def heads(t: torch.Tensor, h: int) -> torch.Tensor:
    """[..., L, w] -> [..., h, L, w / h] (head i: columns i * w/h .. (i + 1) * w/h)."""
    *lead, length, w = t.shape
    return t.reshape(*lead, length, h, w // h).transpose(-3, -2)


def qk(linear: torch.nn.Linear, e: torch.Tensor, h: int) -> torch.Tensor:
    """e Q^T-by-head scores: queries = the first half of linear's output, keys the second half."""
    w = linear.out_features // 2
    y = e @ linear.weight.T + linear.bias
    return heads(y[..., :w], h) @ heads(y[..., w:], h).transpose(-1, -2)


@pytest.mark.parametrize("fields", [(), (7,)], ids=["no attributes", "one attribute"])
def test_sum_fusion_scores_equal_a_hand_computation(fields):
    widths = (2,) * len(fields)
    torch.manual_seed(0)
    m = build(
        "dif_sr", dict(n_items=30, max_len=8, field_sizes=fields, field_widths=widths, fusion="sum", **TINY)
    )
    if fields:
        m.set_item_fields([torch.randint(0, 7, (31, 2), generator=torch.Generator().manual_seed(1))])
    m.eval()
    b = batch()
    attention, x, attrs, pos, q, k = inputs(m, b)
    mask = causal_mask(b.items)
    got = attention.scores(q, k, attrs, pos, mask)
    # item: (x W_Q^T + b_Q)(x W_K^T + b_K)^T per head; position: the same from the position embeddings;
    # attribute: the sum-pooled attribute embeddings through their own (narrower) projections
    w = attention.item_qkv.weight
    bias = attention.item_qkv.bias
    item = heads(x @ w[:8].T + bias[:8], 2) @ heads(x @ w[8:16].T + bias[8:16], 2).transpose(-1, -2)
    expected = item + qk(attention.pos_qk, pos, 2)
    if fields:
        ids = m.fields.item_field_0[b.items]  # [B, L, 2]
        e = m.fields.embs[0].weight[ids].sum(-2)  # id 0's row is 0
        assert e.shape == (3, 8, 4)
        expected = expected + qk(attention.attr_qk[0], e, 2)
    expected = expected / 2.0  # sqrt(d / heads) = sqrt(4)
    torch.testing.assert_close(got[mask.expand_as(got)], expected[mask.expand_as(expected)])


def test_gate_and_concat_fusion_scores_equal_a_hand_computation():
    torch.manual_seed(0)
    opts = dict(n_items=30, max_len=8, field_sizes=(7,), field_widths=(2,), **TINY)
    table = torch.randint(0, 7, (31, 2), generator=torch.Generator().manual_seed(1))
    b = batch()
    mask = causal_mask(b.items)
    for fusion in ("gate", "concat"):
        m = build("dif_sr", {**opts, "fusion": fusion})
        m.set_item_fields([table])
        m.eval()
        attention, _, attrs, pos, q, k = inputs(m, b)
        rows = [  # the sources in the authors' order: attributes, item, position; masked keys 0
            qk(attention.attr_qk[0], attrs[0], 2),
            q @ k.transpose(-1, -2),
            qk(attention.pos_qk, pos, 2).expand(3, -1, -1, -1),
        ]
        rows = [r * mask for r in rows]  # L = max_len here: no padding to max_len
        if fusion == "gate":
            energy = torch.stack([attention.gate(r) for r in rows], dim=-1)  # [B, H, L, 1, S]
            weights = energy.softmax(-1)
            fused = sum(weights[..., 0, s : s + 1] * r for s, r in enumerate(rows))
        else:
            fused = attention.fuse(torch.cat(rows, dim=-1))
        got = attention.scores(q, k, attrs, pos, mask)
        torch.testing.assert_close(got[mask.expand_as(got)], (fused / 2.0)[mask.expand_as(fused)])


@pytest.mark.parametrize("fusion", ["sum", "concat", "gate"])
def test_each_fusion_is_causal_and_ignores_left_padding(fusion):
    m, b = make("dif_sr", fusion=fusion, **TINY), batch()
    pos = torch.zeros_like(b.items, dtype=torch.bool)
    pos[:, 5] = True
    before = m.hidden(b, pos)
    items = b.items.clone()
    items[:, 6:] = torch.tensor([[11, 12], [13, 14], [15, 16]])
    torch.testing.assert_close(
        before, m.hidden(SeqBatch(user=b.user, items=items, behaviors=b.behaviors), pos)
    )
    short = SeqBatch(user=b.user[2:], items=b.items[2:], behaviors=b.behaviors[2:])
    torch.testing.assert_close(m.score(short), m.score(short.trimmed()))


def test_the_fusions_differ_with_the_same_weights():
    b = batch()
    base = make("dif_sr", fusion="sum", **TINY)
    outputs = {"sum": base.encode(b)}
    for fusion in ("concat", "gate"):
        m = make("dif_sr", fusion=fusion, **TINY)
        missing, unexpected = m.load_state_dict(base.state_dict(), strict=False)
        assert not unexpected and all(".attention.fuse." in k or ".attention.gate." in k for k in missing)
        outputs[fusion] = m.encode(b)
        assert torch.isfinite(outputs[fusion]).all()
    assert not torch.allclose(outputs["sum"], outputs["concat"])
    assert not torch.allclose(outputs["sum"], outputs["gate"])
    assert not torch.allclose(outputs["concat"], outputs["gate"])


def test_options_are_checked():
    with pytest.raises(DataError, match=r"model_options\.fusion"):
        build("dif_sr", {"n_items": 5, "fusion": "product"})
    with pytest.raises(DataError, match="attr_d must be divisible by heads"):
        build("dif_sr", {"n_items": 5, "attr_d": 12, "heads": 8})
    with pytest.raises(DataError, match=r"model_options\.attr_loss_weight"):
        build("dif_sr", {"n_items": 5, "attr_loss_weight": -1.0})


def test_the_attribute_loss_is_a_multi_label_bce_on_the_target_attributes():
    m, b = make("dif_sr", **TINY), batch()
    h = m.hidden(b, b.items != 0)
    targets = torch.arange(1, h.shape[0] + 1)
    loss = m.auxiliary_loss(b, b.items != 0, h, targets)
    expected = 0.0
    for i, size in enumerate((7, 4)):
        labels = torch.zeros(h.shape[0], size)
        for row, item in enumerate(targets):
            labels[row, getattr(m.fields, f"item_field_{i}")[item]] = 1.0
        logits = m.predictors[i](h)
        expected += F.binary_cross_entropy_with_logits(logits[:, 1:], labels[:, 1:])
    torch.testing.assert_close(loss, 10.0 * expected)  # lambda = 10, the Beauty default
    assert make("dif_sr", attr_loss_weight=0.0, **TINY).auxiliary_loss(b, b.items != 0, h, targets) is None
    no_fields = build("dif_sr", {"n_items": 30, "max_len": 8, **TINY})
    assert no_fields.auxiliary_loss(b, b.items != 0, no_fields.hidden(b, b.items != 0), targets) is None


def test_the_attribute_loss_falls_when_trained():
    m, b = make("dif_sr", **TINY), batch()
    m.train()
    positions = b.items != 0
    targets = torch.arange(1, int(positions.sum()) + 1)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = m.auxiliary_loss(b, positions, m.hidden(b, positions), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_dif_sr_overfits_a_small_real_sample(tmp_path):
    """The training loss (next-item CE + lambda * attribute BCE) falls to under 0.3 of its start. With
    lambda = 1 the attribute term is at most ~0.7 of a start of ~6, so the item loss itself must fall."""
    root = tmp_path / "prepared"
    cfg = PrepareConfig(sample_users=80, seed=5, min_user_events=5, min_item_events=3, split="loo")
    data = pipeline.prepare([pipeline.demo_data_path()], "taobao", cfg, root=root)
    assert data.meta["fields"], "the sample has item attributes (the category)"
    small = {"d": 64, "attr_d": 8, "heads": 2, "blocks": 1, "ffn": 64, "max_len": 10}
    run = RunConfig.from_dict(
        {
            "model": "dif_sr",
            "model_options": small | {"dropout": 0.0, "attn_dropout": 0.0, "attr_loss_weight": 1.0},
            "train": {
                "epochs": 25,
                "batch_size": 16,
                "loss": "ce",
                "lr": 0.01,
                "checkpoint_every": 0,
                "patience": 100,
            },
        }
    )
    pipeline.train(data, run, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["loss"], rows[-1]["loss"]
    assert last < 0.3 * first, (first, last)

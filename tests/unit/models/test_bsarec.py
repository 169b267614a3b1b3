"""BSARec: the frequency filter against a direct FFT, the per-prefix `hidden` against encoding each prefix on
its own (chunked and checkpointed too), and overfitting a small real sample (the embedded Taobao subset)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_factory import batch, make

from ssrf import pipeline
from ssrf.dataset.batches import SeqBatch
from ssrf.dataset.prepare import PrepareConfig
from ssrf.models import build
from ssrf.models.bsarec import FrequencyFilter
from ssrf.models.layers import prefix
from ssrf.pipeline import RunConfig


def hand_made(length: int) -> np.ndarray:
    t = np.arange(length)[None, :, None]
    waves = np.cos(2 * np.pi * t * np.arange(1, 4) / length)  # [1, L, 3]: frequencies 1, 2 and 3
    return (waves + np.random.default_rng(0).normal(size=(2, length, 3))).astype(np.float32)


@pytest.mark.parametrize(("length", "c"), [(8, 3), (8, 5), (7, 5), (10, 1), (8, 4)])
def test_the_filter_keeps_the_c_lowest_frequencies_and_rescales_the_rest(length, c):
    x = hand_made(length)
    f = FrequencyFilter(d=3, c=c, dropout=0.0)
    low, high = (a.detach().numpy() for a in f.split(torch.from_numpy(x)))
    spectrum = np.fft.fft(x, axis=1)  # the full spectrum: bins 0, 1, ..., L - 1 (= -1)
    freq = np.abs(np.fft.fftfreq(length) * length)  # |frequency| of each bin
    kept = freq <= c // 2  # DC and +-1, ..., +-(c // 2): the c lowest for an odd c (the authors' rule)
    assert kept.sum() == c or c % 2 == 0
    expected = np.zeros_like(spectrum)
    expected[:, kept] = spectrum[:, kept]
    np.testing.assert_allclose(np.fft.fft(low, axis=1), expected, atol=1e-4)
    np.testing.assert_allclose(low, np.fft.ifft(expected, axis=1).real, atol=1e-5)
    np.testing.assert_allclose(low + high, x, atol=1e-6)
    beta = np.array([0.0, 0.5, 2.0], dtype=np.float32)
    with torch.no_grad():
        f.sqrt_beta.copy_(torch.from_numpy(np.sqrt(beta))[None, None])
        out = f.filtered(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, low + beta * (x - low), atol=1e-5)
    with torch.no_grad():  # beta = 1: the filter gives the input back
        f.sqrt_beta.fill_(1.0)
        torch.testing.assert_close(f.filtered(torch.from_numpy(x)), torch.from_numpy(x), atol=1e-5, rtol=0)


def test_the_beauty_defaults_have_the_authors_parameter_count():
    model = build("bsarec", {"n_items": 12101})  # their log (src/output/BSARec_Beauty_best.log): 878208
    assert sum(p.numel() for p in model.parameters()) == 878208


def test_hidden_at_positions_is_each_prefix_encoded_on_its_own():
    m, b = make("bsarec"), batch()
    positions = b.items != 0
    got = m.hidden(b, positions)
    expected = [
        m.encode(
            SeqBatch(
                user=b.user[i : i + 1],
                items=b.items[i : i + 1, : t + 1],
                behaviors=b.behaviors[i : i + 1, : t + 1],
            )
        )[0]
        for i, t in positions.nonzero().tolist()
    ]
    torch.testing.assert_close(got, torch.stack(expected))
    torch.testing.assert_close(m.hidden(b.trimmed(), positions[:, -b.trimmed().items.shape[1] :]), got)
    last = torch.zeros_like(positions)
    last[:, -1] = True
    torch.testing.assert_close(m.hidden(b, last), m.encode(b))
    assert m.hidden(b, torch.zeros_like(positions)).shape == (0, m.cfg.d)

    def loss(h: torch.Tensor) -> torch.Tensor:
        m.zero_grad()
        m.output(h).logsumexp(-1).sum().backward()
        return m.item_emb.weight.grad.clone()

    whole = loss(m.hidden(b, positions))  # in one piece; then in chunks of 3 prefixes, checkpointed
    chunked = prefix.last_of_prefixes(
        m.encode_last, b, positions, m.cfg.max_len, max_tokens=3 * m.cfg.max_len
    )
    torch.testing.assert_close(chunked, got)
    torch.testing.assert_close(loss(chunked), whole)


def test_bsarec_overfits_a_small_real_sample(tmp_path):
    cfg = PrepareConfig(sample_users=60, seed=3, min_user_events=5, min_item_events=3, split="loo")
    data = pipeline.prepare([pipeline.demo_data_path()], "taobao", cfg, root=tmp_path / "prep")
    run = RunConfig.from_dict(
        {
            "model": "bsarec",
            "model_options": {"d": 32, "max_len": 12, "dropout": 0.0, "attn_dropout": 0.0},
            "train": {
                "epochs": 20,
                "batch_size": 16,
                "loss": "ce",
                "lr": 1e-2,
                "checkpoint_every": 0,
                "patience": 100,
            },
        }
    )
    pipeline.train(data, run, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["loss"], rows[-1]["loss"]
    assert last < 0.33 * first, (first, last)  # 5.3 -> 1.3 (the authors' N(0, 0.02) init is slower)

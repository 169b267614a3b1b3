"""The predictor's user cache and its one scoring pass per batch (`ssrf.serving.predictor`): a known user's
stored-history representation computed at load gives the same answers as the forward pass it replaces,
alone or mixed with history queries of other lengths, exactly or through a flat FAISS index; it is skipped,
and says why, when it does not fit or the model's representation is not a vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssrf import pipeline
from ssrf.serving.predictor import Event, Predictor, Query


@pytest.fixture(scope="module")
def plain(serving_run) -> Predictor:
    return Predictor.load(serving_run)


@pytest.fixture(scope="module", params=["exact", "faiss-flat"])
def cached(serving_run, request) -> Predictor:
    return Predictor.load(serving_run, index=request.param, user_cache_mb=64)


def mixed_queries(p: Predictor) -> list[Query]:
    """Stored users, new users' histories of 1..9 events, stored users plus events, and a stored user whose
    events are all unknown (so their stored history alone is scored): 40 queries of many lengths."""
    users = list(p.data.vocabs["user"].raw[1:21])
    items = list(p.data.vocabs["item"].raw[1:40])
    rng = np.random.default_rng(0)
    queries = [Query(u, (), 7) for u in users[:12]]
    queries += [Query(None, tuple(Event(i) for i in rng.choice(items, n)), 5) for n in range(1, 10)]
    queries += [Query(u, tuple(Event(i) for i in rng.choice(items, 3)), 6) for u in users[12:18]]
    queries += [Query(users[18], (Event("no-such-item"),), 4), Query(users[19], (), 9, include_seen=True)]
    queries += [Query(u, (), 3) for u in users[:11]]  # repeats, in another batch position
    return queries


def assert_same(a, b) -> None:
    assert [r.item for r in a] == [r.item for r in b]
    np.testing.assert_allclose([r.score for r in a], [r.score for r in b], rtol=1e-5, atol=1e-5)


def test_a_batch_with_cached_users_answers_what_each_query_alone_gets_without_a_cache(cached, plain):
    info = cached.cache_info
    stored = int((np.diff(plain.seqs.ptr)[1:] > 0).sum())
    assert info["cached"] and info["users"] == stored and info["dim"] == cached.vector_width
    assert info["memory_bytes"] == (plain.data.n_users + 1) * cached.vector_width * 4
    queries = mixed_queries(plain)
    assert len(queries) >= 16  # the length groups are used
    batched = cached.answer(queries)
    for q, got in zip(queries, batched, strict=True):
        (alone,) = plain.answer([q])
        assert_same(got.items, alone.items)
        assert got.warnings == alone.warnings
    assert batched[20 + 1 + 6].warnings == ["history[0]: unknown item 'no-such-item' ignored"]


def test_cached_users_skip_the_forward_pass(serving_run, monkeypatch):
    p = Predictor.load(serving_run, user_cache_mb=64)
    calls: list[int] = []
    encode = p.model.encode
    monkeypatch.setattr(p.model, "encode", lambda batch: calls.append(len(batch)) or encode(batch))
    users = list(p.data.vocabs["user"].raw[1:31])
    p.recommend(users, 10)
    assert calls == []
    item = p.data.vocabs["item"].raw[3]
    p.answer([Query(u, (), 5) for u in users[:20]] + [Query(users[0], (Event(item),), 5)])
    assert calls == [1]  # only the query with new events is encoded


def test_the_cache_is_skipped_and_says_why(serving_run, plain):
    assert plain.cache_info["cached"] is False and plain.cache_info["reason"] == "off (user_cache_mb = 0)"
    assert plain.user_reps is None
    small = Predictor.load(serving_run, user_cache_mb=0.001)
    assert small.user_reps is None and "over the 0.001 MB budget" in small.cache_info["reason"]
    for name, vector in (("repeat", False), ("random", False), ("sasrec", True)):
        model = pipeline.build_model(name, {"max_len": 10}, plain.seqs)
        p = Predictor(name, model, plain.data, torch.device("cpu"), user_cache_mb=64)
        assert (p.vector_width is not None) is vector and p.cache_info["cached"] is vector, name
        if not vector:
            assert "not a fixed-width float vector" in p.cache_info["reason"]
        users = list(plain.data.vocabs["user"].raw[1:21])
        uncached = Predictor(name, model, plain.data, torch.device("cpu"))
        for got, want in zip(p.recommend(users, 5), uncached.recommend(users, 5), strict=True):
            assert_same(got, want)

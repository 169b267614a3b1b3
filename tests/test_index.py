"""Item indexes (`ssrf.serving.index`) and the predictor behind them: FAISS top-K equals exact top-K with a
flat index, the history mask and the bias are honoured, models whose scores are not inner products keep
exact scoring with the reason, and a real tiny run serves the same items through FAISS as exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from model_factory import batch, make

from ssrf import pipeline
from ssrf.core import DataError
from ssrf.models import REGISTRY
from ssrf.serving.index import (
    ExactIndex,
    FaissIndex,
    IndexSettings,
    NotInnerProduct,
    auto_ef_search,
    dot_form,
    index_settings,
)
from ssrf.serving.predictor import Event, Predictor, Query

NOT_INNER_PRODUCT = {"random", "repeat", "wide_deep", "nfm", "deepfm", "dcn", "din", "autoint"}
FLAT = IndexSettings("flat")


def catalogue(n: int = 400, d: int = 12, queries: int = 25, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, d + 1)).astype(np.float32)
    rows[:, :d] *= rng.lognormal(0, 0.3, n).astype(np.float32)[:, None]
    q = np.concatenate((rng.standard_normal((queries, d)), np.ones((queries, 1))), 1).astype(np.float32)
    return rows, q


def same_top(a, b) -> None:
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-5)


# the indexes on matrices


def test_flat_faiss_equals_exact_with_and_without_masks():
    rows, q = catalogue()
    exact, flat = ExactIndex(rows), FaissIndex(rows, FLAT)
    same_top(flat.search(q, 10), exact.search(q, 10))
    rng = np.random.default_rng(1)
    masks = [rng.integers(1, len(rows) + 1, 30) for _ in q]
    same_top(flat.search(q, 10, masks), exact.search(q, 10, masks))
    assert flat.search(q, 10, masks).complete.all()


def test_masked_items_never_come_back_even_when_they_are_the_best():
    rows, q = catalogue()
    exact = ExactIndex(rows).search(q, 40)
    masks = [top[:30] for top in exact.items]  # the 30 best of each query masked
    for settings in (FLAT, IndexSettings("hnsw", ef_search=64), IndexSettings("ivf", nlist=8, nprobe=8)):
        hits = FaissIndex(rows, settings).search(q, 10, masks)
        for found, mask, want in zip(hits.items, masks, exact.items, strict=True):
            assert not set(found) & set(mask)
            assert 0 not in found  # padding is never an item
            if settings.kind != "hnsw":  # flat and a full IVF scan are exact: the 31st..40th best
                np.testing.assert_array_equal(found, want[30:40])


def test_more_masked_items_than_the_index_fetches_is_flagged_not_guessed():
    rows, q = catalogue(queries=3)
    masks = list(ExactIndex(rows).search(q, 300).items)  # the 300 best masked, the index fetches only 50
    hits = FaissIndex(rows, IndexSettings("flat", max_fetch=50)).search(q, 10, masks)
    assert not hits.complete.any()
    assert not set(hits.items[hits.items > 0]) & set(masks[0])
    whole = [np.arange(1, 401)] * 3  # everything masked: nothing to find, and that is complete
    empty = FaissIndex(rows, FLAT).search(q, 10, whole)
    assert (empty.items == -1).all() and empty.complete.all()


def test_the_bias_dimension_decides_when_the_rows_tie():
    n, d = 300, 8
    rows = np.zeros((n, d + 1), dtype=np.float32)
    rows[:, :d] = 1.0  # every row the same: only the bias orders the items
    rows[:, d] = np.random.default_rng(0).permutation(n).astype(np.float32) / n
    q = np.concatenate((np.full((2, d), 0.5), np.ones((2, 1))), 1).astype(np.float32)
    want = np.argsort(-rows[:, d])[:10] + 1
    for settings in (FLAT, IndexSettings("hnsw"), IndexSettings("ivf", nlist=4, nprobe=4)):
        np.testing.assert_array_equal(FaissIndex(rows, settings).search(q, 10).items[0], want)


def test_hnsw_and_ivf_find_nearly_the_exact_top_k():
    rows, q = catalogue(n=3000, queries=50)
    truth = ExactIndex(rows).search(q, 10).items
    for settings in (IndexSettings("hnsw", ef_search=256), IndexSettings("ivf", nlist=16, nprobe=12)):
        found = FaissIndex(rows, settings).search(q, 10).items
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        assert recall >= 0.95, (settings.describe(), recall)


def test_index_settings_from_names():
    assert index_settings("faiss-hnsw:ef_search=64, m=16") == IndexSettings("hnsw", m=16, ef_search=64)
    assert index_settings("faiss-ivf").describe() == "faiss-ivf(nlist=auto, nprobe=auto, mips=ip)"
    assert [auto_ef_search(n) for n in (10, 100_000, 1_000_000, 2_400_000)] == [256, 256, 512, 1024]
    assert index_settings("exact").name == "exact"
    for bad, words in [
        ("annoy", "unknown index"),
        ("faiss-hnsw:efsearch=3", "key=value"),
        ("faiss-hnsw:m=x", "integer"),
        ("faiss-hnsw:m=0", ">= 1"),
        ("faiss-ivf:mips=cos", "l2 or ip"),
    ]:
        with pytest.raises(DataError, match=words):
            index_settings(bad)


# the inner-product form of each model


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_dot_form_reproduces_the_model_or_refuses_it(name):
    model = make(name)
    with torch.inference_mode():
        h = model.encode(batch())
        if name in NOT_INNER_PRODUCT:
            with pytest.raises(NotInnerProduct):
                dot_form(model, h)
            return
        form = dot_form(model, h)
        want = model.output(h)[:, 1:].float().numpy()
    got = form.queries(h) @ form.rows.T
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(want).max())))


def test_dot_form_drops_the_columns_the_scores_never_read_and_keeps_the_bias():
    model = make("ssrf", use_user=False)
    with torch.no_grad():
        model.out.bias.weight.normal_(0, 3.0)  # large enough to reorder the items
    with torch.inference_mode():
        h = model.encode(batch())
        form = dot_form(model, h)
        want = model.output(h)[:, 1:].numpy()
    assert len(form.columns) == model.cfg.d and form.dim == model.cfg.d + 1  # P_u = 0: half of h unused
    np.testing.assert_allclose(form.rows[:, -1], model.out.bias.weight[1:, 0].detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(form.queries(h) @ form.rows.T, want, rtol=1e-4, atol=1e-4)
    without_bias = form.queries(h)[:, :-1] @ form.rows[:, :-1].T
    assert (np.argsort(-without_bias, 1)[:, :5] != np.argsort(-want, 1)[:, :5]).any()  # the bias matters
    hits = FaissIndex(form.rows, FLAT).search(form.queries(h), 5)
    np.testing.assert_array_equal(hits.items, np.argsort(-want, 1)[:, :5] + 1)


# the predictor on a real tiny run


@pytest.fixture(scope="module")
def exact(serving_run) -> Predictor:
    return Predictor.load(serving_run)


@pytest.fixture(scope="module")
def flat(serving_run) -> Predictor:
    return Predictor.load(serving_run, index="faiss-flat")


def raw_users(p: Predictor, n: int = 40) -> list[str]:
    return list(p.data.vocabs["user"].raw[1 : n + 1])


def assert_same(a, b) -> None:
    assert [[r.item for r in recs] for recs in a] == [[r.item for r in recs] for recs in b]
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_allclose([r.score for r in ra], [r.score for r in rb], rtol=1e-5, atol=1e-5)
        assert [r.category for r in ra] == [r.category for r in rb]


def test_faiss_flat_predictor_serves_what_the_exact_one_does(exact, flat):
    assert exact.index_info["index"] == "exact" and exact.index_info["reason"] == "requested"
    info = flat.index_info
    assert info["index"] == "faiss-flat" and info["structure"] == "IndexFlatIP"
    assert info["dim"] == 2 * 16 + 1 and info["memory_bytes"] == flat.n_items * info["dim"] * 4
    assert info["build_s"] >= 0 and "probe batch" in info["reason"]
    users = raw_users(exact)
    for k, include_seen in [(10, False), (10, True), (1, False), (exact.n_items, False)]:
        assert_same(flat.recommend(users, k, include_seen), exact.recommend(users, k, include_seen))
    item = exact.data.vocabs["item"].raw
    queries = [
        Query(users[0], (Event(item[3]), Event(item[5])), 7),
        Query(None, (Event(item[2]), Event("no-such-item")), 5),
        Query("no-such-user", (Event(item[9]),), 3, include_seen=True),
    ]
    for a, b in zip(flat.answer(queries), exact.answer(queries), strict=True):
        assert_same([a.items], [b.items])
        assert a.warnings == b.warnings
    assert flat.index_fallbacks == 0 and flat.nonfinite_scores == 0


def test_seen_items_are_never_served_unless_asked_for(flat):
    users = raw_users(flat)
    item = flat.data.vocabs["item"].raw
    for u, recs in zip(users, flat.recommend(users, 20), strict=True):
        ui = flat.user_index(u)
        seen = {item[i] for i in flat.seqs.items[flat.seqs.ptr[ui] : flat.seqs.ptr[ui + 1]]}
        assert not seen & {r.item for r in recs}
    with_seen = flat.recommend(users, flat.n_items, include_seen=True)
    assert all(len(recs) == flat.n_items for recs in with_seen)


def test_a_query_the_index_cannot_fill_is_scored_exactly(serving_run, exact):
    small = Predictor.load(serving_run, index="faiss-flat:max_fetch=5")
    users = raw_users(exact, 10)
    assert_same(small.recommend(users, 5), exact.recommend(users, 5))
    # each user's 5 best items given as history: the 5 the index fetches are mostly masked
    queries = [
        Query(u, tuple(Event(r.item) for r in recs), 5)
        for u, recs in zip(users, exact.recommend(users, 5), strict=True)
    ]
    for a, b in zip(small.answer(queries), exact.answer(queries), strict=True):
        assert_same([a.items], [b.items])
        assert len(a.items) == 5
    assert small.index_fallbacks > 0


def test_non_finite_representations_and_scores_are_left_out_and_counted(serving_run, monkeypatch):
    p = Predictor.load(serving_run, index="faiss-flat")
    encode = p.model.encode
    monkeypatch.setattr(p.model, "encode", lambda b: encode(b) * torch.tensor(float("nan")))
    assert p.recommend(raw_users(p, 3), 5) == [[], [], []]
    assert p.nonfinite_scores == 3
    monkeypatch.setattr(p.model, "encode", encode)
    output = p.model.output
    nan = torch.tensor(float("nan"))
    candidates_nan = lambda h, items=None: output(h, items) * (1 if items is None else nan)  # noqa: E731
    monkeypatch.setattr(p.model, "output", candidates_nan)
    assert p.recommend(raw_users(p, 2), 5) == [[], []]  # the candidates' scores: left out and counted
    assert p.nonfinite_scores == 5 and p.index_fallbacks == 0


def test_the_bias_is_honoured_through_the_predictor(exact):
    model = pipeline.build_model("ssrf", {"d": 8, "max_len": 10}, exact.seqs)
    with torch.no_grad():
        model.out.bias.weight.normal_(0, 5.0)
    cpu = torch.device("cpu")
    a = Predictor("ssrf", model, exact.data, cpu, index="faiss-flat")
    b = Predictor("ssrf", model, exact.data, cpu)
    users = raw_users(exact)
    assert_same(a.recommend(users, 10), b.recommend(users, 10))


def test_another_inner_product_model_uses_faiss_too(exact):
    model = pipeline.build_model("sasrec", {"d": 8, "max_len": 10}, exact.seqs)
    cpu = torch.device("cpu")
    a = Predictor("sasrec", model, exact.data, cpu, index="faiss-flat")
    assert a.index_info["index"] == "faiss-flat" and a.index_info["dim"] == 9  # d, and the (zero) bias
    b = Predictor("sasrec", model, exact.data, cpu)
    assert_same(a.recommend(raw_users(exact), 10), b.recommend(raw_users(exact), 10))


@pytest.mark.parametrize(("name", "words"), [("deepfm", "not h . w_i + b_i"), ("random", "from ids")])
def test_a_ctr_model_or_a_rule_keeps_exact_scoring_and_says_why(exact, name, words):
    model = pipeline.build_model(name, {"max_len": 10}, exact.seqs)
    p = Predictor(name, model, exact.data, torch.device("cpu"), index="faiss-hnsw")
    assert p.index is None and p.index_info["index"] == "exact"
    assert p.index_info["requested"].startswith("faiss-hnsw")
    assert name in p.index_info["reason"] and words in p.index_info["reason"]
    assert len(p.recommend(raw_users(exact, 2), 5)[0]) == 5


def test_an_hnsw_index_is_saved_beside_the_run_and_reused(serving_run, tmp_path, exact):
    run = Path(shutil.copytree(serving_run, tmp_path / "run"))
    first = Predictor.load(run, index="faiss-hnsw:ef_search=64")
    assert first.index_info["cache_hit"] is False
    assert first.index_info["structure"] == "IndexHNSWFlat(m=32, ef_search=64)"
    saved = sorted(p.name for p in (run / "index").iterdir())
    assert len(saved) == 2 and saved[0].endswith(".faiss") and saved[1].endswith(".json")
    again = Predictor.load(run, index="faiss-hnsw:ef_search=64")
    assert again.index_info["cache_hit"] is True
    users = raw_users(exact)
    assert_same(again.recommend(users, 10), first.recommend(users, 10))  # the same graph
    found, truth = again.recommend(users, 10), exact.recommend(users, 10)
    pairs = zip(found, truth, strict=True)
    assert np.mean([len({r.item for r in a} & {r.item for r in b}) / len(b) for a, b in pairs]) >= 0.9
    wider = Predictor.load(run, index="faiss-hnsw:ef_search=128")  # a search setting: the same index
    assert wider.index_info["cache_hit"] is True
    faiss_file = next((run / "index").glob("*.faiss"))
    faiss_file.write_bytes(faiss_file.read_bytes()[:-8])  # damaged: rebuilt, not read
    rebuilt = Predictor.load(run, index="faiss-hnsw").index_info
    assert rebuilt["cache_hit"] is False and rebuilt["structure"] == "IndexHNSWFlat(m=32, ef_search=256)"
    other = Predictor.load(run, index="faiss-hnsw:m=8")  # another graph: another file
    assert other.index_info["cache_hit"] is False and len(list((run / "index").glob("*.faiss"))) == 2
    assert Predictor.load(run, index="faiss-hnsw", index_cache=False).index_info["cache"] is None


def test_the_cli_recommends_the_same_through_a_flat_faiss_index(serving_run):
    from typer.testing import CliRunner

    from ssrf.cli import app

    runner = CliRunner()
    user = Predictor.load(serving_run).data.vocabs["user"].raw[1]
    base = ["recommend", "--run", str(serving_run), "--user", user, "-k", "5"]
    exact, flat = runner.invoke(app, base), runner.invoke(app, [*base, "--index", "faiss-flat"])
    assert exact.exit_code == 0 and flat.exit_code == 0, flat.output
    table = [line for line in exact.output.splitlines() if line.startswith("|")]
    assert table and table == [line for line in flat.output.splitlines() if line.startswith("|")]
    bad = runner.invoke(app, [*base, "--index", "faiss-bogus"])
    assert bad.exit_code == 2 and "unknown index 'faiss-bogus'" in bad.output

"""The evaluation driver's helpers: sampled candidates and set NDCG, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssrf.evaluation.evaluate import sample_candidates, set_ndcg_at_k


def test_sampled_candidates_are_distinct_untouched_items():
    touched = [np.array([1, 2, 3]), np.array([5])]
    gen = torch.Generator().manual_seed(0)
    keep = sample_candidates(touched, 11, 4, gen, torch.device("cpu"))
    assert keep.sum(1).tolist() == [4, 4]
    assert not keep[0, [0, 1, 2, 3]].any() and not keep[1, [0, 5]].any()
    # when fewer untouched items exist than asked for, all of them and nothing else
    keep = sample_candidates([np.arange(1, 10)], 11, 5, gen, torch.device("cpu"))
    assert keep[0].nonzero().flatten().tolist() == [10]


def test_set_ndcg_by_hand():
    # ranking of items 1..4 by score: 3, 1, 4, 2; relevant {1, 2}; k = 3
    scores = torch.tensor([[float("-inf"), 0.8, 0.1, 0.9, 0.5]])
    relevant = torch.tensor([[False, True, True, False, False]])
    # DCG = 1/log2(3) (item 1 at rank 2); ideal = 1/log2(2) + 1/log2(3)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert math.isclose(float(set_ndcg_at_k(scores, relevant, 3)), expected, rel_tol=1e-6)
    assert math.isnan(float(set_ndcg_at_k(scores, torch.zeros_like(relevant), 3)))


def test_a_score_budget_only_changes_the_batching():
    """With max_scores below one row of scores, users are scored one at a time; metrics stay the same."""
    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig
    from ssrf.dataset.sequences import Sequences
    from ssrf.evaluation.evaluate import EvalConfig, evaluate

    data = pipeline.prepare([pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=60))
    seqs = Sequences.build(data)
    model = pipeline.build_model("sasrec", {"d": 8, "max_len": 10}, seqs).eval()
    wide = evaluate(model, seqs, "test", "temporal", EvalConfig(), 10)
    narrow = evaluate(model, seqs, "test", "temporal", EvalConfig(max_scores=seqs.n_items), 10)
    assert wide.keys() == narrow.keys()
    for k, v in wide.items():
        assert narrow[k] == pytest.approx(v, rel=1e-6), k  # float32 sums differ by batch shape


def test_a_validation_sample_is_fixed_and_the_test_split_ignores_it():
    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig
    from ssrf.dataset.sequences import Sequences
    from ssrf.evaluation.evaluate import EvalConfig, evaluate

    data = pipeline.prepare(
        [pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=60, split="loo")
    )
    seqs = Sequences.build(data)
    model = pipeline.build_model("sasrec", {"d": 8, "max_len": 10}, seqs).eval()
    everyone = evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False), 10)
    n = int(everyone["users"])
    assert n > 20
    some = evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False, valid_users=20), 10)
    again = evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False, valid_users=20), 10)
    assert some["users"] == 20 and some == again  # the same 20 users every time
    assert evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False, valid_users=n + 5), 10) == everyone
    test = evaluate(model, seqs, "test", "loo", EvalConfig(auc=False, valid_users=20), 10)
    assert test == evaluate(model, seqs, "test", "loo", EvalConfig(auc=False), 10)
    # the sample's hit rate is the mean over those 20 users: a multiple of 1/20
    assert abs(some["hr@20"] * 20 - round(some["hr@20"] * 20)) < 1e-9

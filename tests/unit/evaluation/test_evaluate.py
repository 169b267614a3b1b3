"""The evaluation driver's helpers: sampled candidates and set NDCG, by hand."""

from __future__ import annotations

import dataclasses
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


def test_a_score_budget_only_changes_the_batching(tmp_path):
    """With max_scores below one row of scores, users are scored one at a time; metrics stay the same."""
    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig
    from ssrf.dataset.sequences import Sequences
    from ssrf.evaluation.evaluate import EvalConfig, evaluate

    data = pipeline.prepare(
        [pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=60), root=tmp_path
    )
    seqs = Sequences.build(data)
    model = pipeline.build_model("sasrec", {"d": 8, "max_len": 10}, seqs).eval()
    wide = evaluate(model, seqs, "test", "temporal", EvalConfig(), 10)
    narrow = evaluate(model, seqs, "test", "temporal", EvalConfig(max_scores=seqs.n_items), 10)
    assert wide.keys() == narrow.keys()
    for k, v in wide.items():
        assert narrow[k] == pytest.approx(v, rel=1e-6, nan_ok=True), k  # float32 sums differ by batch shape


def test_a_validation_sample_is_fixed_and_the_test_split_ignores_it(tmp_path):
    from ssrf import pipeline
    from ssrf.dataset.prepare import PrepareConfig
    from ssrf.dataset.sequences import Sequences
    from ssrf.evaluation.evaluate import EvalConfig, evaluate

    data = pipeline.prepare(
        [pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=60, split="loo"), root=tmp_path
    )
    seqs = Sequences.build(data)
    model = pipeline.build_model("sasrec", {"d": 8, "max_len": 10}, seqs).eval()
    everyone = evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False), 10)
    n = int(everyone["users"])
    assert n > 20
    some = evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False, valid_users=20), 10)
    again = evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False, valid_users=20), 10)
    assert some["users"] == 20 and _same(some, again)  # the same 20 users every time
    assert _same(
        evaluate(model, seqs, "valid", "loo", EvalConfig(auc=False, valid_users=n + 5), 10), everyone
    )
    test = evaluate(model, seqs, "test", "loo", EvalConfig(auc=False, valid_users=20), 10)
    assert _same(test, evaluate(model, seqs, "test", "loo", EvalConfig(auc=False), 10))
    # the sample's hit rate is the mean over those 20 users: a multiple of 1/20
    assert abs(some["hr@20"] * 20 - round(some["hr@20"] * 20)) < 1e-9


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal metric dicts, NaN equal to NaN (a kind of positive no user has)."""
    return a.keys() == b.keys() and all(
        x == y or (math.isnan(x) and math.isnan(y))
        for x, y in zip(a.values(), [b[k] for k in a], strict=True)
    )


# ------------------------------------------------------------- masking and repeat/novel positives by hand


class _Fixed(torch.nn.Module):
    """Scores from a table [users + 1, items + 1], whatever the sequence."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.table = torch.tensor(table)

    def score(self, batch, items=None):
        return self.table[batch.user].clone()


def _one_user(items: list[int], split: list[int]):
    from ssrf.dataset.sequences import Sequences

    n = len(items)
    return Sequences(
        ptr=np.array([0, 0, n]),
        items=np.array(items, dtype=np.int64),
        behaviors=np.ones(n, dtype=np.int64),
        split=np.array(split, dtype=np.int8),
        item_fields=(),
        n_users=1,
        n_items=5,
        n_behaviors=1,
        field_sizes=(),
    )


SCORES = [[0.0] * 6, [0.0, 0.9, 0.8, 0.7, 0.6, 0.1]]  # user 1 ranks items 1, 2, 3, 4, 5


def test_temporal_masking_is_label_independent_and_repeat_novel_split_by_hand():
    """History {1, 2}; test period {2, 4}: 2 is a repeat positive, 4 a novel one."""
    from ssrf.evaluation.evaluate import EvalConfig, evaluate

    seqs = _one_user([1, 2, 2, 4], [0, 0, 2, 2])
    off = evaluate(_Fixed(SCORES), seqs, "test", "temporal", EvalConfig(ks=(2,), mask_history=False), 5)
    # top 2 = {1, 2}: one hit (the repeat 2); AUC negatives = never touched {3, 5}:
    # item 2 beats both (2 of 2), item 4 beats 5 only (1 of 2)
    assert (off["pre@2"], off["rec@2"], off["auc"]) == (0.5, 0.5, 0.75)
    assert (off["rec@2_repeat"], off["pre@2_repeat"], off["auc_repeat"]) == (1.0, 0.5, 1.0)
    assert (off["rec@2_novel"], off["pre@2_novel"], off["auc_novel"]) == (0.0, 0.0, 0.5)
    assert off["repeat_share"] == 0.5
    on = evaluate(_Fixed(SCORES), seqs, "test", "temporal", EvalConfig(ks=(2,), mask_history=True), 5)
    # every history item is masked, the target 2 too: top 2 = {3, 4}
    assert (on["rec@2"], on["rec@2_repeat"], on["rec@2_novel"]) == (0.5, 0.0, 1.0)
    assert on["auc"] == off["auc"]  # the AUC ranks the unmasked scores


def test_loo_masked_repeat_target_is_a_miss():
    """Items 1, 2, 1: the test target 1 repeats a history item."""
    from ssrf.evaluation.evaluate import EvalConfig, evaluate

    seqs = _one_user([1, 2, 1], [0, 1, 2])
    cfg = EvalConfig(ks=(1,), auc=False)
    off = evaluate(_Fixed(SCORES), seqs, "test", "loo", dataclasses.replace(cfg, mask_history=False), 5)
    assert (off["hr@1"], off["hr@1_repeat"], off["mrr"]) == (1.0, 1.0, 1.0)
    assert math.isnan(off["hr@1_novel"]) and off["repeat_share"] == 1.0
    on = evaluate(_Fixed(SCORES), seqs, "test", "loo", cfg, 5)  # masking on: the loo default
    assert (on["hr@1"], on["hr@1_repeat"], on["ndcg@1"]) == (0.0, 0.0, 0.0)
    assert on["mrr"] == 1 / 7  # ranked last, behind all 6 columns


def test_validation_auc_does_not_look_into_the_test_period():
    """Item 3 is touched only in the test period: it stays a validation negative."""
    from ssrf.evaluation.evaluate import EvalConfig, evaluate

    seqs = _one_user([1, 2, 3], [0, 1, 2])
    scores = [[0.0] * 6, [0.0, 0.9, 0.8, 0.95, 0.6, 0.1]]
    valid = evaluate(_Fixed(scores), seqs, "valid", "loo", EvalConfig(ks=(1,), mask_history=False), 5)
    # positive 2 (0.8) against never-touched-through-valid {3, 4, 5}: beats 4, 5, loses to 3 (0.95)
    assert valid["auc"] == pytest.approx(2 / 3)

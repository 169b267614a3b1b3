"""The reproduction report's pure parts: statistics, the comparison rule, verdicts, CSV output, the plan."""

from __future__ import annotations

import csv
import math

import pytest

from ssrf.reports.reproduction import Claim, compare, mean_std, pm, write_csv
from ssrf.reproduce import QUICK, candidate_plans, estimate_seconds, plan_for


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    mean, std = mean_std([0.5])
    assert mean == 0.5 and math.isnan(std)
    assert all(math.isnan(x) for x in mean_std([]))


def test_compare_needs_a_margin_larger_than_the_seed_noise():
    assert compare([0.70, 0.72], [0.60, 0.61]) == "better"
    assert compare([0.60, 0.61], [0.70, 0.72]) == "worse"
    assert compare([0.70, 0.74], [0.69, 0.73]) == "tie"  # difference 0.01 < std 0.028
    assert compare([0.7], [0.6]) == "better"  # one seed each: no noise estimate, the sign decides


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        (["holds", "holds"], "supported"),
        (["fails", "fails", "fails"], "not supported"),
        (["holds", "fails"], "mixed"),
        (["unclear", "fails"], "mixed"),
        ([], "not tested"),
    ],
)
def test_verdicts(outcomes, verdict):
    claim = Claim("c", "p", outcomes=list(outcomes))
    claim.decide()
    assert claim.verdict == verdict


def test_csv_keeps_full_precision_and_blank_nan(tmp_path):
    path = tmp_path / "t.csv"
    write_csv(path, [{"a": 0.1 + 0.2, "b": math.nan, "c": None}, {"a": 1.0, "d": "x"}])
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[0]["a"]) == 0.1 + 0.2
    assert rows[0]["b"] == "" and rows[0]["c"] == "" and rows[1]["d"] == "x"


def test_pm():
    assert pm(0.5, 0.01) == "0.5000 ± 0.0100"
    assert pm(0.123, math.nan, pct=True) == "12.3%"
    assert pm(math.nan, math.nan) == "n/a"


def test_plans_follow_the_budget():
    assert plan_for(5, quick=True) is QUICK
    estimates = [estimate_seconds(p) for p in candidate_plans()]
    assert estimates == sorted(estimates, reverse=True)  # richest first
    default = plan_for(240)
    assert estimate_seconds(default) <= 0.85 * 240 * 60
    assert len(default.seeds) >= 3  # the issue: Table II over at least 3 seeds
    assert plan_for(1).name == candidate_plans()[-1].name  # the poorest when nothing fits
    assert estimate_seconds(QUICK) < 5 * 60

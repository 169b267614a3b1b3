"""`ssrf reproduce` on the user's own full files: the file options, the paper's user sample sizes, the
prepare-only path (`--parts table1`) on a tiny generated Taobao-format file, and `ssrf demo --paper`'s
configuration. The full-size run is a benchmark (benchmarks/reproduce_full.py), not a test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ssrf.cli import app, demo_config
from ssrf.core import DataError
from ssrf.io.readers import TAOBAO_WINDOW
from ssrf.reproduce.datasets import PAPER_SAMPLE, check_files, dataset_specs
from ssrf.reproduce.options import reproduction_specs

runner = CliRunner()


def _taobao_file(path: Path, users: int, seed: int = 0) -> Path:
    """A UserBehavior-format file (no header: user,item,category,behavior,seconds) in the real window:
    every user with 20 events over 10 items, spread over the whole window, so that 5-core filtering and the
    leak-free temporal split keep every user."""
    rng = np.random.default_rng(seed)
    start, end = TAOBAO_WINDOW
    lines = []
    for u in range(1, users + 1):
        ts = np.sort(rng.integers(start, end, 20))
        for t in ts:
            item = int(rng.integers(1, 11))
            behavior = ("pv", "pv", "pv", "cart", "buy")[int(rng.integers(0, 5))]
            lines.append(f"{1000 + u},{item},{item % 3 + 1},{behavior},{int(t)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _meta(output: str) -> list[dict]:
    folders = [
        line.removeprefix("artifacts: ") for line in output.splitlines() if line.startswith("artifacts: ")
    ]
    return [json.loads((Path(f) / "meta.json").read_text()) for f in folders]


# --------------------------------------------------------------------------------------- specs


def test_paper_sample_sizes():
    assert PAPER_SAMPLE == {"taobao": 21960, "retailrocket": 6040}  # the paper's Table I
    assert "diginetica" not in PAPER_SAMPLE


def test_specs_from_files_take_the_paper_sizes(tmp_path):
    rr = ["events.csv", "item_properties_part1.csv", "item_properties_part2.csv", "category_tree.csv"]
    specs = dataset_specs(
        files={"taobao": [tmp_path / "UserBehavior.csv"], "retailrocket": [tmp_path / f for f in rr]}
    )
    tb, rrs, dg = specs["taobao"], specs["retailrocket"], specs["diginetica"]
    assert tb.prepare.sample_users == 21960 and tb.prepare.split == "temporal"
    assert (tb.prepare.min_user_events, tb.prepare.min_item_events) == (5, 5)
    assert "(your files" in tb.title and "21,960" in tb.note and "states no k-core" in tb.note
    assert tb.files == (str(tmp_path / "UserBehavior.csv"),)
    assert rrs.prepare.sample_users == 6040 and "MovieLens-1M" in rrs.note
    assert "categoryid" in rrs.note and "no item categories" not in rrs.note.lower()
    assert (rrs.fmt, rrs.strongest, rrs.paper) == ("retailrocket", "transaction", "Retailrocket")
    assert dg.files[0].startswith("diginetica/") and dg.prepare.sample_users is None  # the shared sample
    assert specs["beauty"] == dataset_specs()["beauty"]


def test_specs_sizes_set_by_the_user_and_errors(tmp_path):
    specs = dataset_specs(
        files={"retailrocket": ["ev.csv"], "diginetica": ["views.csv"]},
        sample_users={"retailrocket": None, "diginetica": 100},
    )
    assert specs["retailrocket"].prepare.sample_users is None
    assert "no item categories" in specs["retailrocket"].note  # no item_properties given
    assert "Every user is kept" in specs["retailrocket"].note
    assert specs["diginetica"].prepare.sample_users == 100
    assert dataset_specs(files={"diginetica": ["v.csv"]})["diginetica"].prepare.sample_users is None
    assert specs["taobao"] == dataset_specs()["taobao"]  # not given: the shared sample, not sampled
    with pytest.raises(DataError, match="not given by its own files"):
        dataset_specs(sample_users={"taobao": 10})
    with pytest.raises(DataError, match="unknown dataset"):
        dataset_specs(files={"movielens": ["x"]})
    with pytest.raises(DataError, match=r"missing\.csv: file not found"):
        check_files(dataset_specs(files={"taobao": [tmp_path / "missing.csv"]}), ["taobao"], tmp_path)


def test_cli_options_build_the_specs(tmp_path):
    a, b = str(tmp_path / "ev.csv"), str(tmp_path / "item_properties_part1.csv")
    specs = reproduction_specs(retailrocket=[f"{a},{b}"], sample_users="retailrocket=1_000")
    assert specs is not None and specs["retailrocket"].files == (a, b)
    assert specs["retailrocket"].prepare.sample_users == 1000
    repeated = reproduction_specs(retailrocket=[a, b])  # repeated = a comma list
    assert repeated is not None and repeated["retailrocket"].files == (a, b)
    none = reproduction_specs(taobao=[a], no_sample=True)
    assert none is not None and none["taobao"].prepare.sample_users is None
    assert reproduction_specs() is None  # no option: the shared samples, as before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--taobao", "/nonexistent/UserBehavior.csv"], "/nonexistent/UserBehavior.csv: file not found"),
        (
            ["--retailrocket", "{tmp}/events.csv,/nonexistent/item_properties_part1.csv"],
            "item_properties_part1",
        ),
        (["--taobao", "{tmp}/events.csv", "--sample-users", "taobao=many"], "expected a number"),
        (["--taobao", "{tmp}/events.csv", "--sample-users", "taobao"], "dataset=N pairs"),
        (["--sample-users", "retailrocket=10"], "not given by its own files"),
        (["--taobao", "{tmp}/events.csv", "--no-sample", "--sample-users", "taobao=5"], "not both"),
        (["--datasets", "taobao,movielens"], "movielens"),
        (["--datasets", "beauty"], "at least one of"),
        (["--parts", "table2"], "--parts"),
    ],
)
def test_cli_errors_name_the_problem(tmp_path, args, message):
    (tmp_path / "events.csv").write_text("timestamp,visitorid,event,itemid,transactionid\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = runner.invoke(app, ["reproduce", "--out", str(tmp_path / "report"), *args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and message in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "report").exists()


# --------------------------------------------------------------------------------------- prepare only


def test_prepare_only_samples_the_users(tmp_path):
    csv = _taobao_file(tmp_path / "UserBehavior.csv", users=40)
    base = ["reproduce", "--parts", "table1", "--datasets", "taobao", "--cache-dir", str(tmp_path / "c")]
    res = runner.invoke(app, [*base, "--taobao", str(csv), "--sample-users", "taobao=15"])
    assert res.exit_code == 0, res.output
    assert "Taobao UserBehavior (your files, 15-user sample)" in res.output
    [meta] = _meta(res.output)
    assert meta["options"]["sample_users"] == 15 and meta["inputs"] == [str(csv)]
    assert meta["stats"]["users"] == 15 and meta["dropped"]["sampled_out"] == 25 * 20
    # the default is the paper's 21,960: more than the file has, so every user is kept
    res = runner.invoke(app, [*base, "--taobao", str(csv)])
    assert res.exit_code == 0, res.output
    [meta] = _meta(res.output)
    assert meta["options"]["sample_users"] == 21960
    assert meta["stats"]["users"] == 40 and meta["dropped"]["sampled_out"] == 0
    res = runner.invoke(app, [*base, "--taobao", str(csv), "--no-sample"])
    assert res.exit_code == 0, res.output
    [meta] = _meta(res.output)
    assert meta["options"]["sample_users"] is None and meta["stats"]["users"] == 40


def test_prepare_only_on_the_shared_samples(tmp_path, shared_data):
    res = runner.invoke(
        app,
        [
            "reproduce",
            "--parts",
            "table1",
            "--datasets",
            "retailrocket",
            "--data-root",
            str(shared_data),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert res.exit_code == 0, res.output
    [meta] = _meta(res.output)
    assert meta["inputs"][0].endswith("retailrocket/sample_events.csv")
    assert meta["options"]["sample_users"] is None and "(5,000-visitor sample)" in res.output


# --------------------------------------------------------------------------------------- demo --paper


def test_demo_paper_config_is_the_papers():
    cfg = demo_config(7, paper=True)
    assert cfg.model == "ssrf"
    assert (cfg.train.loss, cfg.train.negatives, cfg.train.metric) == ("bce", 3, "auc")
    assert cfg.train.epochs == 7
    assert cfg.model_options.get("tie_output", False) is False
    weights = dict(cfg.train.behavior_weights)
    assert weights == {"pv": 1.0, "fav": 1.0, "cart": 1.0, "buy": 10.0}
    best = demo_config(7, paper=False)  # unchanged without --paper
    assert (best.train.loss, best.model_options["tie_output"], best.train.patience) == ("ce", True, 7)
    assert best.train.behavior_weights == () and best.train.metric == "ndcg@10"


def test_plan_by_name_and_a_bad_name():
    from ssrf.reproduce import QUICK, candidate_plans
    from ssrf.reproduce.options import pick_plan as _plan

    small = next(p for p in candidate_plans() if p.name == "small")
    assert _plan(1.0, False, ["taobao", "retailrocket", "diginetica", "beauty"], "small") == small
    assert (
        _plan(1e6, False, ["taobao"], "quick").datasets == ("taobao",) == _plan(1, True, ["taobao"]).datasets
    )
    assert _plan(1.0, False, ["taobao"], "quick").lrs == QUICK.lrs
    result = CliRunner().invoke(app, ["reproduce", "--plan", "nope"])
    assert result.exit_code == 2 and "--plan must be one of full, default, small, quick" in result.output

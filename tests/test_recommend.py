"""`ssrf recommend` and the Predictor behind it, on a small model trained on the embedded real data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ssrf import pipeline
from ssrf.cli import app
from ssrf.dataset.prepare import TEST, PrepareConfig
from ssrf.serving.predictor import Predictor

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rec")
    data = pipeline.prepare(
        [pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=100, seed=1), root=tmp / "cache"
    )
    cfg = pipeline.RunConfig().override(["train.epochs=1", "model_options.d=16", "model_options.max_len=10"])
    pipeline.train(data, cfg, tmp / "run")
    return tmp / "run"


def test_top_k_is_sorted_excludes_history_and_matches_the_model(run):
    p = Predictor.load(run)
    user = p.data.vocabs["user"].raw[1]
    recs = p.recommend([user], k=10)[0]
    assert len(recs) == 10
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    seen = {p.data.vocabs["item"].raw[i] for i in p.seqs.items_through(np.array([1]), TEST)[0]}
    assert not seen & {r.item for r in recs}
    with_seen = p.recommend([user], k=p.data.n_items, include_seen=True)[0]
    assert seen <= {r.item for r in with_seen}
    # a category is the raw id of the item's category in the input file
    assert all(r.category is not None and r.category.isdigit() for r in recs)
    # a user's list does not depend on who else is in the batch
    other = p.data.vocabs["user"].raw[2]
    batched = p.recommend([other, user], k=10)[1]
    assert [r.item for r in batched] == [r.item for r in recs]
    assert [r.score for r in batched] == pytest.approx([r.score for r in recs], rel=1e-5)


def test_cli_prints_and_writes(run, tmp_path):
    p = Predictor.load(run)
    users = list(p.data.vocabs["user"].raw[1:4])
    res = runner.invoke(app, ["recommend", "--run", str(run), "--user", users[0], "-k", "3"])
    assert res.exit_code == 0, res.output
    assert res.output.count(f"| {users[0]} |") == 3
    (tmp_path / "users.txt").write_text("\n".join(users) + "\n")
    out = tmp_path / "recs.jsonl"
    res = runner.invoke(
        app,
        [
            "recommend",
            "--run",
            str(run),
            "--users",
            str(tmp_path / "users.txt"),
            "-k",
            "5",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 15 and {r["user"] for r in rows} == set(users)
    assert [r["rank"] for r in rows[:5]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--user", "no-such-user"], "unknown user"),
        (["--user", "1", "-k", "0"], "'-k'"),
        ([], "--user"),
        (["--user", "1", "--out", "x.txt"], ".csv"),
    ],
)
def test_bad_requests_exit_2(run, args, message):
    res = runner.invoke(app, ["recommend", "--run", str(run), *args])
    assert res.exit_code == 2 and message in res.output, res.output

"""`ssrf tune` on the embedded Taobao data with a tiny SASRec: two worker processes on one study with a trial
pruned, a tuning killed mid-trial and continued, the test split never read during the search, the search
space's checks, and the pruner's rule."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from ssrf import pipeline
from ssrf.cli import app
from ssrf.core import DataError
from ssrf.tuning import STUDY_NAME, _storage, make_sampler, tune, worker_seed
from ssrf.tuning.pruning import MedianOfRuns
from ssrf.tuning.report import config_toml
from ssrf.tuning.spaces import load_space, parse_space

runner = CliRunner()
DEMO = str(pipeline.demo_data_path())
TINY = [  # a small sample of the embedded data, a small SASRec, a few epochs
    "data.sample_users=400",
    "model_options.d=16",
    "model_options.ffn=32",
    "train.epochs=4",
    "train.patience=2",
]
GOOD_LR, BAD_LR = 0.03, 1e-6  # on this sample a run at 1e-6 learns nothing in 4 epochs; one at 0.03 does
SPACE = (
    f'"train.lr" = {{choices = [{GOOD_LR}, {BAD_LR}]}}\n"model_options.dropout" = {{low = 0.0, high = 0.5}}\n'
)


def sets(*assignments: str) -> list[str]:
    return [x for a in assignments for x in ("--set", a)]


def trials_of(study_dir: Path) -> list:
    study = optuna.load_study(study_name=STUDY_NAME, storage=_storage(study_dir))
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def no_test_read(study_dir: Path) -> None:
    """Every trial that reached results.json has no test metrics (test=False)."""
    found = list((study_dir / "trials").glob("*/results.json"))
    assert found
    for path in found:
        assert json.loads(path.read_text())["test"] is None, path


def pruning_seed(space: Path) -> int:
    """A sampler seed under which each of two workers draws a good learning rate for its first two trials
    and the bad one for its third (all six trials are random: --startup-trials 6). Whichever way the two
    workers interleave, a bad trial then starts after two good trials completed, so the median is a good
    run's and the bad trial falls below it at its first epoch: pruned. The draws are Optuna's, replayed
    here with the sampler and seeds the workers use."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dims = load_space(space, pipeline.preset("sasrec").override(TINY)).dimensions
    for seed in range(2000):
        pattern = []
        for worker in (0, 1):
            study = optuna.create_study(
                direction="maximize", sampler=make_sampler(worker_seed(seed, worker, 0), 6)
            )
            lrs = []
            for _ in range(3):
                trial = study.ask()
                params = {d.key: d.suggest(trial) for d in dims}
                lrs.append(params["train.lr"])
                study.tell(trial, 1.0)
            pattern.append(lrs)
        if all(lrs == [GOOD_LR, GOOD_LR, BAD_LR] for lrs in pattern):
            return seed
    raise AssertionError("no seed draws good, good, bad for both workers")


def test_two_workers_prune_and_write_the_report(tmp_path):
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    seed = pruning_seed(space)
    study_dir = tmp_path / "study"
    args = ["tune", "--data", DEMO, "--format", "taobao", "--model", "sasrec", "--space", str(space)]
    args += [
        "--trials",
        "6",
        "--jobs",
        "2",
        "--study-dir",
        str(study_dir),
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    args += ["--startup-trials", "6", "--prune-warmup", "0", "--seed", str(seed), *sets(*TINY)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "6 trials" in res.output and f"report: {study_dir / 'TUNE.md'}" in res.output

    trials = trials_of(study_dir)
    assert [t.number for t in trials] == list(range(6))
    bad = [t for t in trials if t.params["train.lr"] == BAD_LR]
    assert bad and all(t.state == TrialState.PRUNED for t in bad), [
        (t.number, t.state, t.params) for t in trials
    ]
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for t in trials:  # each trial says how it stopped
        expected = {"pruner"} if t.state == TrialState.PRUNED else {"patience", "epoch cap"}
        assert t.user_attrs["stopped"] in expected, t.user_attrs

    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    cfg = pipeline.RunConfig.from_toml(study_dir / "best.toml")
    assert cfg.model == "sasrec" and cfg.train.lr == GOOD_LR and cfg.data.sample_users == 400
    assert cfg.model_options["dropout"] == best.params["model_options.dropout"]
    assert cfg.model_options["d"] == 16 and cfg.train.epochs == 4  # the base config's --set overrides

    report = (study_dir / "TUNE.md").read_text()
    for text in ("## Best trial", "## Trials", "| pruned |", f"Trial {best.number}:", "train.lr"):
        assert text in report, text
    for png in ("history.png", "importances.png"):
        assert (study_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in report
    no_test_read(study_dir)


def test_a_killed_tuning_continues_the_same_study(tmp_path, monkeypatch):
    space = tmp_path / "space.toml"
    space.write_text(
        '"train.lr" = {low = 0.01, high = 0.03}\n"model_options.dropout" = {low = 0.0, high = 0.5}\n'
    )
    study_dir, cache = tmp_path / "study", tmp_path / "cache"
    long = [*TINY, "train.epochs=6", "train.patience=6"]  # a trial of some seconds: time to kill it
    common = dict(space=space, study_dir=study_dir, cache_dir=cache, overrides=long, prune=False)
    cmd = [sys.executable, "-m", "ssrf", "tune", "--data", DEMO, "--model", "sasrec", "--space", str(space)]
    cmd += ["--trials", "3", "--no-prune", "--study-dir", str(study_dir), "--cache-dir", str(cache)]
    cmd += sets(*long)
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    started = study_dir / "trials" / "1" / "config.json"  # trial 0 complete, trial 1 training
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert started.exists(), (tmp_path / "log.txt").read_text()
    before = trials_of(study_dir)
    assert [(t.number, t.state) for t in before] == [(0, TrialState.COMPLETE), (1, TrialState.RUNNING)]

    # a second tuning may not start while one holds the study
    import fcntl

    with open(study_dir / "tune.lock") as held:
        fcntl.flock(held, fcntl.LOCK_SH)
        with pytest.raises(DataError, match="another `ssrf tune` is running"):
            tune([DEMO], "taobao", "sasrec", trials=3, **common)

    splits: list[str] = []
    evaluate = pipeline.evaluate

    def spy(model, seqs, split, *args, **kw):
        splits.append(split)
        return evaluate(model, seqs, split, *args, **kw)

    monkeypatch.setattr(pipeline, "evaluate", spy)
    summary = tune([DEMO], "taobao", "sasrec", trials=3, seeds=1, **common)
    trials = trials_of(study_dir)
    assert [t.number for t in trials] == [0, 1, 2, 3]  # numbers continue, none twice
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, *[TrialState.COMPLETE] * 2]
    assert trials[1].user_attrs["interrupted"] and trials[2].user_attrs["retry_of"] == 1
    assert trials[2].params == trials[1].params == before[1].params  # the killed trial, retried
    assert trials[0].params == before[0].params and trials[0].value == before[0].value
    assert (summary.trials, summary.complete, summary.failed) == (4, 3, 1)
    # the search validated only; the retrain of the best configuration then read test once
    assert splits.count("test") == 1 and splits[-1] == "test" and "test" not in splits[:-1]
    no_test_read(study_dir)
    (retrain,) = summary.retrains
    assert retrain["test"] is not None and retrain["seed"] == 0
    assert "interrupted" in (study_dir / "TUNE.md").read_text()

    again = tune([DEMO], "taobao", "sasrec", trials=3, **common)  # done: nothing more to train
    assert again.trials == 4 and again.best_trial == summary.best_trial
    with pytest.raises(DataError, match="another space"):
        tune([DEMO], "taobao", "sasrec", trials=3, **{**common, "space": None})


BAD_SPACES = {
    '"model_options.nope" = {low = 1, high = 2}': "model_options.nope: not an option of model sasrec",
    '"train.lr" = {low = 1e-2, high = 1e-4}': "train.lr: low 0.01 is above high 0.0001",
    '"train.lr" = {low = 0.0, high = 1e-2, log = true}': "train.lr: a log scale needs low > 0",
    '"model_options.d" = {low = 16.5, high = 64}': "model_options.d: an integer option",
    '"model_options.dropout" = {low = 0.0, high = 1.0}': "model_options.dropout = 1.0 is not a valid value",
    '"model_options.d" = {choices = []}': "model_options.d: choices must be a non-empty list",
    '"train.lr" = {low = 1e-4, high = 1e-2, mode = "x"}': "train.lr: unknown key(s) mode",
    '"data.sample_users" = {choices = [100, 200]}': "data.sample_users: cannot be searched",
    '"train.seed" = {choices = [0, 1]}': "train.seed: cannot be searched",
    '"train.loss" = {low = 0, high = 1}': "train.loss: a range needs a numeric option",
    "lr = {low = 1e-4, high = 1e-2}": "key 'lr': expected section.option",
}


def test_bad_options_fail_before_any_work(tmp_path):
    def refused(*extra: str) -> str:
        args = ["tune", "--data", DEMO, "--model", "sasrec", "--study-dir", str(tmp_path / "study")]
        res = runner.invoke(app, [*args, "--cache-dir", str(tmp_path / "cache"), *extra])
        assert res.exit_code == 2, (extra, res.output)
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
        return res.stderr

    space = tmp_path / "space.toml"
    for text, message in BAD_SPACES.items():
        space.write_text(text + "\n")
        assert message in refused("--space", str(space)), text
    assert "no such search-space file" in refused("--space", str(tmp_path / "missing.toml"))
    assert "nothing to tune" in refused("--model", "pop")
    assert "--set" in refused("--set", "train.epoch")
    assert "Invalid value" in runner.invoke(app, ["tune", "--data", DEMO, "--trials", "0"]).output
    assert not (tmp_path / "study").exists() and not (tmp_path / "cache").exists()


def test_spaces_follow_the_option_types():
    base = pipeline.preset("sasrec")
    flat = parse_space(
        {
            "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "train.weight_decay": {"choices": [0, 1e-5]},
            "model_options.blocks": {"low": 1, "high": 3},
        },
        base,
        "flat",
    )
    nested = parse_space(
        {
            "train": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "weight_decay": {"choices": [0, 1e-5]}},
            "model_options": {"blocks": {"low": 1, "high": 3}},
        },
        base,
        "nested",
    )
    assert flat.dimensions == nested.dimensions
    lr, wd, blocks = flat.dimensions
    assert (lr.kind, lr.log, blocks.kind, wd.choices) == ("float", True, "int", (0.0, 1e-5))
    assert isinstance(wd.choices[0], float)  # an integer given for a float option is a float
    # a shipped family space leaves out the options a model lacks
    assert "model_options.blocks" not in load_space(None, pipeline.preset("gru4rec")).keys
    assert "model_options.history" in load_space(None, pipeline.preset("deepfm")).keys


def test_config_toml_reads_back():
    cfg = pipeline.preset("ssrf", paper=True).override(
        ["model_options.conv_channels=[16, 32]", "data.window=[1500000000, 1600000000]", "eval.ks=[5, 10]"]
    )
    raw = pipeline.RunConfig.from_dict(tomllib.loads(config_toml(cfg, ["a comment"])))
    assert json.dumps(raw.to_dict(), sort_keys=True) == json.dumps(cfg.to_dict(), sort_keys=True)


def test_the_pruner_counts_early_stopped_runs_with_their_final_best():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(value=0.5, intermediate_values={1: 0.2, 2: 0.35, 3: 0.45, 4: 0.5}))
    study.add_trial(create_trial(value=0.3, intermediate_values={1: 0.25, 2: 0.3}))  # stopped by patience
    trial = study.ask()
    for epoch, value in ((1, 0.2), (2, 0.33), (3, 0.4)):
        trial.report(value, epoch)
    frozen = study._storage.get_trial(trial._trial_id)
    # Optuna's median rule compares with the lone run that reached epoch 3 (0.45); ours with the median of
    # both runs' best up to epoch 3 (0.45 and 0.30)
    assert optuna.pruners.MedianPruner(n_startup_trials=2).prune(study, frozen)
    assert not MedianOfRuns(startup=2, warmup=0).prune(study, frozen)
    assert not MedianOfRuns(startup=3, warmup=0).prune(study, frozen)  # too few complete trials
    assert not MedianOfRuns(startup=2, warmup=3).prune(study, frozen)  # still warming up
    floor = study.ask()
    floor.report(0.1, 1)
    assert MedianOfRuns(startup=2, warmup=0).prune(study, study._storage.get_trial(floor._trial_id))
    nan = study.ask()
    nan.report(math.nan, 1)
    assert MedianOfRuns(startup=2, warmup=0).prune(study, study._storage.get_trial(nan._trial_id))

"""End to end on a small real sample (the embedded Taobao UserBehavior subset): SSRF overfits it, two runs
with one seed agree exactly, and a run interrupted mid-epoch and resumed ends exactly where an
uninterrupted one does."""

from __future__ import annotations

import json

import pytest

from ssrf import pipeline
from ssrf.dataset.prepare import PrepareConfig
from ssrf.pipeline import RunConfig

SMALL = {"d": 16, "max_len": 12, "conv_channels": [16, 32], "blocks": 1}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    cfg = PrepareConfig(sample_users=120, seed=3, min_user_events=5, min_item_events=3)
    return pipeline.prepare([pipeline.demo_data_path()], "taobao", cfg, root=root)


def config(**train) -> RunConfig:
    base = {
        "model": "ssrf",
        "model_options": SMALL,
        "train": {"epochs": 2, "batch_size": 16, "checkpoint_every": 0, "patience": 5, **train},
    }
    return RunConfig.from_dict(base)


def test_ssrf_overfits_a_small_real_sample(sample, tmp_path):
    cfg = RunConfig.from_dict(
        {
            "model": "ssrf",
            "model_options": {**SMALL, "dropout": 0.0, "fc_dropout": 0.0},
            "train": {
                "epochs": 30,
                "batch_size": 16,
                "loss": "ce",
                "lr": 5e-3,
                "checkpoint_every": 0,
                "patience": 100,
            },
        }
    )
    pipeline.train(sample, cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    first, last = rows[0]["loss"], rows[-1]["loss"]
    assert last < 0.25 * first, (first, last)


def test_same_seed_same_metrics(sample, tmp_path):
    a = pipeline.train(sample, config(), tmp_path / "a")
    b = pipeline.train(sample, config(), tmp_path / "b")
    assert same(a["test"], b["test"])
    assert a["best_valid"]["loss"] == b["best_valid"]["loss"]
    c = pipeline.train(sample, config(seed=1), tmp_path / "c")
    assert c["best_valid"]["loss"] != a["best_valid"]["loss"]


class Killed(Exception):
    pass


def test_resume_mid_epoch_matches_an_uninterrupted_run(sample, tmp_path):
    full = pipeline.train(sample, config(checkpoint_every=2), tmp_path / "full")

    def kill(epoch: int, step: int) -> None:
        if epoch == 1 and step == 3:  # after the resume checkpoint at step 2 of the second epoch
            raise Killed

    with pytest.raises(Killed):
        pipeline.train(sample, config(checkpoint_every=2), tmp_path / "cut", on_step=kill)
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = pipeline.train(sample, config(checkpoint_every=2), tmp_path / "cut", resume=True)
    assert same(resumed["test"], full["test"])
    timing = ("train_seconds", "targets_per_second", "eval_seconds")
    assert same(
        {k: v for k, v in resumed["best_valid"].items() if k not in timing},
        {k: v for k, v in full["best_valid"].items() if k not in timing},
    )


def test_unknown_behaviour_weight_is_an_error(sample, tmp_path):
    cfg = RunConfig.from_dict(
        {
            "model": "ssrf",
            "model_options": SMALL,
            "train": {"epochs": 1, "behavior_weights": {"purchase": 10.0}},
        }
    )
    with pytest.raises(ValueError, match="purchase"):
        pipeline.train(sample, cfg, tmp_path / "bad")


def test_unknown_config_keys_are_errors():
    from ssrf.core import DataError

    with pytest.raises(DataError, match="epoch"):
        RunConfig.from_dict({"train": {"epoch": 3}})
    with pytest.raises(DataError, match="dim"):
        RunConfig.from_dict({"model_options": {"dim": 3}})
    with pytest.raises(DataError, match="unknown key"):
        RunConfig.from_dict({"trian": {}})


@pytest.mark.parametrize("loss", ["bce", "ce", "sampled-softmax"])
def test_every_loss_trains_through_the_loop(sample, tmp_path, loss):
    cfg = RunConfig.from_dict(
        {
            "model": "ssrf",
            "model_options": {**SMALL, "dropout": 0.0, "fc_dropout": 0.0},
            "train": {
                "epochs": 4,
                "batch_size": 16,
                "loss": loss,
                "lr": 5e-3,
                "sampled_negatives": 64,
                "checkpoint_every": 0,
                "patience": 100,
            },
        }
    )
    pipeline.train(sample, cfg, tmp_path / loss)
    rows = [json.loads(x) for x in (tmp_path / loss / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < 0.9 * rows[0]["loss"], [r["loss"] for r in rows]


def test_a_wall_clock_budget_stops_before_the_next_epoch(sample, tmp_path):
    result = pipeline.train(sample, config(epochs=5, max_seconds=1e-6), tmp_path / "run")
    assert result["epochs_run"] == 1 and result["stopped_by_budget"]
    unbounded = pipeline.train(sample, config(epochs=2), tmp_path / "all")
    assert unbounded["epochs_run"] == 2 and not unbounded["stopped_by_budget"]


@pytest.mark.parametrize(
    ("name", "options"),
    [("sasrec", {"pre_ln": False, "d": 16}), ("ssrf", {**SMALL, "use_user": False})],
)
def test_model_variants_train(sample, tmp_path, name, options):
    cfg = RunConfig.from_dict(
        {"model": name, "model_options": options, "train": {"epochs": 1, "batch_size": 16, "loss": "ce"}}
    )
    result = pipeline.train(sample, cfg, tmp_path / "run")
    assert 0.0 < result["test"]["auc"] < 1.0


def test_bf16_training_on_the_cpu_tracks_fp32(sample, tmp_path):
    """`train.precision = "bf16"` runs the forward under bf16 autocast on the CPU: the same run in fp32 and
    bf16 ends with training losses within a few percent, and the losses fall."""
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = RunConfig.from_dict(
            {
                "model": "ssrf",
                "model_options": {**SMALL, "dropout": 0.0, "fc_dropout": 0.0},
                "train": {"epochs": 4, "batch_size": 16, "loss": "ce", "lr": 5e-3, "precision": precision},
            }
        )
        pipeline.train(sample, cfg, tmp_path / precision)
        rows = (tmp_path / precision / "metrics.jsonl").read_text().splitlines()
        losses[precision] = [json.loads(x)["loss"] for x in rows]
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran
    assert losses["bf16"][-1] < 0.9 * losses["bf16"][0]
    for a, b in zip(losses["fp32"], losses["bf16"], strict=True):
        assert abs(a - b) < 0.03 * a, losses


def test_unknown_precision_is_an_error():
    from ssrf.core import DataError

    with pytest.raises(DataError, match="precision"):
        RunConfig.from_dict({"train": {"precision": "fp16"}})


def same(a: dict, b: dict) -> bool:
    """Equal metric dicts, NaN equal to NaN (a kind of positive, repeat or novel, that no user has)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

"""Every registered model trains, checkpoints, reloads and evaluates through the one pipeline, and its
training loss falls on a small real sample (the embedded Taobao subset)."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from ssrf import pipeline
from ssrf.dataset.prepare import PrepareConfig
from ssrf.models import REGISTRY, config_fields
from ssrf.pipeline import RunConfig


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    cfg = PrepareConfig(sample_users=80, seed=5, min_user_events=5, min_item_events=3, split="loo")
    return pipeline.prepare([pipeline.demo_data_path()], "taobao", cfg, root=tmp_path_factory.mktemp("prep"))


CASES = [*((name, {}) for name in REGISTRY), ("pop", {"learned": True})]  # and the learned popularity


@pytest.mark.parametrize(("name", "extra"), CASES, ids=[n + "-learned" * bool(e) for n, e in CASES])
def test_every_model_trains_and_its_loss_falls(name, extra, sample, tmp_path):
    small = {"d": 16, "max_len": 10, "dropout": 0.0, "fc_dropout": 0.0, "emb_dropout": 0.0}
    options = {k: v for k, v in small.items() if k in config_fields(name)} | extra
    cfg = RunConfig.from_dict(
        {
            "model": name,
            "model_options": options,
            "train": {
                "epochs": 6,
                "batch_size": 16,
                "loss": "ce",
                "lr": 0.01,
                "checkpoint_every": 0,
                "patience": 100,
            },
        }
    )
    result = pipeline.train(sample, cfg, tmp_path / name)
    assert all(math.isfinite(v) for v in result["test"].values())
    assert result["protocol"] == "loo" and result["mask_history"] is True
    losses = [json.loads(x)["loss"] for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    if name in ("random", "pop", "repeat") and not extra:  # nothing to train: validated once, no loss
        assert result["epochs_run"] == 1 and len(losses) == 1 and math.isnan(losses[0])
    elif name == "pop":  # learned, it can only learn popularity: a small but steady fall
        assert all(b < a for a, b in itertools.pairwise(losses)), losses
    else:
        assert losses[-1] < losses[0] * 0.8, losses
    again = pipeline.evaluate_run(tmp_path / name)  # the saved bundle reloads to the same numbers
    assert again["test"] == result["test"]

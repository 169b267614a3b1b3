"""The shipped run configs load (an unknown key would be an error) and build their models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ssrf import pipeline
from ssrf.models import build

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= {"ssrf.toml", "ssrf-beauty.toml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_shipped_config_loads_and_builds(path):
    cfg = pipeline.RunConfig.from_toml(path)
    model = build(cfg.model, {"n_items": 30, "n_users": 5, **cfg.model_options})
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_beauty_preset_is_the_configuration_the_sweep_measured():
    """configs/ssrf-beauty.toml = the sweep's `ssrf-ce-best-lr2e-3-s0` (benchmarks/beauty_sweep.py), so the
    preset cannot drift from the numbers docs/benchmarks.md reports for it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import beauty_sweep
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    model, loss, sets = beauty_sweep.CONFIGS["ssrf-ce-best-lr2e-3-s0"]
    swept = pipeline.RunConfig(model=model).override([f'train.loss="{loss}"', "train.batch_size=256", *sets])
    preset = pipeline.RunConfig.from_toml(ROOT / "configs" / "ssrf-beauty.toml")
    assert preset.model == swept.model
    assert {
        k: v
        for k, v in preset.model_options.items()
        if k not in ("d", "window", "max_len", "blocks", "heads")
    } == (swept.model_options)
    for key in ("loss", "batch_size", "lr", "weight_decay", "seed"):
        assert getattr(preset.train, key) == getattr(swept.train, key), key

"""Data-parallel training: 2 CPU processes (gloo, launched by `ssrf train --nproc 2`, i.e. torchrun) end where
one process with the same global batch ends, up to float summation order (stated tolerance: losses within a
relative 1e-4, metrics within 1e-3, weights within 1e-3); and a run resumes under another number of
processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ssrf import pipeline
from ssrf.dataset.prepare import PrepareConfig

# SASRec with no dropout and the full-softmax loss: no randomness left but the batch order, which is the same
# for any number of processes, so the two runs must agree to float precision.
SETS = ["model_options.dropout=0.0", "model_options.d=16", "train.batch_size=32", "train.patience=10"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    data = pipeline.prepare([pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=120), root=root)
    return data.path


def _train(data_path, out, nproc: int, epochs: int, *extra: str, torchrun: bool = False, **env_extra: str):
    """`ssrf train` with --nproc (torchrun only when nproc > 1), or under torchrun with one process."""
    launcher = [sys.executable, "-m", "ssrf"]
    if torchrun:  # one process under torchrun, which `ssrf train --nproc 1` would not use
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=1",
            "-m",
            "ssrf",
        ]
    cmd = [*launcher, "train", "--data", str(data_path), "--model", "sasrec"]
    cmd += [
        "--loss",
        "ce",
        "--epochs",
        str(epochs),
        "--device",
        "cpu",
        "--out",
        str(out),
        *([] if torchrun else ["--nproc", str(nproc)]),
    ]
    for s in SETS:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSRF_DIST_BACKEND": "gloo", **env_extra}
    proc = subprocess.run([*cmd, *extra], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _epochs(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(prepared, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _train(prepared, one, 1, 2)
    out = _train(prepared, two, 2, 2)
    assert out.stdout.count("test evaluation") == 1  # rank 0 alone prints the results
    r1, r2 = (json.loads((r / "results.json").read_text()) for r in (one, two))
    assert r1["processes"] == 1 and r2["processes"] == 2
    e1, e2 = _epochs(one), _epochs(two)
    assert [e["targets"] for e in e1] == [e["targets"] for e in e2]  # every target trained on, once
    for a, b in zip(e1, e2, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["valid_ndcg@10"] == pytest.approx(b["valid_ndcg@10"], abs=1e-3)
    assert r1["test"]["users"] == r2["test"]["users"]  # evaluation shards users and sums over ranks
    for k in ("pre@10", "rec@10", "ndcg@10", "auc"):
        assert r1["test"][k] == pytest.approx(r2["test"][k], abs=1e-3)
    w1, w2 = (load_file(str(r / "best" / "model.safetensors")) for r in (one, two))
    assert w1.keys() == w2.keys()
    for (
        k
    ) in w1:  # Adam divides by sqrt(v): gradients that differ in the last bits move near-zero weights most
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-3, atol=1e-3)


def test_one_process_in_a_forced_group_matches_a_plain_run(prepared, tmp_path):
    """SSRF_DIST_FORCE=1 under torchrun makes a single process join a group of one (the DDP path, which on a
    one-GPU machine runs on NCCL): the same numbers as a plain run, and results.json names the backend."""
    plain, grouped = tmp_path / "plain", tmp_path / "grouped"
    _train(prepared, plain, 1, 1)
    _train(prepared, grouped, 1, 1, torchrun=True, SSRF_DIST_FORCE="1")
    r1, r2 = (json.loads((r / "results.json").read_text()) for r in (plain, grouped))
    assert r1["process_group"] is None and r2["process_group"] == "gloo" and r2["processes"] == 1
    assert _epochs(plain)[0]["loss"] == pytest.approx(_epochs(grouped)[0]["loss"], rel=1e-5)
    assert r1["test"]["ndcg@10"] == pytest.approx(r2["test"]["ndcg@10"], abs=1e-4)


def test_resume_with_another_number_of_processes(prepared, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _train(prepared, full, 1, 3)
    _train(prepared, resumed, 2, 1)  # an interrupted run: its first epoch, on 2 processes
    _train(prepared, resumed, 1, 3, "--resume")  # continued on 1 process
    a, b = _epochs(full), _epochs(resumed)
    assert len(b) == 3
    assert [e["loss"] for e in a] == pytest.approx([e["loss"] for e in b], rel=1e-4)

"""On a CUDA machine (run with `-m gpu`): SSRF trains with bf16 autocast and its scores match the CPU's."""

from __future__ import annotations

import pytest
import torch

from ssrf import pipeline
from ssrf.dataset.prepare import PrepareConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_train_on_cuda_then_score_on_cpu(tmp_path):
    data = pipeline.prepare(
        [pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=200), root=tmp_path / "cache"
    )
    cfg = pipeline.RunConfig().override(["train.epochs=2", 'train.device="cuda"', "model_options.d=32"])
    result = pipeline.train(data, cfg, tmp_path / "run")
    assert result["device"].startswith("cuda")
    from ssrf.models.registry import load_model

    _, on_gpu = load_model(tmp_path / "run" / "best", "cuda")
    _, on_cpu = load_model(tmp_path / "run" / "best", "cpu")
    from ssrf.dataset.batches import input_batch
    from ssrf.dataset.sequences import Sequences

    seqs = Sequences.build(data)
    users, ends, starts = seqs.eval_users(2)
    batch = input_batch(seqs, users[:64], starts[:64], ends[:64], on_cpu.cfg.max_len)
    torch.testing.assert_close(
        on_gpu.eval().score(batch.to("cuda")).cpu(), on_cpu.eval().score(batch), rtol=1e-3, atol=1e-3
    )


def test_one_gpu_in_a_forced_nccl_group_matches_a_plain_run(tmp_path):
    """The multi-GPU path on one GPU: torchrun with one process and SSRF_DIST_FORCE=1 joins an NCCL group of
    one (DDP, all-reduces on NCCL) and ends where a plain run ends, up to bf16 reduction order."""
    import json
    import os
    import subprocess
    import sys

    data = pipeline.prepare(
        [pipeline.demo_data_path()], "taobao", PrepareConfig(sample_users=200), root=tmp_path / "cache"
    )
    runs = {}
    for name, launcher, extra_env in (
        ("plain", [sys.executable, "-m", "ssrf"], {}),
        ("nccl", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1",
                  "-m", "ssrf"], {"SSRF_DIST_FORCE": "1"}),
    ):  # fmt: skip
        cmd = [*launcher, "train", "--data", str(data.path), "--model", "sasrec", "--loss", "ce"]
        cmd += ["--epochs", "2", "--device", "cuda", "--out", str(tmp_path / name)]
        cmd += ["--set", "model_options.dropout=0.0", "--set", "model_options.d=16"]
        env = {**os.environ, **extra_env}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
    assert runs["plain"]["process_group"] is None and runs["nccl"]["process_group"] == "nccl"
    assert runs["nccl"]["test"]["ndcg@10"] == pytest.approx(runs["plain"]["test"]["ndcg@10"], abs=5e-3)

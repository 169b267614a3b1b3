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

"""ONNX export of a run's scoring function, checked against PyTorch with onnxruntime.

The graph takes `user` [B] (user index, 0 = a user the model has not seen), `items` [B, n] and `behaviors`
[B, n] (indices from the run's vocab.json, left-padded with 0, the most recent event last; n = the model's
max_len) and returns `scores` [B, N + 1] (column 0 is padding), the batch size B being free. It is the same
function the HTTP service ranks with (`Predictor.rank`), before masking and top-k.

Every model scores "the last position" through boolean-mask indexing, whose row count torch.export cannot
know; it only needs to know that the count is not zero (a batch has at least one row), so a forward pre-hook
states that with `torch._check` while tracing. torch's exporter raises deprecation warnings of its own
internals; they are silenced around the export call only.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch
from ssrf.models.base import SequentialRecommender
from ssrf.serving.predictor import Predictor, Query

log = logging.getLogger(__name__)

INPUTS, OUTPUT = ("user", "items", "behaviors"), "scores"


class Scorer(nn.Module):
    """The scoring function as a module of plain tensors: (user [B], items [B, n], behaviors [B, n]) ->
    scores [B, N + 1]."""

    def __init__(self, model: SequentialRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, user: torch.Tensor, items: torch.Tensor, behaviors: torch.Tensor) -> torch.Tensor:
        return self.model.score(SeqBatch(user=user, items=items, behaviors=behaviors))


@dataclass(frozen=True)
class ExportReport:
    path: Path
    opset: int
    max_len: int  # n
    n_items: int  # N
    checked_users: int  # real users whose onnxruntime scores were compared with PyTorch's
    max_abs_diff: float | None  # the largest difference found (None when not checked)


def _rows_not_empty(module: nn.Module, args: tuple[Any, ...]) -> None:
    for a in args:
        if isinstance(a, torch.Tensor) and a.dim() >= 1:
            torch._check(a.shape[0] != 0)


def sample_inputs(predictor: Predictor, n_users: int) -> SeqBatch:
    """[B, max_len] inputs of up to `n_users` real users (their stored histories)."""
    raw = predictor.data.vocabs["user"].raw[1 : n_users + 1]
    return predictor.inputs([predictor.resolve(Query(user=u)) for u in raw])


def export_onnx(predictor: Predictor, out: str | Path, *, check_users: int = 32) -> ExportReport:
    """Write the ONNX model to `out` (one file) and compare onnxruntime's scores with PyTorch's on up to
    `check_users` real users."""
    out = Path(out)
    scorer = Scorer(predictor.model).eval()
    example = sample_inputs(predictor, 2)
    args = (example.user, example.items, example.behaviors)
    batch = torch.export.Dim("batch", min=1)
    hooks = [m.register_forward_pre_hook(_rows_not_empty) for m in scorer.modules()]
    # the exporter and its optimiser log each pass at INFO, and "torchvision is not installed" as a warning
    noisy = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                scorer,
                args,
                dynamo=True,
                input_names=list(INPUTS),
                output_names=[OUTPUT],
                dynamic_shapes={name: {0: batch} for name in INPUTS},
                verbose=False,
            )
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)
        for h in hooks:
            h.remove()
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    model = program.model
    for value in (*model.graph.inputs, *model.graph.outputs):
        if value.shape is not None:
            value.shape = type(value.shape)(["batch", *list(value.shape)[1:]])
    model.metadata_props.update(
        {
            "ssrf.model": predictor.model_name,
            "ssrf.inputs": "user [batch] int64, items [batch, max_len] int64, behaviors [batch, max_len] "
            "int64 (vocab.json indices, left-padded with 0, most recent last)",
            "ssrf.output": "scores [batch, n_items + 1] float32 (column 0 is padding)",
            "ssrf.max_len": str(predictor.max_len),
            "ssrf.n_items": str(predictor.n_items),
            "ssrf.run": str(predictor.run.get("dir", "")),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    program.save(str(tmp), external_data=False)
    tmp.replace(out)
    opset = int(model.opset_imports.get("", 0))
    diff, checked = None, 0
    if check_users > 0:
        diff, checked = check_onnx(predictor, out, check_users)
    return ExportReport(out, opset, predictor.max_len, predictor.n_items, checked, diff)


def onnx_scores(path: str | Path, batch: SeqBatch) -> np.ndarray:
    """[B, N + 1] scores of an exported model under onnxruntime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: getattr(batch, name).cpu().numpy() for name in INPUTS}
    return np.asarray(session.run([OUTPUT], feed)[0])


@torch.inference_mode()
def torch_scores(predictor: Predictor, batch: SeqBatch) -> np.ndarray:
    return Scorer(predictor.model).eval()(batch.user, batch.items, batch.behaviors).float().cpu().numpy()


def check_onnx(predictor: Predictor, path: str | Path, n_users: int) -> tuple[float, int]:
    """The largest |onnxruntime - PyTorch| score over up to `n_users` real users, and how many there were."""
    batch = sample_inputs(predictor, n_users)
    diff = float(np.abs(onnx_scores(path, batch) - torch_scores(predictor, batch)).max())
    return diff, len(batch)

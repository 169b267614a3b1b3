"""Top-K recommendation from a run folder: raw user and item ids in, raw item ids out.

Loads only safetensors + JSON (no pickle): the run's best model bundle, its vocabularies, and the prepared
dataset it was trained on (for each user's stored history and the items' categories)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssrf.core import DataError
from ssrf.dataset.artifacts import Prepared
from ssrf.dataset.batches import input_batch, item_mask
from ssrf.dataset.sequences import Sequences
from ssrf.models.base import SequentialRecommender
from ssrf.models.registry import load_model


@dataclass(frozen=True)
class Recommendation:
    item: str  # raw item id
    score: float
    category: str | None  # raw id(s) of the item's first context field, ";"-joined when multi-valued


class Predictor:
    def __init__(self, model_name: str, model: SequentialRecommender, data: Prepared, device: torch.device):
        self.model_name, self.model, self.data, self.device = model_name, model.eval(), data, device
        self.seqs = Sequences.build(data)
        self.max_len: int = model.cfg.max_len  # type: ignore[attr-defined]
        field = data.fields[0] if data.fields else None
        self._categories: list[str | None] = [None] * (data.n_items + 1)
        if field is not None:
            raw = data.vocabs[f"field:{field}"].raw
            for item, ids in data.items.select("item", field).iter_rows():
                self._categories[item] = ";".join(raw[i] for i in ids) or None

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> Predictor:
        run_dir = Path(run_dir)
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"not a run folder: {exc}", path=run_dir) from None
        name, model = load_model(run_dir / "best", device)
        return cls(name, model, Prepared.load(config["data_path"]), torch.device(device))

    def user_index(self, raw_user: str) -> int:
        u = self.data.vocabs["user"].index(str(raw_user))
        if u is None or u == 0:
            raise DataError(f"unknown user {raw_user!r}")
        return u

    @torch.inference_mode()
    def recommend(
        self, raw_users: list[str], k: int = 10, include_seen: bool = False
    ) -> list[list[Recommendation]]:
        """The top-k items for each user from their whole stored history (best first)."""
        if not 1 <= k <= self.data.n_items:
            raise DataError(f"k must be between 1 and {self.data.n_items}, got {k}")
        users = np.array([self.user_index(u) for u in raw_users], dtype=np.int64)
        starts, ends = self.seqs.ptr[users], self.seqs.ptr[users + 1]
        batch = input_batch(self.seqs, users, starts, ends, self.max_len).trimmed().to(self.device)
        scores = self.model.score(batch).float()
        scores[:, 0] = float("-inf")
        if not include_seen:
            seen = item_mask(self.seqs.all_items(users), scores.shape[1], scores.device)
            scores = scores.masked_fill(seen, float("-inf"))
        top = scores.topk(k, dim=1)
        raw_items = self.data.vocabs["item"].raw
        return [
            [
                Recommendation(raw_items[i], float(s), self._categories[i])
                for s, i in zip(vals.tolist(), idx.tolist(), strict=True)
                if s != float("-inf")
            ]
            for vals, idx in zip(top.values, top.indices, strict=True)
        ]

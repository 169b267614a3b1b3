"""The one contract every recommender implements, so training, evaluation and serving never branch on it."""

from __future__ import annotations

import torch
from torch import nn

from ssrf.dataset.batches import SeqBatch


class SequentialRecommender(nn.Module):
    """A model that turns a sequence into a representation and scores items against it.

    Subclasses implement `hidden` (representations at chosen positions) and `output` (item scores for
    representations); `encode` and `score` follow from them.
    """

    n_items: int
    reads_history: bool = True  # False: scores ignore the sequence (popularity; random reads the user)

    def hidden(self, batch: SeqBatch, positions: torch.Tensor | None = None) -> torch.Tensor:
        """[T, D] representations at the True entries of `positions` [B, L] (row-major), each computed
        from that position and the ones before it only; `None` means the last column: [B, D]."""
        raise NotImplementedError

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of items for representations h [T, D]: all items [T, N + 1] (column 0 is padding) when
        `items` is None, else [T, C] for the candidate ids `items` [T, C]."""
        raise NotImplementedError

    def output_shared(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """[T, C] scores of candidates `items` [C] shared by every row (sampled softmax's negatives). The
        default goes through `output` per row; dot-product models override it with one matrix product."""
        return self.output(h, items[None, :].expand(h.shape[0], -1))

    def auxiliary_loss(
        self, batch: SeqBatch, positions: torch.Tensor, h: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor | None:
        """An extra training loss of the model's own (already weighted), added to the next-item loss: e.g.
        DIF-SR's attribute prediction from h [T, D] for the target items `targets` [T]. None: no extra."""
        return None

    def encode(self, batch: SeqBatch) -> torch.Tensor:  # [B, D]
        return self.hidden(batch, None)

    def score(self, batch: SeqBatch, items: torch.Tensor | None = None) -> torch.Tensor:
        """[B, C] scores of candidate items [B, C] (or of every item, [B, N + 1], when None)."""
        return self.output(self.encode(batch), items)


class TiedItemScores(SequentialRecommender):
    """Scores as the dot product of a representation with the item's own input embedding (`item_emb`, tied
    to the output): SASRec and the models built like it."""

    item_emb: nn.Embedding

    def output_shared(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return h @ self.item_emb(items).T  # [T, C]

    def output(self, h: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return h @ self.item_emb.weight.T  # [T, N + 1]
        return (h[:, None, :] * self.item_emb(items)).sum(-1)  # [T, C]

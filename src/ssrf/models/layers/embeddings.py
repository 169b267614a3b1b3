"""Item context fields (SSRF, FDSA) and free per-item output rows (SSRF, Caser, CosRec)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ItemFields(nn.Module):
    """Item -> context ids ([N + 1, K] buffer per field, 0-padded; filled by `set_tables` or
    `load_state_dict`, so a checkpoint alone rebuilds it) and a d-wide embedding table per field."""

    def __init__(self, n_items: int, field_sizes: Sequence[int], field_widths: Sequence[int], d: int) -> None:
        super().__init__()
        self.d = d
        self.embs = nn.ModuleList(nn.Embedding(s, d, padding_idx=0) for s in field_sizes)
        for i, k in enumerate(field_widths):
            self.register_buffer(f"item_field_{i}", torch.zeros(n_items + 1, k, dtype=torch.long))

    def set_tables(self, tables: Sequence[torch.Tensor]) -> None:
        for i, t in enumerate(tables):
            getattr(self, f"item_field_{i}").copy_(t)

    def pooled(self, items: torch.Tensor) -> torch.Tensor:
        """[..., F, D]: each field's embedding for each item, multi-valued fields mean-pooled."""
        out = []
        for i, emb in enumerate(self.embs):
            ids = getattr(self, f"item_field_{i}")[items]  # [..., K]
            n = (ids != 0).sum(-1, keepdim=True).clamp(min=1)
            out.append(emb(ids).sum(-2) / n)  # [..., D]
        if not out:
            return torch.zeros(*items.shape, 0, self.d, device=items.device)
        return torch.stack(out, dim=-2)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        """[..., D]: the sum over fields of the pooled embeddings."""
        return self.pooled(items).sum(-2)


class ItemOutput(nn.Module):
    """Scores h . W'_i + b'_i with a free row W'_i and bias b'_i per item (not tied to the input table);
    a model with its own rows (a tied table) passes them as `rows` and keeps only the bias here."""

    def __init__(self, n_items: int, width: int, free_rows: bool = True) -> None:
        super().__init__()
        self.rows = nn.Embedding(n_items + 1, width) if free_rows else None
        self.bias = nn.Embedding(n_items + 1, 1)
        if self.rows is not None:
            nn.init.normal_(self.rows.weight, std=width**-0.5)
        nn.init.zeros_(self.bias.weight)

    def forward(
        self, h: torch.Tensor, items: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[T, N + 1] when items is None, else [T, C] for the candidate ids items [T, C]."""
        if rows is None:
            assert self.rows is not None, "tied outputs must pass their rows"
            rows = self.rows.weight if items is None else self.rows(items)
        if items is None:
            return h @ rows.T + self.bias.weight.T
        return (h[:, None, :] * rows).sum(-1) + self.bias(items).squeeze(-1)


def init_weights(m: nn.Module) -> None:
    """For `module.apply`: embeddings ~ N(0, 1/width), padding row zero; linear layers Xavier, zero bias."""
    if isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=m.embedding_dim**-0.5)
        if m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])
    elif isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)

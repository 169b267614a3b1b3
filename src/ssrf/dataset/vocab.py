"""Vocabularies: raw id <-> contiguous int, with 0 = padding."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ssrf.core import PAD_ID

PAD_TOKEN = "<pad>"


@dataclass(frozen=True)
class Vocab:
    """`raw[i]` is the raw id of index i; `raw[0]` is the padding token."""

    raw: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.raw or self.raw[PAD_ID] != PAD_TOKEN:
            raise ValueError("a vocabulary starts with the padding token")
        object.__setattr__(self, "_index", {r: i for i, r in enumerate(self.raw)})

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> Vocab:
        return cls((PAD_TOKEN, *ids))

    def __len__(self) -> int:  # includes padding
        return len(self.raw)

    @property
    def has_repeats(self) -> bool:
        """Whether a raw id appears twice (`index` then finds only its last place)."""
        return len(self._index) != len(self.raw)

    def index(self, raw: str) -> int | None:
        return self._index.get(str(raw))

    def lookup(self, raws: Sequence[str]) -> list[int | None]:
        return [self._index.get(str(r)) for r in raws]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.raw[i] for i in ids]

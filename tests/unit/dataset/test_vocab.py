"""Vocab: raw id <-> contiguous index, index 0 the padding token."""

from __future__ import annotations

import pytest

from ssrf.core import PAD_ID
from ssrf.dataset.vocab import PAD_TOKEN, Vocab


def test_from_ids_puts_padding_first():
    v = Vocab.from_ids(["10", "7", "abc"])
    assert PAD_ID == 0 and v.raw[PAD_ID] == PAD_TOKEN == "<pad>"
    assert v.raw == ("<pad>", "10", "7", "abc")
    assert len(v) == 4  # padding included


def test_index_lookup_decode_round_trip():
    v = Vocab.from_ids(["10", "7", "abc"])
    assert v.index("7") == 2 and v.index(7) == 2  # raw ids are compared as strings
    assert v.index("missing") is None
    assert v.lookup(["abc", "10", "nope"]) == [3, 1, None]
    assert v.decode([3, 1, 0]) == ["abc", "10", "<pad>"]
    raws = ["7", "abc", "10", "7"]
    assert v.decode(v.lookup(raws)) == raws
    with pytest.raises(IndexError):
        v.decode([4])


def test_padding_token_is_required():
    with pytest.raises(ValueError, match="starts with the padding token"):
        Vocab(("a", "b"))
    with pytest.raises(ValueError, match="starts with the padding token"):
        Vocab(())
    assert Vocab(("<pad>",)).decode([0]) == ["<pad>"]


def test_vocabs_compare_by_content():
    assert Vocab.from_ids(["a", "b"]) == Vocab(("<pad>", "a", "b"))
    assert Vocab.from_ids(["a", "b"]) != Vocab.from_ids(["b", "a"])

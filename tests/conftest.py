"""Shared fixtures: the real data samples in `shared/data` beside the repository, and the hand-written tiny
inputs in tests/fixtures/tiny (their expected values are worked out in tests/fixtures/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data samples (read-only); tests that need it skip when it is not there."""
    path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(
            f"real data samples not found: expected the folder shared/data beside the repository root "
            f"({path.resolve()})"
        )
    return path


@pytest.fixture(scope="session")
def tiny() -> Path:
    """The hand-written tiny inputs, one or a few per format."""
    return TESTS / "fixtures" / "tiny"

"""The datasets of `ssrf reproduce`: where their files are, how they are prepared, what a reader must know."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ssrf.dataset.prepare import PrepareConfig


def default_data_root() -> Path:
    """$SSRF_SHARED_DATA, else shared/data beside the repository (or beside the working directory)."""
    env = os.environ.get("SSRF_SHARED_DATA")
    if env:
        return Path(env)
    beside_repo = Path(__file__).resolve().parents[4] / "shared" / "data"
    beside_cwd = Path.cwd().resolve().parent / "shared" / "data"
    return beside_repo if beside_repo.is_dir() or not beside_cwd.is_dir() else beside_cwd


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    key: str  # short name used in run folders and tables
    title: str  # what a reader sees
    files: tuple[str, ...]  # input files, relative to the data root
    fmt: str  # reader format
    prepare: PrepareConfig  # cleaning, k-core and split options
    strongest: str | None  # the behaviour whose loss weight figures 2-3 sweep (None: one behaviour only)
    paper: str | None  # the paper's column for this dataset ("Alibaba", "Retailrocket") or None
    note: str  # what the reader must know about this sample


def dataset_specs(sample_beauty_users: int | None = None) -> dict[str, DatasetSpec]:
    """The four datasets: three under the paper's temporal 70/30 protocol, Beauty under leave-one-out."""
    beauty_note = (
        "The S3-Rec preprocessing of Amazon Beauty: no timestamps (the order is the time), item attributes "
        "(categories and brand) as a multi-valued context field, one behaviour. Leave-one-out: the last item "
        "is the test target, the second to last the validation target; ranked against every item, the "
        "user's earlier items masked."
    )
    if sample_beauty_users:
        beauty_note += (
            f" Quick plan: a seeded sample of {sample_beauty_users} users, users with at least 3 and items "
            "with at least 2 events: not comparable with published numbers."
        )
    return {
        "taobao": DatasetSpec(
            key="taobao",
            title="Taobao UserBehavior (head 100k rows)",
            files=("taobao-userbehavior/UserBehavior_head100k.csv",),
            fmt="taobao",
            prepare=PrepareConfig(split="temporal"),
            strongest="buy",
            paper="Alibaba",
            note=(
                "The largest real sample here: the first 100,001 rows of the Alibaba UserBehavior log "
                "(complete histories of 983 users). Context: the item's category and the behaviour type "
                "(pv, fav, cart, buy). 5-core filtering (users and items with at least 5 events) keeps "
                "15% of the rows: most of the 64,467 items occur once or twice."
            ),
        ),
        "retailrocket": DatasetSpec(
            key="retailrocket",
            title="Retailrocket (5,000-visitor sample)",
            files=("retailrocket/sample_events.csv",),
            fmt="retailrocket",
            prepare=PrepareConfig(split="temporal", min_user_events=2, min_item_events=2),
            strongest="transaction",
            paper="Retailrocket",
            note=(
                "**No item categories**: the sample has no item->category mapping (see its PROVENANCE.md), "
                "so the behaviour type (view, addtocart, transaction) is the only context here, not the "
                "paper's category context. It is also very sparse (9,385 events of 5,000 visitors, 6,610 "
                "items): 5-core filtering leaves 79 users and 7 test users, so we filter 2-core (users and "
                "items with at least 2 events). Even so, few users have events on both sides of the time "
                "cut: the test metrics average over a few dozen users and are noisy."
            ),
        ),
        "diginetica": DatasetSpec(
            key="diginetica",
            title="Diginetica (CIKM Cup 2016 sample)",
            files=(
                "diginetica/sample_train-item-views.csv",
                "diginetica/train-purchases.csv",
                "diginetica/product-categories.csv",
            ),
            fmt="diginetica",
            prepare=PrepareConfig(split="temporal", min_user_events=2, min_item_events=2),
            strongest="purchase",
            paper=None,
            note=(
                "Real e-commerce with categories (every item has one), added as a third dataset because the "
                "Retailrocket sample has none. A session is the sequence unit (most sessions are anonymous), "
                "the behaviour is view or purchase. Sessions rarely straddle one global time cut, so under "
                "the paper's temporal protocol only a few dozen sessions are test users, 2-core filtered as "
                "Retailrocket: these metrics are noisy too."
            ),
        ),
        "beauty": DatasetSpec(
            key="beauty",
            title="Amazon Beauty (S3-Rec)"
            + (f", {sample_beauty_users}-user sample" if sample_beauty_users else ""),
            files=("beauty/Beauty.txt",),
            fmt="s3rec",
            prepare=PrepareConfig(
                split="loo", sample_users=sample_beauty_users, min_user_events=3, min_item_events=2
            )
            if sample_beauty_users
            else PrepareConfig(split="loo"),
            strongest=None,
            paper=None,
            note=beauty_note,
        ),
    }

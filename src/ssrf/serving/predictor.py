"""Top-K recommendation from a run folder: raw user and item ids in, raw item ids out.

Loads only safetensors + JSON + Parquet (no pickle), all from the run folder: the best model bundle, and the
run's copy of the prepared dataset it was trained on (vocabularies, each user's stored history, the items'
categories), every file checked against its recorded digest.

A request is a `Query`: a known user (scored from their stored history), a history of events (a user the
model has never seen, scored from those events alone), or both (the events extend the stored history).
`resolve` turns a query into index arrays, or raises a `DataError` that says what is wrong; `rank` scores
many resolved queries in one batched forward pass. Anything a query carries that the model cannot use (an
unknown item, an unknown behaviour) is left out and named in the answer's warnings, never silently.

Top-K is found by scoring every item (`index="exact"`, the default) or through an item index
(`ssrf.serving.index`: "faiss-flat", "faiss-hnsw", "faiss-ivf", or `IndexSettings`): the encoded query is
searched in a FAISS index over the model's item rows (bias folded in), the history left out by over-fetching,
and the items found are scored again by the model itself, so the scores served are the model's. A model
whose scores are not an inner product keeps exact scoring; `index_info` says which index serves and why,
with its build time and memory. A query the index cannot fill (more masked items than it fetches) is scored
exactly (`index_fallbacks` counts them).

A known user asked about with nothing new (no history events given, or none the model knows) is scored from
their stored history alone, which the run folder fixes: with `user_cache_mb` > 0 every stored user's
representation is computed once at load (in batches of similar length, as `rank` would) and kept, so such a
query skips the forward pass. The cache holds [users, D] floats and is built only when that fits in the
budget, and only for models whose representation is a fixed-width float vector; `cache_info` says whether
it was built, its size and build time, or why not."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssrf.core import PAD_ID, DataError
from ssrf.dataset import snapshot
from ssrf.dataset.artifacts import Prepared
from ssrf.dataset.batches import SeqBatch
from ssrf.dataset.sequences import Sequences
from ssrf.models.base import SequentialRecommender
from ssrf.models.registry import CONFIG, load_model
from ssrf.serving.index import (
    DotForm,
    ExactIndex,
    FaissIndex,
    IndexSettings,
    NotInnerProduct,
    build_index,
    dot_form,
    index_settings,
)

log = logging.getLogger(__name__)
NEG_INF = torch.tensor(float("-inf"))


@dataclass(frozen=True)
class Recommendation:
    item: str  # raw item id
    score: float
    category: str | None  # raw id(s) of the item's first context field, ";"-joined when multi-valued


@dataclass(frozen=True)
class Event:
    item: str  # raw item id
    behavior: str | None = None  # raw behaviour name; None = the data's most frequent behaviour


@dataclass(frozen=True)
class Query:
    user: str | None = None  # raw user id; None (or unknown, with a history) = a user the model has not seen
    history: tuple[Event, ...] = ()  # oldest first, read after the user's stored history
    k: int = 10  # how many items (at most the catalogue size)
    include_seen: bool = False  # keep items of the stored history and of `history`


@dataclass(frozen=True)
class Resolved:
    """A query as index arrays: what `rank` scores."""

    user: int  # user index; 0 = not a user the model was trained on
    items: np.ndarray  # [<= max_len] int64: the last events' items, oldest first
    behaviors: np.ndarray  # [<= max_len] int64
    seen: np.ndarray  # items of the whole history (stored + given; repeats allowed)
    k: int
    include_seen: bool
    warnings: tuple[str, ...] = ()
    stored_only: bool = False  # a known user's stored history and nothing else: the cached representation


@dataclass(frozen=True)
class Answer:
    items: list[Recommendation]  # best first
    warnings: list[str]  # what the query carried that was left out, and why


class UnknownUser(DataError):
    """Nothing the model knows to score from: an unknown user without a history, or no known user and no
    known item in the history."""


def for_serving(model: SequentialRecommender) -> SequentialRecommender:
    """Eval mode, and user row 0 of a per-user embedding set to zero: user ids start at 1, so training never
    touches that row, and a user the model has not seen is then scored without a personal part (P_u = 0)
    instead of with a random one."""
    model.eval()
    emb = getattr(model, "user_emb", None)
    if isinstance(emb, nn.Embedding):
        with torch.no_grad():
            emb.weight[PAD_ID].zero_()
    return model


class Predictor:
    def __init__(
        self,
        model_name: str,
        model: SequentialRecommender,
        data: Prepared,
        device: torch.device,
        run: dict[str, Any] | None = None,
        *,
        index: str | IndexSettings = "exact",
        index_dir: Path | None = None,
        weights_digest: str | None = None,
        user_cache_mb: float = 0,
    ):
        """`index`: how top-K items are found (see the module's docstring); `index_dir`: where an HNSW or IVF
        index is saved and reused (None: built every time); `weights_digest`: the model bundle's, recorded
        with a saved index; `user_cache_mb`: memory for the stored users' representations (0: no cache)."""
        self.model_name, self.model, self.data, self.device = model_name, for_serving(model), data, device
        self.run: dict[str, Any] = run or {}  # {"dir", "config" (config.json), "results" (results.json)}
        self.seqs = Sequences.build(data)
        self.nonfinite_scores = 0  # queries whose scores held NaN or inf (those items are never served)
        self.index_fallbacks = 0  # queries the index could not fill, scored exactly instead
        self.max_len: int = model.cfg.max_len  # type: ignore[attr-defined]
        self.n_items = data.n_items
        self._users, self._items = data.vocabs["user"], data.vocabs["item"]
        self._behaviors = data.vocabs["behavior"]
        counts = np.bincount(self.seqs.behaviors, minlength=len(self._behaviors))
        self.default_behavior = int(counts[1:].argmax()) + 1 if len(counts) > 1 else 1
        field = data.fields[0] if data.fields else None
        self._categories: list[str | None] = [None] * (data.n_items + 1)
        if field is not None:
            raw = data.vocabs[f"field:{field}"].raw
            for item, ids in data.items.select("item", field).iter_rows():
                self._categories[item] = ";".join(raw[i] for i in ids) or None
        self.index_settings = index_settings(index)
        self.form: DotForm | None = None
        self.index: ExactIndex | FaissIndex | None = None  # None: every item scored by the model
        self.index_info: dict[str, Any] = self._build_index(index_dir, weights_digest)
        self.vector_width, self.rep_dtype = self._probe_width()
        self.user_reps: torch.Tensor | None = None  # [n_users + 1, D]: stored users' representations
        self.cache_info: dict[str, Any] = self._build_user_cache(user_cache_mb)

    def _stored_users(self) -> np.ndarray:
        """Indices of the users with at least one stored event."""
        users = np.flatnonzero(np.diff(self.seqs.ptr) > 0)
        return users[users != PAD_ID]

    def _probe(self) -> torch.Tensor:
        """The model's representations of up to 32 stored users (the probe `dot_form` checks against)."""
        users = self._stored_users()[:32]
        resolved = [self.resolve(Query(self._users.raw[u])) for u in users]
        if not resolved:  # no stored history at all: one event of item 1
            one = np.ones(1, dtype=np.int64)
            resolved = [Resolved(PAD_ID, one, one * self.default_behavior, one, 1, True)]
        with torch.inference_mode():
            return self.model.encode(self.inputs(resolved).trimmed().to(self.device))

    def _build_index(self, index_dir: Path | None, weights_digest: str | None) -> dict[str, Any]:
        settings = self.index_settings
        info: dict[str, Any] = {
            "requested": settings.describe(),
            "index": "exact",
            "reason": "requested" if settings.kind == "exact" else None,
            "items": self.n_items,
            "dim": None,
            "build_s": 0.0,
            "memory_bytes": 0,
        }
        if settings.kind == "exact":
            return info
        start = time.perf_counter()
        try:
            self.form = dot_form(self.model, self._probe())
        except NotInnerProduct as exc:
            info["reason"] = f"{self.model_name} keeps exact scoring: {exc}"
            log.warning("index %s not used: %s", settings.name, info["reason"])
            return info
        form_s = time.perf_counter() - start
        self.index, cache = build_index(self.form, settings, index_dir, weights_digest)
        self.form = self.form.without_rows()  # the index holds them
        info.update(
            index=settings.describe(),
            reason=f"{self.model_name} scores items as [h ; 1] . [w_i ; b_i] (checked on a probe batch)",
            dim=self.form.dim,
            form_s=round(form_s, 3),
            build_s=round(form_s + self.index.build_s, 3),
            memory_bytes=int(self.index.memory_bytes),
            structure=self.index.description,
            **cache,
        )
        log.info(
            "index %s: %d items x %d dims in %.1f s (%.1f MB)%s",
            info["index"],
            self.n_items,
            self.form.dim,
            info["build_s"],
            info["memory_bytes"] / 2**20,
            " (read from the cache)" if cache.get("cache_hit") else "",
        )
        return info

    def _probe_width(self) -> tuple[int | None, torch.dtype]:
        """(D, dtype) when the model's representation is a float vector [B, D] whose width does not depend on
        the history's length (probed with 1 and `max_len` events); (None, float32) otherwise, e.g. a rule
        that reads the item ids themselves."""
        if not self.model.reads_history:
            return None, torch.float32
        shapes = set()
        for n in (1, self.max_len):
            items = np.ones(n, dtype=np.int64)
            probe = Resolved(PAD_ID, items, items * self.default_behavior, items, 1, True)
            with torch.inference_mode():
                h = self.model.encode(self.inputs([probe]).trimmed().to(self.device))
            if h.dim() != 2 or not h.dtype.is_floating_point:
                return None, torch.float32
            shapes.add((int(h.shape[1]), h.dtype))
        if len(shapes) != 1:
            return None, torch.float32
        return shapes.pop()

    def _build_user_cache(self, budget_mb: float) -> dict[str, Any]:
        """Every stored user's representation, encoded in length buckets of up to 512 users (see the
        module's docstring); what was done, or why not, as a dict."""
        info: dict[str, Any] = {"users": 0, "dim": self.vector_width, "memory_bytes": 0, "build_s": 0.0}
        if budget_mb <= 0:
            return {**info, "cached": False, "reason": "off (user_cache_mb = 0)"}
        if self.vector_width is None:
            reason = f"{self.model_name}'s representation is not a fixed-width float vector"
            return {**info, "cached": False, "reason": reason}
        start = time.perf_counter()
        users = self._stored_users()
        if not len(users):
            return {**info, "cached": False, "reason": "no stored history"}
        width = self.vector_width
        need = (self.data.n_users + 1) * width * self.rep_dtype.itemsize
        if need > budget_mb * 2**20:
            reason = f"needs {need / 2**20:.1f} MB, over the {budget_mb:g} MB budget"
            return {**info, "cached": False, "reason": reason}
        reps = torch.zeros(self.data.n_users + 1, width, dtype=self.rep_dtype, device=self.device)
        lengths = np.minimum(np.diff(self.seqs.ptr)[users], self.max_len)
        order = users[np.argsort(lengths, kind="stable")]  # similar lengths together: little padding
        with torch.inference_mode():
            for lo in range(0, len(order), 512):
                chunk = order[lo : lo + 512]
                resolved = [self.resolve(Query(self._users.raw[u])) for u in chunk]
                batch = self.inputs(resolved).trimmed().to(self.device)
                reps[torch.from_numpy(chunk).to(self.device)] = self.model.encode(batch)
        self.user_reps = reps
        seconds = time.perf_counter() - start
        log.info("user cache: %d users x %d in %.1f s (%.1f MB)", len(users), width, seconds, need / 2**20)
        return {
            "cached": True,
            "reason": "stored users' representations computed at load",
            "users": len(users),
            "dim": width,
            "memory_bytes": int(need),
            "build_s": round(seconds, 3),
        }

    @classmethod
    def load(
        cls,
        run_dir: str | Path,
        device: str = "cpu",
        index: str | IndexSettings = "exact",
        *,
        index_cache: bool = True,
        user_cache_mb: float = 0,
    ) -> Predictor:
        """A predictor for the run's best model. `index`: "exact" (default), "faiss-flat", "faiss-hnsw",
        "faiss-ivf" (optionally with settings: "faiss-hnsw:ef_search=512") or `IndexSettings`; with
        `index_cache`, an HNSW or IVF index is saved in `<run>/index/` and reused while the weights match;
        `user_cache_mb` > 0 keeps every stored user's representation (see the module's docstring)."""
        run_dir = Path(run_dir)
        settings = index_settings(index)  # a bad index name fails before anything is loaded
        config = snapshot.read_config(run_dir)
        try:
            results = json.loads((run_dir / "results.json").read_text())
        except FileNotFoundError:
            results = None  # an unfinished run still serves; it has no test metrics
        except (OSError, ValueError) as exc:
            raise DataError(f"unreadable results: {exc}", path=run_dir / "results.json") from None
        if results is not None and not isinstance(results, dict):
            raise DataError("not a results object", path=run_dir / "results.json")
        name, model = load_model(run_dir / "best", device)
        data = snapshot.load(run_dir, config)
        if model.n_items != data.n_items:
            raise DataError(
                f"the model scores {model.n_items} items but its dataset has {data.n_items}",
                path=run_dir / "best",
            )
        run = {"dir": str(run_dir), "config": config, "results": results}
        try:
            weights = json.loads((run_dir / "best" / CONFIG).read_text()).get("weights_blake2b")
        except (OSError, ValueError, AttributeError):
            weights = None
        return cls(
            name,
            model,
            data,
            torch.device(device),
            run,
            index=settings,
            index_dir=run_dir / "index" if index_cache else None,
            weights_digest=weights,
            user_cache_mb=user_cache_mb,
        )

    def knows_user(self, raw_user: str) -> bool:
        u = self._users.index(str(raw_user))
        return u is not None and u != PAD_ID

    def user_index(self, raw_user: str) -> int:
        u = self._users.index(str(raw_user))
        if u is None or u == PAD_ID:
            raise UnknownUser(f"unknown user {raw_user!r}")
        return u

    @property
    def behaviors(self) -> list[str]:
        return list(self._behaviors.raw[1:])

    def resolve(self, query: Query) -> Resolved:
        """Index arrays for a query; a `DataError` (`UnknownUser` for an unknown user with no history) when
        there is nothing to score from."""
        if query.k < 1:
            raise DataError(f"k must be at least 1, got {query.k}")
        if query.user is None and not query.history:
            raise DataError("give a user id, a history, or both")
        warnings: list[str] = []
        user, stored = PAD_ID, slice(0, 0)
        if query.user is not None:
            u = self._users.index(query.user)
            if u is None or u == PAD_ID:
                if not query.history:
                    raise UnknownUser(f"unknown user {query.user!r} and no history to score from")
                warnings.append(f"unknown user {query.user!r}: scored from the given history alone")
            else:
                user, stored = u, slice(int(self.seqs.ptr[u]), int(self.seqs.ptr[u + 1]))
        items, behaviors = [], []
        for i, event in enumerate(query.history):
            item = self._items.index(event.item)
            if item is None or item == PAD_ID:
                warnings.append(f"history[{i}]: unknown item {event.item!r} ignored")
                continue
            behavior = self.default_behavior
            if event.behavior is not None:
                b = self._behaviors.index(event.behavior)
                if b is None or b == PAD_ID:
                    fallback = self._behaviors.raw[self.default_behavior]
                    warnings.append(
                        f"history[{i}]: unknown behavior {event.behavior!r} ignored (read as {fallback!r})"
                    )
                else:
                    behavior = b
            items.append(item)
            behaviors.append(behavior)
        if user == PAD_ID and not items:
            raise UnknownUser("nothing to score from: no known user and no known item in the history")
        all_items = np.concatenate((self.seqs.items[stored], np.asarray(items, dtype=np.int64)))
        all_behaviors = np.concatenate((self.seqs.behaviors[stored], np.asarray(behaviors, dtype=np.int64)))
        return Resolved(
            user=user,
            items=all_items[-self.max_len :],
            behaviors=all_behaviors[-self.max_len :],
            seen=all_items,  # (np.unique costs more than masking a repeated column twice)
            k=min(query.k, self.n_items),
            include_seen=query.include_seen,
            warnings=tuple(warnings),
            stored_only=user != PAD_ID and not items and stored.stop > stored.start,  # a cached row
        )

    def inputs(self, resolved: Sequence[Resolved]) -> SeqBatch:
        """The model's input for resolved queries: [B] users and [B, max_len] left-padded sequences."""
        n = self.max_len
        items = np.zeros((len(resolved), n), dtype=np.int64)
        behaviors = np.zeros_like(items)
        for row, r in enumerate(resolved):
            items[row, n - len(r.items) :] = r.items
            behaviors[row, n - len(r.behaviors) :] = r.behaviors
        users = np.array([r.user for r in resolved], dtype=np.int64)
        return SeqBatch(
            user=torch.from_numpy(users), items=torch.from_numpy(items), behaviors=torch.from_numpy(behaviors)
        )

    def rank(self, resolved: Sequence[Resolved]) -> list[list[Recommendation]]:
        """The top-k items of each resolved query, best first. The histories are encoded in groups of similar
        length (up to 8, 16, 32, ... events; from 16 queries on), each padded only to its own longest: one
        short history batched with a long one would otherwise cost as much as the long one. A model whose
        representation is a vector (`vector_width`) then scores all the queries in one pass, cached users
        included; any other is scored group by group."""
        if self.vector_width is not None or len(resolved) < 16:
            return self._rank(resolved)
        out: list[list[Recommendation]] = [[] for _ in resolved]
        for rows in self._length_groups(resolved):
            for row, recs in zip(rows, self._rank([resolved[i] for i in rows]), strict=True):
                out[row] = recs
        return out

    @staticmethod
    def _length_groups(resolved: Sequence[Resolved]) -> list[np.ndarray]:
        """Rows of `resolved` grouped by history length (up to 8, 16, 32, ... events)."""
        lengths = np.array([max(len(r.items), 1) for r in resolved], dtype=np.int64)
        buckets = np.maximum(8, 1 << np.ceil(np.log2(lengths)).astype(np.int64))
        return [np.flatnonzero(buckets == b) for b in np.unique(buckets)]

    def _encode(self, resolved: Sequence[Resolved]) -> torch.Tensor:
        """[B, D] representations: a cached user's from the cache, the rest by forward passes (in length
        groups from 16 queries on, for a vector representation; else in one pass)."""
        if self.vector_width is None:
            return self.model.encode(self.inputs(resolved).trimmed().to(self.device))
        cached = [i for i, r in enumerate(resolved) if r.stored_only] if self.user_reps is not None else []
        if len(cached) == len(resolved):
            users = torch.tensor([r.user for r in resolved], dtype=torch.int64, device=self.device)
            return self.user_reps[users]  # type: ignore[index]
        if not cached and len(resolved) < 16:
            return self.model.encode(self.inputs(resolved).trimmed().to(self.device))
        h = torch.empty(len(resolved), self.vector_width, dtype=self.rep_dtype, device=self.device)
        if cached:
            users = torch.tensor([resolved[i].user for i in cached], dtype=torch.int64, device=self.device)
            h[torch.tensor(cached, device=self.device)] = self.user_reps[users]  # type: ignore[index]
        rest = np.setdiff1d(np.arange(len(resolved)), cached)
        groups = (
            self._length_groups([resolved[i] for i in rest]) if len(rest) >= 16 else [np.arange(len(rest))]
        )
        for group in groups:
            rows = rest[group]
            batch = self.inputs([resolved[i] for i in rows]).trimmed().to(self.device)
            h[torch.from_numpy(rows).to(self.device)] = self.model.encode(batch)
        return h

    @torch.inference_mode()
    def _rank(self, resolved: Sequence[Resolved]) -> list[list[Recommendation]]:
        """`rank` for one batch: one forward pass."""
        if not resolved:
            return []
        if self.index is not None:
            return self._rank_indexed(resolved)
        return self._rank_exact(resolved)

    def _rank_exact(self, resolved: Sequence[Resolved]) -> list[list[Recommendation]]:
        """Every item scored by the model, masked, top-k."""
        scores = self.model.output(self._encode(resolved)).float()  # [B, N + 1]
        lo, hi = torch.aminmax(scores)  # NaN if any is: one pass, where isfinite() makes two [B, N] copies
        if not (math.isfinite(lo) and math.isfinite(hi)):
            bad = ~torch.isfinite(scores[:, 1:])
            if bool(bad.any()):  # a broken model: its non-finite scores are left out, and counted
                self.nonfinite_scores += int(bad.any(dim=1).sum())
                log.error("non-finite scores for %d of %d queries", int(bad.any(dim=1).sum()), len(resolved))
                scores[:, 1:].masked_fill_(bad, float("-inf"))
        scores[:, PAD_ID] = float("-inf")
        masked = [np.empty(0, dtype=np.int64) if r.include_seen else r.seen for r in resolved]
        if any(len(m) for m in masked):  # the seen items' cells set in place: no [B, N] mask built
            rows = torch.from_numpy(np.repeat(np.arange(len(masked)), [len(m) for m in masked]))
            cols = torch.from_numpy(np.concatenate(masked).astype(np.int64, copy=False))
            at = (rows.to(scores.device), cols.to(scores.device))
            scores.index_put_(at, NEG_INF.to(scores.device))
        top = scores.topk(max(r.k for r in resolved), dim=1)
        values, indices = top.values.cpu().tolist(), top.indices.cpu().tolist()
        raw_items = self._items.raw
        return [
            [
                Recommendation(raw_items[i], s, self._categories[i])
                for s, i in zip(vals[: r.k], idx[: r.k], strict=True)
                if s != float("-inf")
            ]
            for r, vals, idx in zip(resolved, values, indices, strict=True)
        ]

    def _rank_indexed(self, resolved: Sequence[Resolved]) -> list[list[Recommendation]]:
        """Candidates from the index (history left out), scored again by the model, best first. A query
        with a non-finite representation, or one the index could not fill, goes the exact way."""
        assert self.index is not None and self.form is not None
        h = self._encode(resolved).float()  # [B, D]
        masked = [np.empty(0, dtype=np.int64) if r.include_seen else r.seen for r in resolved]
        hits = self.index.search(self.form.queries(h), max(r.k for r in resolved), masked)
        finite = torch.isfinite(h).all(dim=1).cpu().numpy()
        exact = np.flatnonzero(~finite | ~hits.complete)
        self.index_fallbacks += int((finite & ~hits.complete).sum())
        items = torch.from_numpy(np.maximum(hits.items, PAD_ID)).to(self.device)  # -1 (none) -> padding
        scores = self.model.output(h, items).float()  # [B, k]: the model's own scores of the candidates
        pad = items == PAD_ID
        bad = ~torch.isfinite(scores) & ~pad
        bad[torch.from_numpy(~finite).to(bad.device)] = False  # those rows are scored (and counted) exactly
        if bool(bad.any()):  # a broken model: its non-finite scores are left out, and counted
            self.nonfinite_scores += int(bad.any(dim=1).sum())
            log.error("non-finite scores for %d of %d queries", int(bad.any(dim=1).sum()), len(resolved))
        scores.masked_fill_(pad | bad, float("-inf"))
        order = scores.argsort(dim=1, descending=True, stable=True)
        values = scores.gather(1, order).cpu().tolist()
        ids = items.gather(1, order).cpu().tolist()
        raw_items = self._items.raw
        out = [
            [
                Recommendation(raw_items[i], s, self._categories[i])
                for s, i in zip(vals[: r.k], idx[: r.k], strict=True)
                if s != float("-inf")
            ]
            for r, vals, idx in zip(resolved, values, ids, strict=True)
        ]
        if len(exact):
            for row, recs in zip(exact, self._rank_exact([resolved[i] for i in exact]), strict=True):
                out[row] = recs
        return out

    def answer(self, queries: Sequence[Query]) -> list[Answer]:
        """Resolve and rank queries (a `DataError` for the first that cannot be scored)."""
        resolved = [self.resolve(q) for q in queries]
        return [Answer(recs, list(r.warnings)) for r, recs in zip(resolved, self.rank(resolved), strict=True)]

    def recommend(
        self, raw_users: list[str], k: int = 10, include_seen: bool = False
    ) -> list[list[Recommendation]]:
        """The top-k items for each user from their whole stored history (best first)."""
        if not 1 <= k <= self.n_items:
            raise DataError(f"k must be between 1 and {self.n_items}, got {k}")
        for u in raw_users:
            self.user_index(u)
        return [a.items for a in self.answer([Query(str(u), (), k, include_seen) for u in raw_users])]

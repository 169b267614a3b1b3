"""Item indexes for top-K retrieval at catalogue scale: exact brute force, or FAISS (flat, HNSW, IVF).

Most models score an item as an inner product plus a bias: s_i(h) = q(h) . w_i + b_i, with q(h) some of the
columns of the representation h (SASRec, GRU4Rec, FDSA, DIF-SR, BSARec: h @ E^T; Caser, CosRec, SSRF: a row
and a bias per item; FM: [sum of the query fields ; the query's own terms] against [sum of the item's ; 1]).
Folding the bias in as one more dimension, [q ; 1] . [w_i ; b_i], top-K is a maximum-inner-product search
over one matrix, which FAISS does in far less than a pass over the catalogue.

`dot_form` finds that matrix for ANY model without knowing its code: it reads `model.output` as a function of
h, b = output(0) and the rows from output(s e_j) for each unit vector e_j, and keeps the form only when it
reproduces `model.output` on real representations (a probe batch) to float precision. A model whose scores
are not affine in h (six of the seven CTR models, whose query and item meet inside an MLP, attention or
cross layers) or whose representation is not a vector of floats (the `random` and `repeat` rules hold ids)
is refused with the reason, and keeps exact scoring. Columns the scores never read (SSRF without a user
embedding ignores the second half of h) are dropped.

Indexes (`IndexSettings`, or a preset name: "exact", "faiss-flat", "faiss-hnsw", "faiss-ivf", optionally
with settings, "faiss-ivf:nprobe=64"):
- exact: every item scored (the model's own `score` in the predictor; `ExactIndex` here, a matrix product
  and top-k over the same rows, is the reference the benchmark measures recall against);
- flat: FAISS brute force, exact (the tests' index);
- hnsw: a proximity graph (m links per node, ef_search candidates per query; preset m=32,
  ef_construction=80, ef_search growing with the catalogue, `auto_ef_search`): the fastest search for a
  given recall, the slowest build (14 minutes for 2.4M items on one core);
- ivf: k-means cells (nlist, preset 4 sqrt(N)), nprobe of them scanned per query (preset a quarter): quick
  to build, but on nearly isotropic rows, as trained item rows are, it needs a large share of the cells for
  high recall (benchmarks/serve_scale.py).
Both search the inner product with FAISS's inner-product metric (`mips="ip"`). `mips="l2"` is the classic
reduction to nearest neighbours (each row gets sqrt(M^2 - |x|^2) as one more coordinate, M the largest row
norm, and the query a 0), kept for comparison: on trained and generated rows its HNSW recall was far lower
(0.63 against 0.99 at ef_search 128 on Beauty's 12,101 items), as Morozov & Babenko (NeurIPS 2018) found.

Masked items (the history) are handled by over-fetching: k plus the number of distinct masked items (at
most `max_fetch`), then filtering. Padding (item 0) is never in an index. A query that ends with fewer than
k items while the catalogue has more is flagged (`Hits.complete`), so the caller can score it exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ssrf.core import DataError, atomic_write_text
from ssrf.models.base import SequentialRecommender

log = logging.getLogger(__name__)

Kind = Literal["exact", "flat", "hnsw", "ivf"]
PROBE_SCALE = 2.0**10  # the unit vectors' length when reading rows: a power of two, so scaling is exact
CHECK_RTOL = 1e-4  # the form must match output() to this fraction of the probe's largest |score|
CHECK_ATOL = 1e-6
BASIS_CHUNK = 16  # unit vectors scored together when reading the rows (16 x N floats at a time)
SEARCH_ONLY = ("ef_search", "nprobe", "max_fetch", "threads")  # settings a built index does not depend on


# settings


@dataclass(frozen=True)
class IndexSettings:
    """How top-K items are found. Only the settings of `kind` matter."""

    kind: Kind = "exact"
    m: int = 32  # hnsw: neighbours per node (memory: about 2 m int32 per item)
    ef_construction: int = 80  # hnsw: candidates kept while building (build time grows with it)
    ef_search: int = 0  # hnsw: candidates kept while searching (at least the fetch size); 0: auto_ef_search
    nlist: int = 0  # ivf: k-means cells; 0: 4 sqrt(N) (at most N / 40)
    nprobe: int = 0  # ivf: cells scanned per query; 0: a quarter of them
    train_size: int = 0  # ivf: rows k-means trains on; 0: 40 per cell (at most N)
    mips: Literal["ip", "l2"] = "ip"  # hnsw/ivf: FAISS's inner-product metric, or L2 on norm-equalised rows
    max_fetch: int = 4096  # most candidates fetched per query (k + masked items, capped at this)
    threads: int = 0  # FAISS's OpenMP threads (a process-wide setting); 0: leave it as it is

    @property
    def name(self) -> str:
        return "exact" if self.kind == "exact" else f"faiss-{self.kind}"

    def describe(self) -> str:
        """The settings that matter for this kind, e.g. "faiss-hnsw(m=32, ef_search=128, ...)"."""
        keys = {
            "exact": (),
            "flat": (),
            "hnsw": ("m", "ef_construction", "ef_search", "mips"),
            "ivf": ("nlist", "nprobe", "mips"),
        }[self.kind]
        inner = ", ".join(f"{k}={getattr(self, k) if getattr(self, k) != 0 else 'auto'}" for k in keys)
        return f"{self.name}({inner})" if inner else self.name


def auto_ef_search(n: int) -> int:
    """HNSW's ef_search for n items when not set: the power of two at or above sqrt(n) / 2, at least 256
    (256 up to 262k items, 512 up to 1M, 1024 up to 4.2M). Measured (benchmarks/serve_scale.py, m=32,
    ef_construction=80): recall@10 0.997 at 100k, 0.987 at 1M, 0.992 at 2.4M items; 0.9965 on the trained
    Beauty SSRF (12,101 items)."""
    return max(256, 1 << max(0, math.ceil(math.log2(max(1.0, math.sqrt(n) / 2)))))


PRESETS: dict[str, IndexSettings] = {
    "exact": IndexSettings("exact"),
    "faiss-flat": IndexSettings("flat"),
    "faiss-hnsw": IndexSettings("hnsw"),
    "faiss-ivf": IndexSettings("ivf"),
}


def index_settings(spec: str | IndexSettings) -> IndexSettings:
    """Settings from a preset name, optionally with overrides ("faiss-hnsw:ef_search=256,m=48"); a
    `DataError` names what is wrong."""
    if isinstance(spec, IndexSettings):
        settings = spec
    else:
        name, _, rest = str(spec).partition(":")
        if name not in PRESETS:
            raise DataError(f"unknown index {name!r}; choose one of {', '.join(PRESETS)}")
        settings, fields = PRESETS[name], {f.name: f for f in dataclasses.fields(IndexSettings)}
        changes: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or key not in fields or key == "kind":
                raise DataError(
                    f"index setting {part!r}: write key=value with key one of "
                    f"{', '.join(k for k in fields if k != 'kind')}"
                )
            if key == "mips":
                changes[key] = value.strip()
            else:
                try:
                    changes[key] = int(value)
                except ValueError:
                    raise DataError(f"index setting {key} = {value!r}: must be an integer") from None
        settings = dataclasses.replace(settings, **changes)
    if settings.kind not in ("exact", "flat", "hnsw", "ivf"):
        raise DataError(f"index kind {settings.kind!r}: choose exact, flat, hnsw or ivf")
    if settings.mips not in ("l2", "ip"):
        raise DataError(f"index setting mips = {settings.mips!r}: choose l2 or ip")
    for key in ("m", "ef_construction", "max_fetch"):
        if getattr(settings, key) < 1:
            raise DataError(f"index setting {key} = {getattr(settings, key)}: must be >= 1")
    for key in ("ef_search", "nlist", "nprobe", "train_size", "threads"):
        if getattr(settings, key) < 0:
            raise DataError(f"index setting {key} = {getattr(settings, key)}: must be >= 0")
    return settings


# the model's scores as an inner product


class NotInnerProduct(Exception):
    """The model's scores are not q(h) . w_i + b_i; the message says why."""


@dataclass(frozen=True)
class DotForm:
    """A model's scores as inner products: output(h)[:, i] = [h[:, columns] ; 1] . rows[i - 1] for items
    i = 1..N (item 0, padding, is left out of `rows`)."""

    columns: np.ndarray  # int64: the columns of h that the scores read
    rows: np.ndarray  # [N, len(columns) + 1] float32, C-contiguous: [w_i ; b_i] of item i at row i - 1
    width: int  # the representation's width (h is [B, width])

    @property
    def dim(self) -> int:
        return self.rows.shape[1]

    def queries(self, h: torch.Tensor) -> np.ndarray:
        """[B, dim] float32: [h[:, columns] ; 1] for representations h [B, width]."""
        q = h.detach().float().cpu().numpy()[:, self.columns]
        return np.ascontiguousarray(np.concatenate((q, np.ones((len(q), 1), np.float32)), axis=1))

    def without_rows(self) -> DotForm:
        """The form with its rows dropped (once an index holds them): `queries` still works."""
        return dataclasses.replace(self, rows=np.empty((0, self.dim), dtype=np.float32))

    def digest(self) -> str:
        """BLAKE2b of the rows and columns: what an index built on this form depends on."""
        d = hashlib.blake2b(self.rows.tobytes())
        d.update(self.columns.tobytes())
        return d.hexdigest()


@torch.inference_mode()
def dot_form(model: SequentialRecommender, probe: torch.Tensor) -> DotForm:
    """The inner-product form of `model.output`, checked against it; `NotInnerProduct` with the reason when
    the scores are not affine in h.

    probe: [P, D] representations the model produced (`model.encode` of a few real sequences); the form must
    reproduce output(probe) and output(g) for a random g of the same scale, every item, within CHECK_RTOL of
    the largest |score| (float rounding). Reading the rows costs D / BASIS_CHUNK catalogue passes, which is
    about what D single-user requests cost."""
    if probe.dim() != 2 or not probe.is_floating_point():
        raise NotInnerProduct(
            f"its representation is {tuple(probe.shape)} {str(probe.dtype).removeprefix('torch.')}, not a "
            "vector of floats (it scores from ids)"
        )
    probe = probe.float()
    n, width = model.n_items, probe.shape[1]
    device = probe.device
    try:
        bias = model.output(torch.zeros(1, width, device=device))[0].float()  # [N + 1]
        if bias.shape != (n + 1,):
            raise NotInnerProduct(f"output() gave {tuple(bias.shape)} scores for one row, not {n + 1}")
        table = torch.empty(n + 1, width, dtype=torch.float32, device=device)  # table[i, j] = w_ij
        for lo in range(0, width, BASIS_CHUNK):
            hi = min(width, lo + BASIS_CHUNK)
            basis = torch.zeros(hi - lo, width, device=device)
            basis[torch.arange(hi - lo), torch.arange(lo, hi)] = PROBE_SCALE
            table[:, lo:hi] = ((model.output(basis).float() - bias) / PROBE_SCALE).T
    except NotInnerProduct:
        raise
    except Exception as exc:  # a model that cannot score arbitrary vectors is not a linear one
        raise NotInnerProduct(f"output() failed on unit vectors: {type(exc).__name__}: {exc}") from None
    if not (bool(torch.isfinite(table).all()) and bool(torch.isfinite(bias).all())):
        raise NotInnerProduct("reading its rows gave non-finite values (its scores are not linear in h)")
    g = torch.Generator(device="cpu").manual_seed(0)
    scale = float(probe.std()) if probe.numel() > 1 else 1.0
    noise = (torch.randn(max(4, len(probe)), width, generator=g) * (scale or 1.0)).to(device)
    for what, h in (("real representations", probe), ("random vectors", noise)):
        want = model.output(h).float()
        got = torch.addmm(bias[None, :], h, table.T)
        err = float((got - want).abs().nan_to_num(float("inf")).max())
        tol = CHECK_RTOL * float(want.abs().max()) + CHECK_ATOL
        if not err <= tol:
            raise NotInnerProduct(
                f"its scores are not h . w_i + b_i: on {what} the best such form is off by {err:.3g} "
                f"(scores up to {float(want.abs().max()):.3g}; allowed {tol:.2g})"
            )
    used = torch.nonzero((table[1:] != 0).any(dim=0))[:, 0].cpu().numpy().astype(np.int64)
    rows = torch.cat((table[1:, used], bias[1:, None]), dim=1)
    return DotForm(np.ascontiguousarray(used), np.ascontiguousarray(rows.cpu().numpy()), width)


# indexes


@dataclass(frozen=True)
class Hits:
    """Top-k of each query: item ids (1..N, best first; -1 past the end) and their inner products."""

    items: np.ndarray  # [B, k] int64
    scores: np.ndarray  # [B, k] float32 (-inf past the end)
    complete: np.ndarray  # [B] bool: False when fewer than k came back though the catalogue has more


def _excluded(exclude: Sequence[np.ndarray] | None, b: int, n: int) -> list[np.ndarray]:
    if exclude is None:
        return [np.empty(0, np.int64)] * b
    if len(exclude) != b:
        raise ValueError(f"{len(exclude)} exclusion lists for {b} queries")
    out = []
    for e in exclude:
        e = np.unique(np.asarray(e, dtype=np.int64))
        out.append(e[(e >= 1) & (e <= n)])
    return out


class ExactIndex:
    """Every item scored: one matrix product and top-k (torch), masked items set to -inf first. The
    reference for recall, and today's serving path in matrix form."""

    kind = "exact"

    def __init__(self, rows: np.ndarray, settings: IndexSettings | None = None) -> None:
        self.settings = settings or PRESETS["exact"]
        self.rows = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        self.n_items, self.dim = self.rows.shape
        self.build_s, self.memory_bytes, self.description = 0.0, self.rows.numel() * 4, "torch matmul + topk"

    @torch.inference_mode()
    def search(self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> Hits:
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        ex = _excluded(exclude, len(q), self.n_items)
        k_ = min(k, self.n_items)
        scores = q @ self.rows.T  # [B, N]
        for r, e in enumerate(ex):
            if len(e):
                scores[r, torch.from_numpy(e - 1)] = float("-inf")
        top = scores.topk(k_, dim=1)
        items = top.indices.numpy().astype(np.int64) + 1
        values = top.values.numpy().astype(np.float32)
        items[~np.isfinite(values) & (values < 0)] = -1
        return _pad(items, values, k, np.ones(len(q), dtype=bool))


def _pad(items: np.ndarray, scores: np.ndarray, k: int, complete: np.ndarray) -> Hits:
    if items.shape[1] < k:
        extra = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, extra)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
    return Hits(items, scores, complete)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise DataError(f"a FAISS index needs the faiss-cpu package ({exc})") from None
    return faiss


class FaissIndex:
    """A FAISS index over rows [N, dim] (item i at row i - 1), searched by inner product."""

    def __init__(self, rows: np.ndarray, settings: IndexSettings, index: Any = None) -> None:
        """Build the index over `rows` (or adopt `index`, already built over them: a cached one)."""
        faiss = _faiss()
        if settings.kind == "exact":
            raise ValueError("FaissIndex needs a flat, hnsw or ivf setting")
        if settings.threads:
            faiss.omp_set_num_threads(settings.threads)
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        self.settings = settings
        self.n_items, self.dim = rows.shape
        self.l2 = settings.kind != "flat" and settings.mips == "l2"
        self.norm2 = float((rows.astype(np.float64) ** 2).sum(1).max()) if self.l2 else 0.0  # M^2
        start = time.perf_counter()
        self.index = index if index is not None else self._build(faiss, rows)
        self.build_s = time.perf_counter() - start
        if self.index.ntotal != self.n_items:
            raise DataError(f"the index holds {self.index.ntotal} items, the catalogue {self.n_items}")
        self.description = ""
        self._tune(faiss)
        self.memory_bytes = faiss_bytes(self.index)

    def _augment(self, rows: np.ndarray) -> np.ndarray:
        """[rows ; sqrt(M^2 - |row|^2)]: every row of norm M, so L2 order = inner-product order."""
        extra = np.sqrt(np.maximum(self.norm2 - (rows.astype(np.float64) ** 2).sum(1), 0.0))
        return np.ascontiguousarray(np.concatenate((rows, extra[:, None].astype(np.float32)), axis=1))

    def _build(self, faiss: Any, rows: np.ndarray) -> Any:
        s, n = self.settings, self.n_items
        if s.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
            index.add(rows)
            return index
        data = self._augment(rows) if self.l2 else rows
        d = data.shape[1]
        metric = faiss.METRIC_L2 if self.l2 else faiss.METRIC_INNER_PRODUCT
        if s.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, s.m, metric)
            index.hnsw.efConstruction = s.ef_construction
            index.add(data)
            return index
        nlist = s.nlist or int(4 * math.sqrt(n))
        nlist = max(1, min(nlist, n // 40 or 1))
        quantizer = faiss.IndexFlatL2(d) if self.l2 else faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        index.cp.niter = 10
        train = min(n, s.train_size or 40 * nlist)
        index.cp.max_points_per_centroid = max(1, math.ceil(train / nlist))
        sample = data if train >= n else data[np.random.default_rng(0).choice(n, train, replace=False)]
        index.train(sample)
        index.add(data)
        return index

    def _tune(self, faiss: Any) -> None:
        """Apply the search settings (they may change between searches) and describe the index with them."""
        inner = faiss.downcast_index(self.index)
        name = type(inner).__name__
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.settings.ef_search or auto_ef_search(self.n_items)
            name += f"(m={self.settings.m}, ef_search={inner.hnsw.efSearch})"
        elif isinstance(inner, faiss.IndexIVF):
            inner.nprobe = min(self.settings.nprobe or max(1, inner.nlist // 4), inner.nlist)
            name += f"(nlist={inner.nlist}, nprobe={inner.nprobe})"
        self.description = name

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> Hits:
        """Top-k items of each query [B, dim] by inner product, leaving out `exclude` (item ids per query)."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        n, b = self.n_items, len(q)
        ex = _excluded(exclude, b, n)
        k_ = min(k, n)
        fetch = min(n, self.settings.max_fetch, max(k_ + len(e) for e in ex)) if b else k_
        fetch = max(fetch, k_)
        if self.l2:
            dist, labels = self.index.search(np.concatenate((q, np.zeros((b, 1), np.float32)), axis=1), fetch)
            scores = 0.5 * ((q.astype(np.float64) ** 2).sum(1)[:, None] + self.norm2 - dist)  # the IP again
        else:
            scores, labels = self.index.search(q, fetch)
        items = np.full((b, k_), -1, dtype=np.int64)
        values = np.full((b, k_), -np.inf, dtype=np.float32)
        complete = np.ones(b, dtype=bool)
        for r in range(b):
            got = labels[r] + 1  # FAISS returns -1 for "none": item 0, never kept
            keep = got > 0
            if len(ex[r]):
                keep &= ~np.isin(got, ex[r], assume_unique=False)
            take = np.flatnonzero(keep)[:k_]
            items[r, : len(take)], values[r, : len(take)] = got[take], scores[r, take]
            complete[r] = len(take) >= min(k_, n - len(ex[r]))
        return _pad(items, values, k, complete)


def faiss_bytes(index: Any) -> int:
    """Memory the index's data takes: vectors, graph links, list ids, centroids (not allocator slack)."""
    faiss = _faiss()
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexFlat):
        return int(inner.ntotal) * int(inner.code_size)
    if isinstance(inner, faiss.IndexHNSW):
        h = inner.hnsw
        links = h.neighbors.size() * 4 + h.offsets.size() * 8 + h.levels.size() * 4
        return faiss_bytes(inner.storage) + int(links + h.assign_probas.size() * 8)
    if isinstance(inner, faiss.IndexIVF):
        lists = inner.invlists
        total = sum(lists.list_size(i) for i in range(inner.nlist)) * (int(inner.code_size) + 8)
        return int(total) + faiss_bytes(inner.quantizer)
    return int(faiss.serialize_index(index).nbytes)  # pragma: no cover - another index type


# building, with a cache beside the run


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()


def build_index(
    form: DotForm,
    settings: IndexSettings,
    cache_dir: Path | None = None,
    weights_digest: str | None = None,
) -> tuple[ExactIndex | FaissIndex, dict[str, Any]]:
    """The index `settings` asks for over the form's rows, and what to report about it. With `cache_dir`, an
    HNSW or IVF index is saved there (`<name>.faiss`, and `<name>.json` with the digests of the rows, the
    weights and the file, both written atomically) and read back instead of built when every digest and
    setting matches; a cache that cannot be written is reported, not an error."""
    if settings.kind == "exact":
        index: ExactIndex | FaissIndex = ExactIndex(form.rows, settings)
        return index, {"cache": None}
    cacheable = cache_dir is not None and settings.kind in ("hnsw", "ivf")
    if not cacheable:
        return FaissIndex(form.rows, settings), {"cache": None}
    faiss = _faiss()
    assert cache_dir is not None
    key = {
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k not in SEARCH_ONLY},
        "rows_blake2b": form.digest(),
        "weights_blake2b": weights_digest,
        "items": int(form.rows.shape[0]),
        "dim": form.dim,
        "faiss": faiss.__version__,
    }
    tag = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=6).hexdigest()
    name = f"{settings.name}-{tag}"
    path, meta_path = cache_dir / f"{name}.faiss", cache_dir / f"{name}.json"
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key and file_digest(path) == meta.get("faiss_blake2b"):
            start = time.perf_counter()
            index = FaissIndex(form.rows, settings, faiss.read_index(str(path)))
            index.build_s = time.perf_counter() - start  # the read, not the original build
            return index, {"cache": str(path), "cache_hit": True, "built_s": meta.get("build_s")}
    except (OSError, ValueError, RuntimeError, DataError):
        pass  # no cache, or a stale or damaged one: build
    index = FaissIndex(form.rows, settings)
    info: dict[str, Any] = {"cache": str(path), "cache_hit": False}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        faiss.write_index(index.index, str(tmp))
        os.replace(tmp, path)
        meta = {"key": key, "faiss_blake2b": file_digest(path), "build_s": round(index.build_s, 3)}
        atomic_write_text(meta_path, json.dumps(meta, indent=2))
    except (OSError, RuntimeError) as exc:
        log.warning("index not saved to %s: %s", path, exc)
        info.update(cache=None, cache_error=str(exc))
    return index, info

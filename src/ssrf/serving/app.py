"""The HTTP service: `create_app(predictor, settings)` -> a FastAPI app.

POST /v1/recommend          a known user, a history (a user the model has not seen), or both
POST /v1/recommend/batch    many of those at once
GET  /healthz               liveness
GET  /v1/model              the model, its config, dataset, vocabulary sizes and test metrics

Ids are the data's raw ids, as strings. A bad request gets a 4xx whose `detail` says what is wrong: 404
when there is nothing known to score from (an unknown user without a history, or a history of unknown items
only), 413 for a body over the size limit, 422 for anything else (wrong types, k outside 1..1000, a history
over the cap, unknown fields). Requests that arrive while a forward pass runs are scored together in the
next one (`Batcher`), so a busy server runs few, larger batches.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name classes
# built inside create_app
import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ssrf import __version__
from ssrf.core import DataError
from ssrf.models.registry import model_config
from ssrf.serving.predictor import Event, Predictor, Query, Recommendation, Resolved, UnknownUser

log = logging.getLogger(__name__)

MAX_K = 1000  # the most items one query may ask for


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    max_history: int = 1000  # events one query's history may carry (more: 422)
    max_batch: int = 256  # queries one /v1/recommend/batch request may carry (more: 422)
    max_body_bytes: int = 1_000_000  # request bodies larger than this get 413
    max_forward: int = 512  # queries scored in one forward pass (concurrent requests are batched)


# ---- request and response bodies


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class HistoryEvent(_Strict):
    item: str = Field(min_length=1, max_length=256, description="raw item id")
    behavior: str | None = Field(
        None, max_length=256, description="raw behaviour (see GET /v1/model); default: the most frequent"
    )
    timestamp: float | None = Field(
        None,
        allow_inf_nan=False,
        description="event time in the data's unit; give it for every event or for none (then the list "
        "order is the time order)",
    )


class RecommendRequestBase(_Strict):
    """A known user (`user_id`), a history for a user the model has not seen, or both (the history then
    extends the user's stored one). Give a timestamp for every history event or for none."""

    user_id: str | None = Field(
        None, min_length=1, max_length=256, description="raw user id; optional when a history is given"
    )
    history: list[HistoryEvent] = Field(
        default_factory=list,
        description="events after the user's stored history (or, for a new user, the whole history)",
    )
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
    exclude_seen: bool = Field(True, description="leave out items already in the history")

    @model_validator(mode="after")
    def _something_to_score(self) -> Self:
        if self.user_id is None and not self.history:
            raise ValueError("give user_id, history, or both")
        stamped = sum(e.timestamp is not None for e in self.history)
        if 0 < stamped < len(self.history):
            raise ValueError("give a timestamp for every history event or for none")
        return self

    def query(self) -> Query:
        events = self.history
        if events and events[0].timestamp is not None:
            events = sorted(events, key=lambda e: e.timestamp or 0.0)  # stable: ties keep their order
        return Query(
            user=self.user_id,
            history=tuple(Event(e.item, e.behavior) for e in events),
            k=self.k,
            include_seen=not self.exclude_seen,
        )


class RecommendedItem(BaseModel):
    item: str = Field(description="raw item id")
    score: float = Field(description="the model's score (higher is better)")
    category: str | None = Field(description="raw id(s) of the item's first context field, ';'-joined")


class RecommendResponse(BaseModel):
    user_id: str | None
    items: list[RecommendedItem] = Field(description="best first")
    warnings: list[str] = Field(description="parts of the request that were ignored, and why")


class BatchResponse(BaseModel):
    results: list[RecommendResponse] = Field(description="one per request, in order")


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class VocabSizes(BaseModel):
    users: int
    items: int
    behaviors: int
    fields: dict[str, int] = Field(description="values of each item context field")


class ModelInfo(BaseModel):
    model: str
    config: dict[str, Any] = Field(description="the model's configuration (model.json)")
    dataset: str | None
    format: str | None
    protocol: str | None
    max_len: int = Field(description="the most recent events the model reads")
    vocab: VocabSizes
    behaviors: list[str] = Field(description="the behaviour names a history may use")
    test_metrics: dict[str, float | None] | None = Field(
        description="the run's test metrics (results.json); null where no user defines one (e.g. no novel "
        "positive)"
    )


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong with the request")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body could not be read (not UTF-8 JSON)"},
    404: {"model": ErrorResponse, "description": "nothing known to score from: unknown user, no known item"},
    413: {"model": ErrorResponse, "description": "request body too large"},
    422: {"model": ErrorResponse, "description": "invalid request"},
}


def request_models(
    settings: ServeSettings, examples: list[dict[str, Any]] | None = None
) -> tuple[type[RecommendRequestBase], type[_Strict]]:
    """The request bodies with the configured caps (and example requests) in their schema."""

    class RecommendRequest(RecommendRequestBase):
        model_config = ConfigDict(json_schema_extra={"examples": examples} if examples else None)

        history: list[HistoryEvent] = Field(
            default_factory=list,
            max_length=settings.max_history,
            description="events after the user's stored history (or, for a new user, the whole history), "
            f"at most {settings.max_history}",
        )

    class BatchRequest(_Strict):
        requests: list[RecommendRequest] = Field(min_length=1, max_length=settings.max_batch)

    return RecommendRequest, BatchRequest


# ---- batching and limits


class Batcher:
    """Scores resolved queries from concurrent requests together: the first waiting request starts a drain
    task that runs `rank` on everything queued (up to `max_forward` at a time) in a worker thread, until the
    queue is empty."""

    def __init__(self, rank: Callable[[Sequence[Resolved]], list[list[Recommendation]]], max_forward: int):
        self.rank, self.max_forward = rank, max_forward
        self.queue: list[tuple[Resolved, asyncio.Future[list[Recommendation]]]] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, resolved: Sequence[Resolved]) -> list[list[Recommendation]]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in resolved]
        self.queue += zip(resolved, futures, strict=True)
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        while self.queue:
            chunk, self.queue = self.queue[: self.max_forward], self.queue[self.max_forward :]
            try:
                results = await asyncio.to_thread(self.rank, [r for r, _ in chunk])
            except Exception as exc:  # a bug, not a bad request: every waiting request gets a 500
                log.exception("scoring failed")
                for _, fut in chunk:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), recs in zip(chunk, results, strict=True):
                if not fut.done():
                    fut.set_result(recs)


ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Any], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, by its Content-Length or, when it is
    streamed without one, as soon as it grows past the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def message(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await JSONResponse({"detail": self.message()}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self.message())
            return message

        await self.app(scope, limited, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            at = err["loc"][-1] if err.get("loc") else "?"
            parts.append(f"the body is not valid JSON (at character {at}: {reason})")
            continue
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(parts) - 5} more)" if len(parts) > 5 else ""
    return "; ".join(parts[:5]) + more


# ---- the app


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    RecommendRequest, BatchRequest = request_models(settings, example_requests(predictor))
    batcher = Batcher(predictor.rank, settings.max_forward)
    app = FastAPI(
        title="ssrf",
        version=__version__,
        summary="Next-item recommendations from a trained ssrf run (raw ids in, raw ids out).",
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    def resolve(req: RecommendRequestBase, where: str = "") -> Resolved:
        try:
            return predictor.resolve(req.query())
        except UnknownUser as exc:
            raise HTTPException(404, f"{where}{exc}") from None
        except DataError as exc:
            raise HTTPException(422, f"{where}{exc}") from None

    def response(req: RecommendRequestBase, r: Resolved, recs: list[Recommendation]) -> RecommendResponse:
        return RecommendResponse(
            user_id=req.user_id,
            items=[RecommendedItem(item=x.item, score=x.score, category=x.category) for x in recs],
            warnings=list(r.warnings),
        )

    @app.post("/v1/recommend", responses=ERRORS)
    async def recommend(req: RecommendRequest) -> RecommendResponse:  # type: ignore[valid-type]
        """Top-k items for a known user, a new user's history, or a known user plus recent events."""
        r = resolve(req)
        (recs,) = await batcher.submit([r])
        return response(req, r, recs)

    @app.post("/v1/recommend/batch", responses=ERRORS)
    async def recommend_batch(body: BatchRequest) -> BatchResponse:  # type: ignore[valid-type]
        """Many recommendation requests at once; a bad one fails the whole batch, naming its index."""
        reqs: list[RecommendRequestBase] = body.requests  # type: ignore[attr-defined]
        resolved = [resolve(q, f"requests[{i}]: ") for i, q in enumerate(reqs)]
        recs = await batcher.submit(resolved)
        return BatchResponse(results=[response(*x) for x in zip(reqs, resolved, recs, strict=True)])

    @app.get("/healthz")
    async def healthz() -> Health:
        return Health(status="ok", model=predictor.model_name)

    info = model_info(predictor)

    @app.get("/v1/model")
    async def model() -> ModelInfo:
        """The served model: name, configuration, dataset, vocabulary sizes and the run's test metrics."""
        return info

    return app


def example_requests(p: Predictor) -> list[dict[str, Any]]:
    """Requests that the served model answers: a stored user, a new user's history, and both."""
    if p.data.n_users < 1 or p.n_items < 2:
        return []
    user, items = p.data.vocabs["user"].raw[1], p.data.vocabs["item"].raw[1:3]
    behavior = p.behaviors[p.default_behavior - 1]
    history = [{"item": i, "behavior": behavior} for i in items]
    return [{"user_id": user, "k": 10}, {"history": history, "k": 5}, {"user_id": user, "history": history}]


def model_info(p: Predictor) -> ModelInfo:
    config, results = p.run.get("config") or {}, p.run.get("results") or {}
    test = results.get("test")
    return ModelInfo(
        model=p.model_name,
        config=model_config(p.model),
        dataset=config.get("dataset"),
        format=p.data.meta.get("format"),
        protocol=config.get("protocol"),
        max_len=p.max_len,
        vocab=VocabSizes(
            users=p.data.n_users,
            items=p.data.n_items,
            behaviors=len(p.behaviors),
            fields={f: len(p.data.vocabs[f"field:{f}"]) - 1 for f in p.data.fields},
        ),
        behaviors=p.behaviors,
        test_metrics={k: None if v is None or v != v else float(v) for k, v in test.items()}
        if isinstance(test, dict)
        else None,
    )

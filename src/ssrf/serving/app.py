"""The HTTP service: `create_app(predictor, settings)` -> an ASGI app (`Service`: a FastAPI app, with its
two POST routes answered in front of FastAPI's per-request machinery).

POST /v1/recommend          a known user, a history (a user the model has not seen), or both
POST /v1/recommend/batch    many of those at once, each answered on its own
GET  /healthz               200 while every score served was finite, 503 once one was not
GET  /v1/model              the model, its config, dataset, vocabulary sizes and test metrics
GET  /docs, /redoc          the API's documentation pages, their scripts served from here (no CDN: they work
                            offline; the assets are those of the `fastapi-offline` package)

Ids are the data's raw ids, as strings. A bad request gets a 4xx whose `detail` says what is wrong: 404
when there is nothing known to score from (an unknown user without a history, or a history of unknown items
only), 408 for a body that has not arrived `client_timeout_s` after its headers, 413 for a body over the
size limit, 415 for a POST body not sent as `Content-Type: application/json`, 422 for anything else (wrong
types, k outside 1..1000, a history over the cap, unknown fields). In a batch, a request that cannot be
scored (404 or 422 on its own) gets an `error` naming its index and no items; the others are scored.
Requests that arrive while a forward pass runs are scored together in the next one (`Batcher`), so a busy
server runs few, larger batches.

Slow or stalled clients: `Service.read_body` answers 408 when a body stalls (a Content-Length larger than
what arrives). Stalled headers and the number of open connections are bounded below the app, in the HTTP
protocol (`ssrf.serving.server.GuardedProtocol`), where a connection exists before any request does.

No non-finite score is ever served: the predictor leaves such items out and counts the queries affected
(`Predictor.nonfinite_scores`), the response building drops any that still get through (with a warning in
the answer), and either makes /healthz answer 503: a model that scores NaN is broken, and a load balancer
should take it out.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name classes
# built inside create_app
import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Self, TypeVar

import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ssrf import __version__
from ssrf.core import DataError
from ssrf.models.registry import model_config
from ssrf.serving.predictor import Event, Predictor, Query, Recommendation, Resolved, UnknownUser

log = logging.getLogger(__name__)

MAX_K = 1000  # the most items one query may ask for
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    max_history: int = 1000  # events one query's history may carry (more: 422)
    max_batch: int = 256  # queries one /v1/recommend/batch request may carry (more: 422)
    max_body_bytes: int = 1_000_000  # request bodies larger than this get 413
    max_forward: int = 512  # queries scored in one forward pass (concurrent requests are batched)
    # a request's headers must arrive within this many seconds of its first byte (of the connection, for the
    # first request), its body within this many seconds of the headers; else 408 and the connection closes
    client_timeout_s: float = 10.0
    # open connections one server process holds; more are answered 503 and closed at once (well under the
    # usual limit of 1024 open files, so a flood of idle sockets cannot exhaust the process)
    max_connections: int = 512
    # memory for the stored users' representations, computed at load so that a known user's request skips
    # the forward pass (0: none; see `ssrf.serving.predictor`)
    user_cache_mb: float = 512.0
    # forward passes in a worker thread (the event loop reads requests meanwhile), or on the event loop
    rank_thread: bool = True


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


class BatchResult(RecommendResponse):
    error: str | None = Field(
        None,
        description="why this request was not scored, naming its index (e.g. requests[1]: unknown user 'x' "
        "and no history to score from); its `items` are then empty. Null for a scored request",
    )


class BatchResponse(BaseModel):
    results: list[BatchResult] = Field(description="one per request, in order")


class Health(BaseModel):
    status: Literal["ok", "unhealthy"] = Field(description="unhealthy: the model gave non-finite scores")
    model: str
    detail: str | None = Field(None, description="what is wrong (only when unhealthy)")


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
    index: dict[str, Any] = Field(
        description="how top-K items are found: exact, or the FAISS index with its build time and memory"
    )
    user_cache: dict[str, Any] = Field(
        description="the stored users' representations kept in memory: whether, how many, their size and "
        "build time, or why not"
    )


class ErrorResponse(BaseModel):
    detail: str = Field(description="what is wrong with the request")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body could not be parsed (invalid JSON is a 422)"},
    404: {"model": ErrorResponse, "description": "nothing known to score from: unknown user, no known item"},
    408: {"model": ErrorResponse, "description": "the request body did not arrive in time"},
    413: {"model": ErrorResponse, "description": "request body too large"},
    415: {"model": ErrorResponse, "description": "the body is not sent as Content-Type: application/json"},
    422: {"model": ErrorResponse, "description": "invalid request"},
}
BATCH_ERRORS = {code: e for code, e in ERRORS.items() if code != 404}  # a batch answers 200, item by item


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
    task that runs `rank` on everything queued (up to `max_forward` at a time), until the queue is empty.

    `rank` runs in one worker thread (`threaded`, the default), so the event loop reads and answers other
    requests during a forward pass (torch releases the GIL in its kernels); or on the event loop itself, which
    saves the thread hand-offs when each process has a core of its own (`ssrf serve --workers N`). Either
    way the queries that arrive during one pass are scored together in the next."""

    def __init__(
        self,
        rank: Callable[[Sequence[Resolved]], list[list[Recommendation]]],
        max_forward: int,
        threaded: bool = True,
    ):
        self.rank, self.max_forward = rank, max_forward
        self.queue: list[tuple[Resolved, asyncio.Future[list[Recommendation]]]] = []
        self.task: asyncio.Task[None] | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="ssrf-rank") if threaded else None

    async def submit(self, resolved: Sequence[Resolved]) -> list[list[Recommendation]]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in resolved]
        self.queue.extend(zip(resolved, futures, strict=True))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._drain())
        if len(futures) == 1:  # the usual case: no gathering future
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self.queue:
            chunk, self.queue = self.queue[: self.max_forward], self.queue[self.max_forward :]
            queries = [r for r, _ in chunk]
            try:
                if self.executor is None:
                    results = self.rank(queries)
                else:
                    results = await loop.run_in_executor(self.executor, self.rank, queries)
            except Exception as exc:  # a bug, not a bad request: every waiting request gets a 500
                log.exception("scoring failed")
                for _, fut in chunk:
                    if not fut.done():
                        fut.set_exception(exc)
            else:
                for (_, fut), recs in zip(chunk, results, strict=True):
                    if not fut.done():
                        fut.set_result(recs)
            if self.queue and self.executor is None:
                await asyncio.sleep(0)  # answer this chunk, and read new requests, before the next


def check_json_type(content_type: str) -> None:
    """415 unless a body is declared JSON: application/json, or a type with the +json suffix."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        got = f"got {media!r}" if media else "it has no Content-Type"
        raise HTTPException(415, f"send the body as JSON with Content-Type: application/json ({got})")


def parse(body: bytes, model: type[M]) -> M:
    """A request body as `model`, or 422 naming what is wrong. The JSON is parsed and validated in one pass
    by pydantic-core (FastAPI's own body handling parses it with `json.loads` first, resolves dependencies
    and validates the answer again: three times this path's cost)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPException(422, _validation_message(exc.errors())) from None


def json_response(content: Any) -> Response:
    """An answer encoded by orjson (the scores are Python floats, the ids strings)."""
    return Response(orjson.dumps(content), media_type="application/json")


def body_schema(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI `requestBody` of an endpoint that reads its body itself (`parse`), and the schemas it
    refers to, for the document's components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components = {model.__name__: schema, **schema.pop("$defs", {})}
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}, components


def _validation_message(errors: Sequence[Any]) -> str:
    parts = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "")
            parts.append(f"the body is not valid JSON ({reason})")
            continue
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(parts) - 5} more)" if len(parts) > 5 else ""
    return "; ".join(parts[:5]) + more


# ---- the service: the two POST routes answered in front of FastAPI

Handler = Callable[[bytes], Awaitable[dict[str, Any]]]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client closed the connection before its body arrived: nothing to answer."""


class Service:
    """The ASGI app that `create_app` returns. It answers POST /v1/recommend and /v1/recommend/batch itself
    and hands everything else (the GET routes, /docs, other methods and paths, lifespan) to the FastAPI app
    `api`, whose routes for the two POST paths describe them in /docs and answer the same way when `api` is
    used on its own.

    Why: FastAPI and Starlette's per-request machinery (the middleware stack, routing, the request and
    response objects) cost about 120 us of CPU a request on a 2-core machine against 29-39 us for uvicorn
    itself (`benchmarks/serve_profile.py`, docs/benchmarks.md), more than the rest of a known user's
    request. Here a request's type and size are checked (415, 413), its body read against the deadline
    (408, and the connection closed), and the handler's answer, or its `HTTPException`, written as JSON;
    any other error is logged and answered 500."""

    def __init__(self, api: FastAPI, routes: dict[str, Handler], settings: ServeSettings) -> None:
        self.api, self.routes, self.settings = api, routes, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.api(scope, receive, send)
            return
        headers: dict[str, str] = {}
        try:
            status, content = 200, await handler(await self.read_body(scope, receive))
        except ClientGone:
            return
        except HTTPException as exc:
            status, content, headers = exc.status_code, {"detail": exc.detail}, dict(exc.headers or {})
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"])
            status, content = 500, {"detail": "internal server error"}
        body = orjson.dumps(content)
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request's body: 415 unless declared JSON; 413 when larger than `max_body_bytes`, by its
        Content-Length or, streamed without one, as soon as it grows past; 408 (and the connection closed)
        when it has not all arrived `client_timeout_s` after the headers, as when a client sends a
        Content-Length larger than what it sends."""
        headers = dict(scope["headers"])
        check_json_type(headers.get(b"content-type", b"").decode("latin-1"))
        limit, timeout = self.settings.max_body_bytes, self.settings.client_timeout_s
        too_large = HTTPException(413, f"request body larger than {limit} bytes")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            detail = f"the request body did not arrive within {timeout:g} s"
            raise HTTPException(408, detail, headers={"Connection": "close"}) from None


# ---- the app


def create_app(predictor: Predictor, settings: ServeSettings | None = None) -> Service:
    settings = settings or ServeSettings()
    RecommendRequest, BatchRequest = request_models(settings, example_requests(predictor))
    batcher = Batcher(predictor.rank, settings.max_forward, threaded=settings.rank_thread)
    app = FastAPIOffline(  # FastAPI with /docs and /redoc served from the package's own copy of their assets
        title="ssrf",
        version=__version__,
        summary="Next-item recommendations from a trained ssrf run (raw ids in, raw ids out).",
    )
    nonfinite = 0  # answers from which the app itself had to drop a non-finite score
    one_body, components = body_schema(RecommendRequest)
    batch_body, batch_components = body_schema(BatchRequest)
    components.update(batch_components)

    def resolve(req: RecommendRequestBase) -> Resolved:
        try:
            return predictor.resolve(req.query())
        except UnknownUser as exc:
            raise HTTPException(404, str(exc)) from None
        except DataError as exc:
            raise HTTPException(422, str(exc)) from None

    def answer(req: RecommendRequestBase, r: Resolved, recs: list[Recommendation]) -> dict[str, Any]:
        """A scored request's answer (a `RecommendResponse`'s fields); an item without a finite score is
        never served."""
        nonlocal nonfinite
        finite = [x for x in recs if math.isfinite(x.score)]
        warnings = list(r.warnings)
        if dropped := len(recs) - len(finite):
            nonfinite += 1
            log.error("the model gave %d item(s) a non-finite score", dropped)
            warnings.append(f"{dropped} item(s) left out: the model gave them no finite score")
        items = [{"item": x.item, "score": x.score, "category": x.category} for x in finite]
        return {"user_id": req.user_id, "items": items, "warnings": warnings}

    async def recommend_one(body: bytes) -> dict[str, Any]:
        """POST /v1/recommend: a `RecommendRequest` body -> a `RecommendResponse`."""
        req = parse(body, RecommendRequest)
        r = resolve(req)
        (recs,) = await batcher.submit([r])
        return answer(req, r, recs)

    async def recommend_many(body: bytes) -> dict[str, Any]:
        """POST /v1/recommend/batch: a `BatchRequest` body -> a `BatchResponse`."""
        reqs: list[RecommendRequestBase] = parse(body, BatchRequest).requests  # type: ignore[attr-defined]
        resolved: list[Resolved | str] = []  # a resolved query, or why it cannot be scored
        for i, req in enumerate(reqs):
            try:
                resolved.append(predictor.resolve(req.query()))
            except DataError as exc:
                resolved.append(f"requests[{i}]: {exc}")
        scorable = [r for r in resolved if isinstance(r, Resolved)]
        recs = iter(await batcher.submit(scorable) if scorable else [])
        results = [
            {"user_id": req.user_id, "items": [], "warnings": [], "error": r}
            if isinstance(r, str)
            else {**answer(req, r, next(recs)), "error": None}
            for req, r in zip(reqs, resolved, strict=True)
        ]
        return {"results": results}

    # The FastAPI routes of the two POST paths: their documentation (the bodies' schemas declared through
    # `openapi_extra` and `response_model`, as the handlers parse and answer by themselves). `Service` answers
    # these paths before FastAPI sees them; the routes answer the same when the FastAPI app is used alone.
    @app.post(
        "/v1/recommend",
        responses=ERRORS,
        response_model=RecommendResponse,
        openapi_extra={"requestBody": one_body},
    )
    async def recommend(request: Request) -> Response:
        """Top-k items for a known user, a new user's history, or a known user plus recent events."""
        check_json_type(request.headers.get("content-type", ""))
        return json_response(await recommend_one(await request.body()))

    @app.post(
        "/v1/recommend/batch",
        responses=BATCH_ERRORS,
        response_model=BatchResponse,
        openapi_extra={"requestBody": batch_body},
    )
    async def recommend_batch(request: Request) -> Response:
        """Many recommendation requests at once, answered in order. One that cannot be scored (an unknown
        user without a history, nothing known in its history) gets an `error` naming its index and no items;
        the others are scored. A body that is invalid as a whole (wrong types, too many requests) gets 422."""
        check_json_type(request.headers.get("content-type", ""))
        return json_response(await recommend_many(await request.body()))

    openapi = app.openapi

    def openapi_with_bodies() -> dict[str, Any]:
        """FastAPI's document, plus the schemas the POST bodies refer to."""
        if app.openapi_schema is None:
            openapi().setdefault("components", {}).setdefault("schemas", {}).update(components)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi_with_bodies  # type: ignore[method-assign]

    unhealthy = {"model": Health, "description": "the model gave non-finite scores (left out of the answers)"}

    @app.get("/healthz", responses={503: unhealthy}, response_model_exclude_none=True)
    async def healthz(response: Response) -> Health:
        """200 while every score the model gave was finite; 503 once one was not (such items are never
        served, but a model that scores NaN is broken: take it out of rotation)."""
        bad = int(getattr(predictor, "nonfinite_scores", 0)) + nonfinite
        if bad:
            response.status_code = 503
            detail = f"{bad} answer(s) had items with non-finite scores (left out)"
            return Health(status="unhealthy", model=predictor.model_name, detail=detail)
        return Health(status="ok", model=predictor.model_name)

    info = model_info(predictor)

    @app.get("/v1/model")
    async def model() -> ModelInfo:
        """The served model: name, configuration, dataset, vocabulary sizes and the run's test metrics."""
        return info

    return Service(app, {"/v1/recommend": recommend_one, "/v1/recommend/batch": recommend_many}, settings)


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
        index=p.index_info,
        user_cache=p.cache_info,
        test_metrics={k: None if v is None or v != v else float(v) for k, v in test.items()}
        if isinstance(test, dict)
        else None,
    )

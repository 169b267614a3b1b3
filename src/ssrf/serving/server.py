"""Running the HTTP service on uvicorn: one process, or several workers that each load the run.

With `workers > 1` uvicorn imports the app by name in each worker process, so the run folder and settings
travel in environment variables and `app_from_env` builds the app there. The run is loaded once in the
calling process first, so a bad run folder fails before any worker starts.

Once the run is loaded, `gc.freeze()` moves everything alive into the collector's permanent generation: the
vocabularies and item tables are hundreds of thousands of objects, and without it each full collection
walks them all (about 200 ms on Beauty, paid by whichever requests are in flight). The youngest generation
is then collected every 50,000 allocations instead of 700: a request's objects are freed by reference
counting, but each collection walks every object of the requests in flight, and at the default threshold
that was a collection every few requests (server CPU per request 0.34-0.39 ms against 0.39-0.45 ms, three
paired runs of `benchmarks/serve_load.py`'s load; docs/benchmarks.md).

Slow and stalled clients. uvicorn arms no timer while a request's headers arrive (only `timeout_keep_alive`,
between requests), so a client that sends half its headers and stalls holds its connection, and a file
descriptor, for ever; and its `limit_concurrency` answers 503 only once a request's headers are complete,
which a stalled client's never are. `GuardedProtocol`, uvicorn's httptools protocol with two additions,
bounds both where a connection exists before any request does:

- headers: they must be complete `client_timeout_s` after the connection opens (for a later request on a
  kept-alive connection, after its first byte), else 408 and the connection closes. A deadline, not an idle
  timer: a client that trickles a byte a second is cut off too;
- connections: past `max_connections` open in this process, a new one is answered 503 and closed at once.

The body's deadline is the app's (`ssrf.serving.app.Service.read_body`: 408 with a JSON detail), as only the
app knows whether it reads the body."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import json
import os
from http import HTTPStatus
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ssrf.core import DataError
from ssrf.serving.app import ServeSettings, Service, create_app
from ssrf.serving.index import IndexSettings
from ssrf.serving.predictor import Predictor

RUN_ENV, SETTINGS_ENV, INDEX_ENV = "SSRF_SERVE_RUN", "SSRF_SERVE_SETTINGS", "SSRF_SERVE_INDEX"
GC_YOUNG = 50_000  # allocations between collections of the youngest generation (Python's default: 700)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (one per connection) with a deadline on each request's headers and a cap
    on the connections open in the process (see the module docstring)."""

    def __init__(self, *args: Any, client_timeout_s: float, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_timeout_s, self.max_connections = client_timeout_s, max_connections
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # counts this connection in self.connections
        if len(self.connections) > self.max_connections:
            self.reply_and_close(503, f"too many open connections (at most {self.max_connections})")
        else:
            self.start_header_timer()

    def on_message_begin(self) -> None:  # the first byte of a request
        super().on_message_begin()
        if self.header_timer is None:  # a later request on a kept-alive connection
            self.start_header_timer()

    def on_headers_complete(self) -> None:
        self.stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_header_timer()
        super().connection_lost(exc)

    def start_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.client_timeout_s, self.headers_timed_out)

    def stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def headers_timed_out(self) -> None:
        self.header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # pipelined behind a request in flight: close after its answer
        elif not self.transport.is_closing():
            detail = f"the request headers did not arrive within {self.client_timeout_s:g} s"
            self.reply_and_close(408, detail)

    def reply_and_close(self, status: int, detail: str) -> None:
        self.logger.warning("%s - %s", self.client, detail)
        body = json.dumps({"detail": detail}).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def check_options(settings: ServeSettings, port: int, workers: int) -> None:
    """A `DataError` naming the first option out of its range."""
    if not 1 <= port <= 65535:
        raise DataError(f"port must be between 1 and 65535, got {port}")
    if workers < 1:
        raise DataError(f"workers must be at least 1, got {workers}")
    if not settings.client_timeout_s > 0:
        raise DataError(f"client_timeout_s must be positive, got {settings.client_timeout_s}")
    if settings.max_connections < 1:
        raise DataError(f"max_connections must be at least 1, got {settings.max_connections}")


def settle_gc() -> None:
    """Everything loaded so far out of the collector's way, and fewer young collections (module docstring)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 10, 10)


def app_from_env() -> Service:
    """The app for a uvicorn worker: the run and settings named by the environment."""
    settings = ServeSettings(**json.loads(os.environ.get(SETTINGS_ENV, "{}")))
    index = IndexSettings(**json.loads(os.environ.get(INDEX_ENV, "{}")))  # the parent's (its saved index)
    predictor = Predictor.load(os.environ[RUN_ENV], index=index, user_cache_mb=settings.user_cache_mb)
    app = create_app(predictor, settings)
    settle_gc()
    return app


def serve(
    predictor: Predictor,
    settings: ServeSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    access_log: bool = True,
) -> None:
    """Serve until interrupted (uvicorn exits non-zero when it cannot bind); a `DataError` for an option out
    of range, before anything starts."""
    check_options(settings, port, workers)
    # uvicorn calls `http` to make each connection's protocol, so a partial serves as the class; unlike a
    # class made here, it pickles, as the settings must to reach worker processes
    protocol = functools.partial(
        GuardedProtocol, client_timeout_s=settings.client_timeout_s, max_connections=settings.max_connections
    )
    options: dict[str, Any] = {"host": host, "port": port, "access_log": access_log, "http": protocol}
    if workers == 1:
        app = create_app(predictor, settings)
        settle_gc()
        uvicorn.run(app, **options)
        return
    os.environ[RUN_ENV] = str(Path(predictor.run["dir"]).resolve())
    os.environ[INDEX_ENV] = json.dumps(dataclasses.asdict(predictor.index_settings))
    os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
    uvicorn.run("ssrf.serving.server:app_from_env", factory=True, workers=workers, **options)

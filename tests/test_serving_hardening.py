"""The HTTP service's defences: stalled clients are cut off after `client_timeout_s` while others are served,
a cap on open connections, 415 for a body that is not JSON, /docs without a CDN, per-item errors in a batch,
no non-finite score ever served (and /healthz saying so), and `serve`'s checks of its options."""

from __future__ import annotations

import json
import math
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ssrf.core import DataError
from ssrf.serving.app import ServeSettings, create_app
from ssrf.serving.predictor import Predictor, Recommendation
from ssrf.serving.server import serve


@pytest.fixture(scope="module")
def run(serving_run) -> Path:
    return serving_run


@pytest.fixture(scope="module")
def predictor(run) -> Predictor:
    return Predictor.load(run)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor)) as c:
        yield c


def raw_user(p: Predictor, u: int = 1) -> str:
    return p.data.vocabs["user"].raw[u]


# ---- stalled clients against the real server


TIMEOUT_S = 4.0  # the server's client_timeout_s here
STALLED = 200
EXTRA = 20  # connections opened on top of the stalled ones and the client's, to meet the cap
CAP = STALLED + 1 + 10  # so exactly 10 of the extra connections are served, the rest refused

SERVER = """
import sys
from ssrf.serving.app import ServeSettings
from ssrf.serving.predictor import Predictor
from ssrf.serving.server import serve
run, port, timeout, cap = sys.argv[1:]
settings = ServeSettings(client_timeout_s=float(timeout), max_connections=int(cap))
serve(Predictor.load(run), settings, port=int(port), access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(run, tmp_path):
    """The port of a real server (a process of its own) and its log."""
    port, log = _free_port(), tmp_path / "server.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", SERVER, str(run), str(port), str(TIMEOUT_S), str(CAP)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while not _answers(port):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "server did not start in 90 s"
                time.sleep(0.2)
            yield port, log
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _stall(port: int, i: int, body: bytes) -> socket.socket:
    """A connection that sends half its headers (even i), or its headers and half its body (odd i)."""
    s = socket.create_connection(("127.0.0.1", port))
    head = "POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if i % 2 == 0:
        s.sendall(head[: len(head) // 2].encode())
    else:
        s.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
    return s


def _status(s: socket.socket) -> int | None:
    """The status of the answer to a GET /healthz on a new connection; None when it was closed unanswered."""
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = s.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return None
    return int(first.split()[1]) if first else None


def _read_until_closed(
    socks: list[socket.socket], deadline: float
) -> dict[socket.socket, tuple[float, bytes]]:
    """For each socket the server closed by `deadline`: when, and what it had sent before."""
    got: dict[socket.socket, bytes] = {s: b"" for s in socks}
    closed: dict[socket.socket, tuple[float, bytes]] = {}
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                got[s] += data
                if not data:
                    closed[s] = (time.monotonic(), got[s])
                    sel.unregister(s)
    return closed


def test_stalled_clients_are_cut_off_while_others_are_served(server, predictor):
    port, log = server
    users = [raw_user(predictor, u) for u in range(1, 6)]
    expected = {
        u: [r.item for r in recs] for u, recs in zip(users, predictor.recommend(users, 5), strict=True)
    }
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:  # one kept-alive connection
        assert client.get("/healthz").status_code == 200
        body = json.dumps({"user_id": users[0], "k": 5}).encode()
        opened = time.monotonic()
        stalled = [_stall(port, i, body) for i in range(STALLED)]

        # the cap: past CAP open connections, a new one gets 503 and is closed at once
        extra = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(EXTRA)]
        statuses = [_status(s) for s in extra]
        assert statuses.count(200) == CAP - STALLED - 1, statuses
        assert all(s in (503, None) for s in statuses[CAP - STALLED - 1 :]), statuses
        assert 503 in statuses
        for s in extra:
            s.close()

        # a normal client keeps getting correct answers
        latencies = []
        for i in range(50):
            user = users[i % len(users)]
            start = time.perf_counter()
            res = client.post("/v1/recommend", json={"user_id": user, "k": 5})
            latencies.append(time.perf_counter() - start)
            assert res.status_code == 200, res.text
            assert [x["item"] for x in res.json()["items"]] == expected[user]
        # ... while every stalled connection is still open
        with selectors.DefaultSelector() as sel:
            for s in stalled:
                sel.register(s, selectors.EVENT_READ)
            assert sel.select(timeout=0) == [], f"closed too early ({time.monotonic() - opened:.1f} s)"
        p50, p99 = np.percentile(latencies, [50, 99])
        print(
            f"\n{STALLED} stalled connections: 50 requests, p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
        assert p99 < 1.0

        # the server closes the stalled connections after the timeout, with a 408 that says why
        closed = _read_until_closed(stalled, deadline=opened + TIMEOUT_S + 10)
        assert len(closed) == STALLED, f"{STALLED - len(closed)} stalled connections still open"
        after = sorted(t - opened for t, _ in closed.values())
        print(f"stalled connections closed {after[0]:.2f} to {after[-1]:.2f} s after opening")
        assert after[0] >= TIMEOUT_S - 0.05 and after[-1] <= TIMEOUT_S + 5
        for i, s in enumerate(stalled):
            answer = closed[s][1]
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            part = "headers" if i % 2 == 0 else "body"
            detail = json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
            assert detail == f"the request {part} did not arrive within {TIMEOUT_S:g} s"
            s.close()

        res = client.post("/v1/recommend", json={"user_id": users[0], "k": 5})
        assert res.status_code == 200 and [x["item"] for x in res.json()["items"]] == expected[users[0]]
    text = log.read_text()  # each cut-off connection is logged
    assert text.count("did not arrive within") == STALLED // 2 and "too many open connections" in text


# ---- the app in-process


def test_a_body_that_is_not_json_gets_415(client, predictor):
    body = json.dumps({"user_id": raw_user(predictor)})
    for path in ("/v1/recommend", "/v1/recommend/batch"):
        res = client.post(path, content=body, headers={"content-type": "text/plain"})
        assert res.status_code == 415, res.text
        assert res.json() == {
            "detail": "send the body as JSON with Content-Type: application/json (got 'text/plain')"
        }
    res = client.post("/v1/recommend", content=body.encode())  # no Content-Type at all
    assert res.status_code == 415 and "it has no Content-Type" in res.json()["detail"]
    utf8 = {"content-type": "application/json; charset=utf-8"}
    assert client.post("/v1/recommend", content=body, headers=utf8).status_code == 200
    post = client.get("/openapi.json").json()["paths"]["/v1/recommend"]["post"]
    assert {"408", "415"} <= set(post["responses"])


def test_docs_are_served_without_a_cdn(client):
    kinds = {".js": "javascript", ".css": "css", ".png": "image/png"}
    for page, assets in (("/docs", 3), ("/redoc", 2)):
        res = client.get(page)
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
        assert "//" not in res.text, f"{page} names an outside address"
        urls = re.findall(r'(?:src|href)="([^"]+)"', res.text)
        assert len(urls) == assets, res.text
        for url in urls:  # the scripts, the style sheet and the icon, from this server
            assert url.startswith("/"), url
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert kinds[Path(url).suffix] in asset.headers["content-type"] and len(asset.content) > 1000


def test_a_batch_answers_each_request_on_its_own(client, predictor):
    u1, u2 = raw_user(predictor, 1), raw_user(predictor, 2)
    reqs = [
        {"user_id": u1, "k": 4},
        {"user_id": "nobody"},
        {"history": [{"item": "no-such-item"}]},
        {"user_id": u2, "k": 3},
    ]
    res = client.post("/v1/recommend/batch", json={"requests": reqs})
    assert res.status_code == 200, res.text
    results = res.json()["results"]
    assert [r["error"] for r in results] == [
        None,
        "requests[1]: unknown user 'nobody' and no history to score from",
        "requests[2]: nothing to score from: no known user and no known item in the history",
        None,
    ]
    assert [r["user_id"] for r in results] == [u1, "nobody", None, u2]
    assert results[1]["items"] == results[2]["items"] == []
    for i in (0, 3):
        single = client.post("/v1/recommend", json=reqs[i]).json()
        assert [x["item"] for x in results[i]["items"]] == [x["item"] for x in single["items"]]
        assert [x["score"] for x in results[i]["items"]] == pytest.approx(
            [x["score"] for x in single["items"]]
        )
    # a body that is invalid as a whole is still refused as a whole
    res = client.post("/v1/recommend/batch", json={"requests": [{"user_id": u1}, {"user_id": 5}]})
    assert res.status_code == 422 and "requests.1.user_id" in res.json()["detail"]
    batch = client.get("/openapi.json").json()["paths"]["/v1/recommend/batch"]["post"]
    assert "404" not in batch["responses"]


def test_healthz_is_503_once_a_score_was_not_finite(client, predictor, monkeypatch):
    assert client.get("/healthz").json() == {"status": "ok", "model": "ssrf"}
    monkeypatch.setattr(predictor, "nonfinite_scores", 2, raising=False)
    res = client.get("/healthz")
    assert res.status_code == 503
    assert res.json() == {
        "status": "unhealthy",
        "model": "ssrf",
        "detail": "2 answer(s) had items with non-finite scores (left out)",
    }


def test_a_non_finite_score_is_never_served(predictor, monkeypatch):
    rank, bad = predictor.rank, (float("nan"), float("inf"), float("-inf"))

    def broken(resolved) -> list[list[Recommendation]]:  # items 2 to 4 of each answer get no finite score
        out = rank(resolved)
        for recs in out:
            recs[1:4] = [Recommendation(r.item, b, r.category) for r, b in zip(recs[1:4], bad, strict=True)]
        return out

    monkeypatch.setattr(predictor, "rank", broken)
    monkeypatch.delattr(predictor, "nonfinite_scores", raising=False)  # the app's own safety net alone
    with TestClient(create_app(predictor)) as c:
        assert c.get("/healthz").status_code == 200
        res = c.post("/v1/recommend", json={"user_id": raw_user(predictor), "k": 6})
        assert res.status_code == 200, res.text
        body = res.json()
        assert len(body["items"]) == 3 and all(math.isfinite(x["score"]) for x in body["items"])
        assert body["warnings"] == ["3 item(s) left out: the model gave them no finite score"]
        batch = c.post("/v1/recommend/batch", json={"requests": [{"user_id": raw_user(predictor)}]})
        assert batch.status_code == 200 and len(batch.json()["results"][0]["items"]) == 7
        for text in (res.text, batch.text):
            assert not re.search(r"NaN|Infinity|\"score\":\s*null", text)
        health = c.get("/healthz")
        assert health.status_code == 503 and health.json()["detail"].startswith("2 answer(s)")


@pytest.mark.parametrize(
    "options,message",
    [
        ({"port": 99999}, "port must be between 1 and 65535, got 99999"),
        ({"port": 0}, "port must be between 1 and 65535, got 0"),
        ({"workers": 0}, "workers must be at least 1, got 0"),
        ({"settings": ServeSettings(client_timeout_s=0)}, "client_timeout_s must be positive, got 0"),
        ({"settings": ServeSettings(max_connections=0)}, "max_connections must be at least 1, got 0"),
    ],
)
def test_serve_checks_its_options_before_starting(predictor, options, message):
    with pytest.raises(DataError, match=re.escape(message)):
        serve(predictor, **{"settings": ServeSettings(), **options})

"""The HTTP service (`ssrf.serving.app`) in-process, the real server over loopback, safe loading at start,
and a bounded schemathesis run over the OpenAPI schema; on a small SSRF trained on the embedded real data."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from typer.testing import CliRunner

from ssrf.cli import app as cli
from ssrf.serving.app import MAX_K, ServeSettings, create_app
from ssrf.serving.predictor import Event, Predictor, Query

SETTINGS = ServeSettings(max_history=20, max_batch=4, max_body_bytes=20_000)


@pytest.fixture(scope="module")
def run(serving_run) -> Path:
    return serving_run


@pytest.fixture(scope="module")
def predictor(run) -> Predictor:
    return Predictor.load(run)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, SETTINGS)) as c:
        yield c


def raw_user(p: Predictor, u: int = 1) -> str:
    return p.data.vocabs["user"].raw[u]


def raw_items(p: Predictor, ids) -> list[str]:
    return [p.data.vocabs["item"].raw[i] for i in ids]


def stored(p: Predictor, u: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = p.seqs.ptr[u], p.seqs.ptr[u + 1]
    return p.seqs.items[lo:hi], p.seqs.behaviors[lo:hi]


# ---- the endpoints


def test_known_user_gets_the_predictors_top_k_without_seen_items(client, predictor):
    user = raw_user(predictor)
    res = client.post("/v1/recommend", json={"user_id": user, "k": 7})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["user_id"] == user and body["warnings"] == []
    expected = predictor.recommend([user], k=7)[0]
    assert [x["item"] for x in body["items"]] == [r.item for r in expected]
    assert [x["score"] for x in body["items"]] == pytest.approx([r.score for r in expected], rel=1e-5)
    assert [x["category"] for x in body["items"]] == [r.category for r in expected]
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert not set(raw_items(predictor, stored(predictor, 1)[0])) & {x["item"] for x in body["items"]}


def test_exclude_seen_false_keeps_history_items(client, predictor):
    user = raw_user(predictor)
    n = predictor.n_items
    body = client.post("/v1/recommend", json={"user_id": user, "k": n, "exclude_seen": False}).json()
    assert len(body["items"]) == n  # the whole catalogue, the history included
    assert set(raw_items(predictor, stored(predictor, 1)[0])) <= {x["item"] for x in body["items"]}


def test_k_above_the_catalogue_returns_every_unseen_item(client, predictor):
    user = raw_user(predictor)
    body = client.post("/v1/recommend", json={"user_id": user, "k": MAX_K}).json()
    assert len(body["items"]) == predictor.n_items - len(np.unique(stored(predictor, 1)[0]))


def test_new_user_history_is_scored_and_ignored_parts_are_warned_about(client, predictor):
    items = raw_items(predictor, [3, 5, 8])
    history = [
        {"item": items[0], "behavior": "pv"},
        {"item": "no-such-item", "behavior": "pv"},
        {"item": items[1], "behavior": "cart"},
        {"item": items[2], "behavior": "teleport"},
    ]
    res = client.post("/v1/recommend", json={"history": history, "k": 5})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["user_id"] is None
    assert body["warnings"] == [
        "history[1]: unknown item 'no-such-item' ignored",
        "history[3]: unknown behavior 'teleport' ignored (read as 'pv')",
    ]
    query = Query(history=(Event(items[0], "pv"), Event(items[1], "cart"), Event(items[2], "pv")), k=5)
    expected = predictor.answer([query])[0].items
    assert [x["item"] for x in body["items"]] == [r.item for r in expected]
    assert not set(items) & {x["item"] for x in body["items"]}
    # the history is what is scored: another history gives another list
    other = client.post("/v1/recommend", json={"history": [{"item": raw_items(predictor, [40])[0]}]}).json()
    assert [x["item"] for x in other["items"]] != [x["item"] for x in body["items"]]


def test_history_extends_a_known_users_stored_history(client, predictor):
    user, new = raw_user(predictor), raw_items(predictor, [11, 12])
    body = client.post(
        "/v1/recommend", json={"user_id": user, "history": [{"item": i} for i in new], "k": 10}
    ).json()
    items, _ = stored(predictor, 1)
    resolved = predictor.resolve(Query(user=user, history=(Event(new[0]), Event(new[1])), k=10))
    assert resolved.items.tolist() == [*items.tolist(), 11, 12][-predictor.max_len :]
    assert resolved.behaviors[-2:].tolist() == [predictor.default_behavior] * 2
    assert [x["item"] for x in body["items"]] == [r.item for r in predictor.rank([resolved])[0]]
    assert not set(new) & {x["item"] for x in body["items"]}  # the new events count as seen too
    alone = client.post("/v1/recommend", json={"user_id": user, "k": 10}).json()
    assert [x["score"] for x in body["items"]] != [x["score"] for x in alone["items"]]


def test_timestamps_order_the_history(client, predictor):
    a, b = raw_items(predictor, [3, 9])
    in_order = client.post("/v1/recommend", json={"history": [{"item": a}, {"item": b}]}).json()
    shuffled = client.post(
        "/v1/recommend",
        json={"history": [{"item": b, "timestamp": 20}, {"item": a, "timestamp": 10.5}]},
    ).json()
    assert shuffled["items"] == in_order["items"]
    reversed_ = client.post("/v1/recommend", json={"history": [{"item": b}, {"item": a}]}).json()
    assert reversed_["items"] != in_order["items"]


def test_unknown_user_with_a_history_is_scored_from_the_history(client, predictor):
    item = raw_items(predictor, [3])[0]
    body = client.post("/v1/recommend", json={"user_id": "stranger", "history": [{"item": item}]}).json()
    assert body["warnings"] == ["unknown user 'stranger': scored from the given history alone"]
    plain = client.post("/v1/recommend", json={"history": [{"item": item}]}).json()
    assert body["items"] == plain["items"]


def test_batch_answers_each_request_in_order(client, predictor):
    u1, u2 = raw_user(predictor, 1), raw_user(predictor, 2)
    reqs = [{"user_id": u2, "k": 3}, {"history": [{"item": raw_items(predictor, [4])[0]}]}, {"user_id": u1}]
    res = client.post("/v1/recommend/batch", json={"requests": reqs})
    assert res.status_code == 200, res.text
    results = res.json()["results"]
    assert [r["user_id"] for r in results] == [u2, None, u1]
    assert [len(r["items"]) for r in results] == [3, 10, 10]
    for req, got in zip(reqs, results, strict=True):
        single = client.post("/v1/recommend", json=req).json()
        assert [x["item"] for x in got["items"]] == [x["item"] for x in single["items"]]
        assert [x["score"] for x in got["items"]] == pytest.approx([x["score"] for x in single["items"]])


@pytest.mark.parametrize("threaded", [True, False], ids=["rank-thread", "on-the-loop"])
def test_concurrent_requests_are_scored_together(predictor, monkeypatch, threaded):
    passes: list[int] = []
    rank = predictor.rank

    def counting(resolved):
        passes.append(len(resolved))
        time.sleep(0.02)  # a slow model: requests queue up behind it
        return rank(resolved)

    monkeypatch.setattr(predictor, "rank", counting)
    app = create_app(predictor, dataclasses.replace(SETTINGS, rank_thread=threaded))
    users = [raw_user(predictor, u) for u in range(1, 41)]

    async def ask_all() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            answers = await asyncio.gather(
                *(c.post("/v1/recommend", json={"user_id": u, "k": 5}) for u in users)
            )
        return [a.json() for a in answers]

    answers = asyncio.run(ask_all())
    assert sum(passes) == 40 and len(passes) < 10  # 40 requests, a few batched forward passes
    monkeypatch.undo()
    alone = predictor.recommend(users, 5)
    for got, want in zip(answers, alone, strict=True):
        assert [x["item"] for x in got["items"]] == [r.item for r in want]


@pytest.mark.parametrize("threaded", [True, False], ids=["rank-thread", "on-the-loop"])
def test_a_failing_forward_pass_is_a_500_and_the_next_one_is_served(predictor, monkeypatch, threaded):
    rank, calls = predictor.rank, []

    def failing_once(resolved):
        calls.append(len(resolved))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return rank(resolved)

    monkeypatch.setattr(predictor, "rank", failing_once)
    app = create_app(predictor, dataclasses.replace(SETTINGS, rank_thread=threaded))
    with TestClient(app, raise_server_exceptions=False) as c:
        body = {"user_id": raw_user(predictor), "k": 3}
        assert c.post("/v1/recommend", json=body).status_code == 500
        res = c.post("/v1/recommend", json=body)
    assert res.status_code == 200 and len(res.json()["items"]) == 3 and calls == [1, 1]


def test_healthz_and_model(client, predictor, run):
    assert client.get("/healthz").json() == {"status": "ok", "model": "ssrf"}
    info = client.get("/v1/model").json()
    results = json.loads((run / "results.json").read_text())
    assert info["model"] == "ssrf"
    assert info["config"]["d"] == 16 and info["max_len"] == 10
    assert info["dataset"] == results["dataset"] and info["protocol"] == "temporal"
    assert info["vocab"] == {
        "users": predictor.data.n_users,
        "items": predictor.n_items,
        "behaviors": 4,
        "fields": {"category": len(predictor.data.vocabs["field:category"]) - 1},
    }
    assert info["behaviors"] == ["pv", "fav", "cart", "buy"]
    assert info["index"] == predictor.index_info and info["index"]["index"] == "exact"
    assert info["user_cache"] == predictor.cache_info
    # JSON has no NaN: a metric no user defines (e.g. a kind of positive none has) is null
    nan_free = {k: None if v != v else v for k, v in results["test"].items()}
    assert {k: v for k, v in info["test_metrics"].items() if v is None} == {
        k: v for k, v in nan_free.items() if v is None
    }
    assert {k: v for k, v in info["test_metrics"].items() if v is not None} == pytest.approx(
        {k: v for k, v in nan_free.items() if v is not None}
    )


def test_openapi_schema_declares_requests_responses_and_caps(client):
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/v1/recommend"]["post"]
    ok = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/RecommendResponse"}
    for code in ("404", "413", "422"):
        assert post["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    parts = schema["components"]["schemas"]
    assert parts["RecommendRequest"]["properties"]["history"]["maxItems"] == SETTINGS.max_history
    assert parts["RecommendRequest"]["properties"]["k"]["maximum"] == MAX_K
    assert parts["BatchRequest"]["properties"]["requests"]["maxItems"] == SETTINGS.max_batch
    for path, ref in (("/healthz", "Health"), ("/v1/model", "ModelInfo")):
        got = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert got == {"$ref": f"#/components/schemas/{ref}"}


# ---- bad requests: a 4xx that says what is wrong, and the server keeps serving

BAD = [
    ({"user_id": "no-such-user"}, 404, "unknown user 'no-such-user' and no history"),
    ({"user_id": "U", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ({"user_id": "U", "k": MAX_K + 1}, 422, "k: Input should be less than or equal to 1000"),
    ({"history": [{"item": "I"}] * 21}, 422, "history: List should have at most 20 items"),
    ({"user_id": 5}, 422, "user_id: Input should be a valid string"),
    ({"user_id": "U", "k": "10"}, 422, "k: Input should be a valid integer"),
    ({"user_id": "U", "k": 2.5}, 422, "k: Input should be a valid integer"),
    ({"user_id": "U", "exclude_seen": "no"}, 422, "exclude_seen: Input should be a valid boolean"),
    ({"history": "I"}, 422, "history: Input should be a valid array"),
    ({"history": [{"item": 3}]}, 422, "history.0.item: Input should be a valid string"),
    ({"history": [{"item": "I", "timestamp": "noon"}]}, 422, "history.0.timestamp: Input should be"),
    ({"user_id": "U", "colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ({}, 422, "give user_id, history, or both"),
    ({"history": []}, 422, "give user_id, history, or both"),
    ({"history": [{"item": "I", "timestamp": 1}, {"item": "I"}]}, 422, "give a timestamp for every"),
    ({"history": [{"item": "no-such-item"}]}, 404, "nothing to score from"),
    ([1, 2], 422, "Input should be an object"),
]


@pytest.mark.parametrize("body,status,message", BAD, ids=[f"{s}-{m[:24]}" for _, s, m in BAD])
def test_bad_request_is_a_4xx_with_a_message(client, predictor, body, status, message):
    if isinstance(body, dict) and body.get("user_id") == "U":
        body = {**body, "user_id": raw_user(predictor)}  # a known user: only the other field is wrong
    if isinstance(body, dict) and body.get("history") and isinstance(body["history"], list):
        real = raw_items(predictor, [3])[0]
        body = {
            **body,
            "history": [{**e, "item": real} if e.get("item") == "I" else e for e in body["history"]],
        }
    res = client.post("/v1/recommend", json=body)
    assert res.status_code == status, res.text
    assert message in res.json()["detail"], res.text
    assert client.get("/healthz").status_code == 200


def test_malformed_json_and_oversized_bodies(client, predictor):
    res = client.post("/v1/recommend", content=b'{"user_id": ', headers={"content-type": "application/json"})
    assert res.status_code == 422 and "not valid JSON" in res.json()["detail"]
    big = json.dumps({"user_id": raw_user(predictor), "pad": "x" * SETTINGS.max_body_bytes}).encode()
    res = client.post("/v1/recommend", content=big, headers={"content-type": "application/json"})
    assert res.status_code == 413 and "larger than 20000 bytes" in res.json()["detail"]

    def chunks():  # streamed without a Content-Length: stopped as it passes the limit
        yield b'{"user_id": "x", "pad": "'
        for _ in range(30):
            yield b"y" * 1000
        yield b'"}'

    res = client.post("/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413 and "larger than" in res.json()["detail"]
    assert client.post("/v1/recommend", json={"user_id": raw_user(predictor)}).status_code == 200


def test_bad_batches(client, predictor):
    good = {"user_id": raw_user(predictor)}
    res = client.post("/v1/recommend/batch", json={"requests": [good, {"user_id": "nobody"}]})
    assert res.status_code == 200  # one bad request does not fail the others
    results = res.json()["results"]
    assert results[1]["error"].startswith("requests[1]: unknown user 'nobody'") and results[1]["items"] == []
    assert results[0]["error"] is None and results[0]["items"]
    res = client.post("/v1/recommend/batch", json={"requests": [good] * 5})
    assert res.status_code == 422 and "requests: List should have at most 4 items" in res.json()["detail"]
    res = client.post("/v1/recommend/batch", json={"requests": []})
    assert res.status_code == 422 and "requests: List should have at least 1 item" in res.json()["detail"]
    res = client.post("/v1/recommend/batch", json={"requests": [{**good, "k": -1}]})
    assert res.status_code == 422 and "requests.0.k:" in res.json()["detail"]


def test_unknown_route_and_method(client):
    assert client.get("/v1/recommend").status_code == 405
    assert client.get("/v2/nothing").status_code == 404


# ---- safe loading at start


def _tampered_copy(run: Path, dest: Path, change) -> Path:
    import shutil

    shutil.copytree(run, dest)
    change(dest / "best")
    return dest


def _truncate(best: Path) -> None:
    w = best / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])


def _flip_a_byte(best: Path) -> None:
    w = best / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))


def _config_mismatch(best: Path) -> None:
    meta = json.loads((best / "model.json").read_text())
    meta["model_config"]["d"] = 32  # the weights file is intact (its digest matches); the config is wrong
    (best / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change,message",
    [
        (_truncate, "differs from the digest"),
        (_flip_a_byte, "differs from the digest"),
        (_config_mismatch, "weights do not match the config"),
    ],
    ids=["truncated", "tampered", "config-mismatch"],
)
def test_serve_refuses_a_broken_run_at_start(run, tmp_path, change, message):
    bad = _tampered_copy(run, tmp_path / "bad", change)
    res = CliRunner().invoke(cli, ["serve", "--run", str(bad), "--port", "1"])
    assert res.exit_code == 2, res.output
    assert message in res.output and "model." in res.output


def test_serve_refuses_a_folder_that_is_not_a_run(tmp_path):
    res = CliRunner().invoke(cli, ["serve", "--run", str(tmp_path)])
    assert res.exit_code == 2 and "not a run folder" in res.output


# ---- the real server over loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_real_server_answers_over_http(run, predictor, workers):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "ssrf", "serve", "--run", str(run), "--port", str(port), "--no-access-log"]
    cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start in 90 s"
            time.sleep(0.2)
        user = raw_user(predictor)
        res = httpx.post(f"{base}/v1/recommend", json={"user_id": user, "k": 5}, timeout=10)
        assert res.status_code == 200, res.text
        assert [x["item"] for x in res.json()["items"]] == [r.item for r in predictor.recommend([user], 5)[0]]
        res = httpx.post(f"{base}/v1/recommend", json={"user_id": "nobody"}, timeout=10)
        assert res.status_code == 404 and "unknown user" in res.json()["detail"]
        info = httpx.get(f"{base}/v1/model", timeout=10).json()
        assert info["model"] == "ssrf" and info["user_cache"]["cached"]  # built in the worker, by default
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"on http://127.0.0.1:{port}" in out
    users = int((np.diff(predictor.seqs.ptr)[1:] > 0).sum())
    if workers == 1:
        assert f"user cache: {users} users x " in out  # on by default for `ssrf serve`
    else:  # the parent only checks the run
        assert "user cache: built by each of the 2 workers (up to 512 MB)" in out


# ---- a bounded fuzz of the OpenAPI schema: no 5xx


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_fuzzed_requests_never_get_a_5xx(predictor, mode):
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(predictor, SETTINGS))
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in ops} == {
        "POST /v1/recommend",
        "POST /v1/recommend/batch",
        "GET /healthz",
        "GET /v1/model",
    }
    statuses: list[int] = []
    for op in ops:
        if mode == GenerationMode.NEGATIVE and op.method.upper() == "GET":
            continue  # no parameters and no body: nothing can be made invalid
        strategy = op.as_strategy(generation_mode=mode)
        if mode == GenerationMode.POSITIVE:  # the schema's example requests too (real ids)
            strategy = st.one_of(strategy, *schema.get_strategies_from_examples(op))

        @given(case=strategy)
        @settings(
            max_examples=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            res = case.call()
            statuses.append(res.status_code)
            assert res.status_code < 500, (case.method, case.path, case.body, res.text)
            # status codes and bodies as the schema declares them; a schema-valid request may still be
            # refused when it names nothing the model knows (404) or mixes timed and untimed events (422)
            case.validate_response(res, excluded_checks=[positive_data_acceptance])

        check()
    assert max(statuses) < 500 and any(s >= 400 for s in statuses)
    if mode == GenerationMode.POSITIVE:
        assert statuses.count(200) > len(ops)  # the fuzz reached the model, not only the validation

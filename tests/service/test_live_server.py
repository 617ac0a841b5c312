"""The same contract through a real `referee serve` subprocess (uvicorn, spawn pool, real sockets)."""

from __future__ import annotations

import concurrent.futures
import time

import httpx

from tests.service.conftest import serve


def echo(i: object, completion: str, reference: str) -> dict[str, object]:
    return {"id": i, "completion": completion, "verifier": "test_echo", "reference": reference}


def test_every_status_over_http(live_server: str) -> None:
    items = [
        echo(1, "a", "a"),
        echo(2, "b", "a"),
        echo(3, "", "a"),
        {"id": 4, "completion": "<answer>1</answer><think>x</think>", "verifier": "format"},
        {"id": 5, "completion": "x", "verifier": "test_sleep", "reference": "x"},  # spins past the 3 s limit
        {
            "id": 6,
            "completion": "```python\nprint(1)\n```",
            "tests": {"cases": [{"stdin": "", "stdout": "1\n"}]},
        },
        {"id": 7, "completion": "x", "verifier": "nope"},
        {"id": 8, "completion": "<think>2+2</think> <answer>4</answer>", "answer": "4"},
    ]
    r = httpx.post(f"{live_server}/score", json={"items": items}, timeout=60)
    assert r.status_code == 200
    statuses = [x["status"] for x in r.json()["results"]]
    assert statuses == [
        "ok",
        "wrong",
        "no_answer",
        "format_error",
        "timeout",
        "sandbox_error",
        "invalid",
        "ok",
    ]


def test_concurrent_requests_each_get_their_own_answers(live_server: str) -> None:
    def one(n: int) -> list[object]:
        items = [echo(f"{n}-{i}", f"{n}:{i}", f"{n}:{i}" if i % 2 else "other") for i in range(50)]
        r = httpx.post(f"{live_server}/score", json={"items": items}, timeout=60)
        assert r.status_code == 200
        results = r.json()["results"]
        assert [x["id"] for x in results] == [f"{n}-{i}" for i in range(50)]
        return [x["status"] for x in results]

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        outcomes = list(ex.map(one, range(16)))
    for statuses in outcomes:
        assert statuses == ["wrong" if i % 2 == 0 else "ok" for i in range(50)]


def test_malformed_body_over_http(live_server: str) -> None:
    r = httpx.post(
        f"{live_server}/score",
        content=b'{"items": [1, 2',
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422


def test_disconnected_caller_work_is_dropped() -> None:
    with serve(env={"REFEREE_POOL_SIZE": "1", "REFEREE_ITEM_TIMEOUT_S": "30"}) as base:
        slow = [
            {
                "id": i,
                "completion": "x",
                "verifier": "test_sleep",
                "reference": "x",
                "options": {"test_sleep": {"seconds": 1.0}},
            }
            for i in range(20)
        ]
        try:
            httpx.post(f"{base}/score", json={"items": slow}, timeout=1.5)
        except httpx.ReadTimeout:
            pass
        # Had the 20 one-second items kept running, this would wait ~18 s more.
        started = time.perf_counter()
        r = httpx.post(f"{base}/score", json={"items": [echo(1, "a", "a")]}, timeout=60)
        assert r.status_code == 200 and r.json()["results"][0]["status"] == "ok"
        assert time.perf_counter() - started < 6


def test_auth_token_from_environment() -> None:
    with serve(env={"REFEREE_API_TOKEN": "tok"}) as base:
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.post(f"{base}/score", json={"items": []}).status_code == 401
        ok = httpx.post(f"{base}/score", json={"items": []}, headers={"Authorization": "Bearer tok"})
        assert ok.status_code == 200 and ok.json() == {"results": []}


def test_docs_page_is_served(live_server: str) -> None:
    page = httpx.get(f"{live_server}/docs", timeout=10)
    assert page.status_code == 200 and "swagger-ui" in page.text.lower()
    spec = httpx.get(f"{live_server}/openapi.json", timeout=10).json()
    assert "/score" in spec["paths"]

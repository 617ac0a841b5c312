"""POST /score through TestClient: contract, statuses, limits, bad input, auth, backpressure, cache."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.service.conftest import make_settings

ECHO = "test_echo"


def echo_item(i: int | str, completion: str, reference: str) -> dict[str, object]:
    return {"id": i, "completion": completion, "verifier": ECHO, "reference": reference}


def test_empty_batch_is_valid(client: TestClient) -> None:
    r = client.post("/score", json={"items": []})
    assert r.status_code == 200
    assert r.json() == {"results": []}


def test_statuses_order_and_length(client: TestClient) -> None:
    items = [
        echo_item("a", "42", "42"),  # ok
        echo_item("b", "41", "42"),  # wrong
        echo_item("c", "   ", "42"),  # no_answer
        {"id": "d", "completion": "x", "verifier": "no_such_verifier"},  # invalid: unknown verifier
        {"id": "e", "completion": "x"},  # invalid: nothing to score against
        echo_item(7, "x", "x"),  # integer ids are echoed as integers
    ]
    r = client.post("/score", json={"items": items})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["id"] for x in results] == ["a", "b", "c", "d", "e", 7]
    assert [x["status"] for x in results] == ["ok", "wrong", "no_answer", "invalid", "invalid", "ok"]
    assert results[0]["components"]["accuracy"] == 1.0
    assert results[1]["components"]["accuracy"] == 0.0
    assert results[0]["extracted"] == "42"
    assert (
        "no_such_verifier" in results[3]["details"]["error"]
        and "valid names" in results[3]["details"]["error"]
    )
    assert "verifier" in results[4]["details"]["error"]
    for x in results[3:5]:
        assert x["reward"] == 0.0 and x["components"] == {"accuracy": None, "format": None, "language": None}
    assert all(x["elapsed_ms"] >= 0 for x in results)


def test_bad_options_make_only_that_item_invalid(client: TestClient) -> None:
    items = [
        {**echo_item(1, "a", "a"), "options": {ECHO: {"no_such_option": 1}}},
        {**echo_item(2, "a", "a"), "options": {ECHO: {"case_sensitive": "yes"}}},
        {**echo_item(3, "A", "a"), "options": {ECHO: {"case_sensitive": False}}},
        {**echo_item(4, "a", "a"), "options": {"nonexistent": {}}},
    ]
    results = client.post("/score", json={"items": items}).json()["results"]
    assert [x["status"] for x in results] == ["invalid", "invalid", "ok", "invalid"]
    assert (
        "no_such_option" in results[0]["details"]["error"]
        and "case_sensitive" in results[0]["details"]["error"]
    )
    assert "boolean" in results[1]["details"]["error"]
    assert "nonexistent" in results[3]["details"]["error"]


def test_request_options_are_defaults_items_override(client: TestClient) -> None:
    body = {
        "items": [
            echo_item(1, "A", "a"),
            {**echo_item(2, "A", "a"), "options": {ECHO: {"case_sensitive": True}}},
        ],
        "options": {ECHO: {"case_sensitive": False}},
    }
    results = client.post("/score", json=body).json()["results"]
    assert [x["status"] for x in results] == ["ok", "wrong"]


def test_weights_request_level_and_per_item_override(client: TestClient) -> None:
    body = {
        "items": [echo_item(1, "x", "x"), {**echo_item(2, "x", "x"), "weights": {"accuracy": 0.25}}],
        "weights": {"accuracy": 2.0},
    }
    results = client.post("/score", json=body).json()["results"]
    fmt = results[0]["components"]["format"]
    extra = 0.1 * fmt if fmt is not None else 0.0
    assert results[0]["reward"] == pytest.approx(2.0 + extra)
    assert results[1]["reward"] == pytest.approx(0.25 + extra)


def test_too_long_completion_is_invalid_not_a_failed_batch() -> None:
    with TestClient(create_app(make_settings(max_completion_chars=10, pool_size=1))) as c:
        results = c.post(
            "/score", json={"items": [echo_item(1, "x" * 11, "x"), echo_item(2, "x", "x")]}
        ).json()
    assert [x["status"] for x in results["results"]] == ["invalid", "ok"]
    assert "REFEREE_MAX_COMPLETION_CHARS" in results["results"][0]["details"]["error"]


def test_pathological_item_times_out_while_the_rest_is_scored() -> None:
    with TestClient(create_app(make_settings(item_timeout_s=1.0))) as c:
        items = [{"id": "slow", "completion": "x", "verifier": "test_sleep", "reference": "x"}]
        items += [echo_item(i, str(i), str(i)) for i in range(30)]
        r = c.post("/score", json={"items": items})
        assert r.status_code == 200
        results = r.json()["results"]
        assert results[0]["status"] == "timeout" and results[0]["reward"] == 0.0
        assert "killed" in results[0]["details"]["accuracy"]["error"]
        assert all(x["status"] == "ok" for x in results[1:])
        # The service keeps serving after the kill.
        again = c.post("/score", json={"items": [echo_item("z", "1", "1")]}).json()["results"]
        assert again[0]["status"] == "ok"
        metrics = c.get("/metrics").text
        assert 'referee_items_total{status="timeout",verifier="test_sleep"} 1.0' in metrics
        assert "referee_pool_worker_restarts 1.0" in metrics


def test_thousand_item_batch(client: TestClient) -> None:
    items = [echo_item(i, str(i % 7), str(i % 5)) for i in range(1000)]
    results = client.post("/score", json={"items": items}).json()["results"]
    assert len(results) == 1000
    assert [x["id"] for x in results] == list(range(1000))
    for i, x in enumerate(results):
        assert x["status"] == ("ok" if i % 7 == i % 5 else "wrong"), i


def test_repeated_items_come_from_the_cache(client: TestClient) -> None:
    body = {"items": [echo_item("c1", "cache-me", "cache-me")]}
    first = client.post("/score", json=body).json()["results"][0]
    second = client.post("/score", json=body).json()["results"][0]
    assert first["cached"] is False and second["cached"] is True
    assert {k: v for k, v in first.items() if k not in ("cached", "elapsed_ms")} == {
        k: v for k, v in second.items() if k not in ("cached", "elapsed_ms")
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"items": [', "JSON decode error"),  # truncated JSON
        (b'{"items": [{"id": 1, "completion": "x", "answer": NaN}]}', "JSON decode error"),  # NaN is not JSON
        (b'{"items": [{"id": 1, "completion": "x", "answer": Infinity}]}', "JSON decode error"),
        (
            b'{"items": [{"id": 1, "completion": "\xff\xfe", "answer": "1"}]}',
            "JSON decode error",
        ),  # bad UTF-8
        (b'{"items": {"id": 1}}', "items"),  # wrong type
        (b'{"items": [{"id": 1, "answer": "1"}]}', "completion"),  # missing field
        (b'{"items": [{"id": 1, "completion": 5}]}', "completion"),  # wrong type
        (b'{"items": [], "weights": {"accuracy": "heavy"}}', "accuracy"),
        (b'{"items": [], "wieghts": {}}', "wieghts"),  # typo'd field is refused, not ignored
        (b"[]", "body"),
        (b"", "body"),
    ],
)
def test_malformed_bodies_are_4xx_naming_the_problem(client: TestClient, body: bytes, fragment: str) -> None:
    r = client.post("/score", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert fragment in r.text


def test_item_and_body_limits() -> None:
    with TestClient(create_app(make_settings(max_items=3, max_body_bytes=2048, pool_size=1))) as c:
        r = c.post("/score", json={"items": [echo_item(i, "x", "x") for i in range(4)]})
        assert r.status_code == 413 and "REFEREE_MAX_ITEMS" in r.json()["detail"]
        r = c.post("/score", json={"items": [echo_item(1, "x" * 5000, "x")]})
        assert r.status_code == 413 and "REFEREE_MAX_BODY_BYTES" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced while reading
            yield b'{"items": [{"id": 1, "completion": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'", "verifier": "test_echo", "reference": "y"}]}'

        r = c.post("/score", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_backpressure_answers_429_with_retry_after() -> None:
    with TestClient(create_app(make_settings(max_queue=5, pool_size=1))) as c:
        r = c.post("/score", json={"items": [echo_item(i, "q", "q") for i in range(6)]})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert "queue is full" in r.json()["detail"]
        assert c.post("/score", json={"items": [echo_item(i, "q", "q") for i in range(5)]}).status_code == 200


def test_auth_required_everywhere_but_health() -> None:
    with TestClient(create_app(make_settings(api_token="s3cret", pool_size=1))) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        for method, path in (
            ("post", "/score"),
            ("get", "/metrics"),
            ("get", "/docs"),
            ("get", "/openapi.json"),
        ):
            kwargs = {"json": {"items": []}} if method == "post" else {}
            assert getattr(c, method)(path, **kwargs).status_code == 401, path
            bad = getattr(c, method)(path, headers={"Authorization": "Bearer wrong"}, **kwargs)
            assert bad.status_code == 401
            good = getattr(c, method)(path, headers={"Authorization": "Bearer s3cret"}, **kwargs)
            assert good.status_code == 200, path


def test_auth_off_by_default(client: TestClient) -> None:
    assert client.post("/score", json={"items": []}).status_code == 200


def test_readyz_and_metrics(client: TestClient) -> None:
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["pool_workers"] >= 1 and ECHO in ready["verifiers"]
    client.post("/score", json={"items": [echo_item("m", "1", "1")]})
    text = client.get("/metrics").text
    assert 'referee_items_total{status="ok",verifier="test_echo"}' in text
    assert "referee_item_seconds_bucket" in text
    assert "referee_pool_queue_depth" in text
    assert 'referee_requests_total{code="200",route="/score"}' in text


def test_verifiers_listing(client: TestClient) -> None:
    listing = {v["name"]: v for v in client.get("/verifiers").json()}
    assert listing[ECHO]["component"] == "accuracy"
    assert "case_sensitive" in listing[ECHO]["options"]


def test_openapi_documents_every_model(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("ScoreRequest", "ScoreItem", "ItemResult", "Weights"):
        assert name in schemas
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description") or "$ref" in json.dumps(prop), f"{name}.{field} has no description"
    assert schemas["ScoreRequest"].get("examples")


GOOD = "<think>3*4=12, 2+12=14</think> <answer>14</answer>"


def test_format_component_and_format_error_status(client: TestClient) -> None:
    items = [
        {"id": 1, "completion": GOOD, "verifier": "format"},
        {"id": 2, "completion": "<answer>14</answer><think>late</think>", "verifier": "format"},
        {
            "id": 3,
            "completion": "<think>a</think><answer>b</answer>",
            "verifier": "format",
            "options": {"format": {"mode": "bogus"}},
        },
    ]
    results = client.post("/score", json={"items": items}).json()["results"]
    assert [x["status"] for x in results] == ["ok", "format_error", "invalid"]
    assert results[0]["components"] == {"accuracy": None, "format": 1.0, "language": None}
    assert results[0]["reward"] == pytest.approx(0.1)
    assert results[1]["details"]["format"]["reason"] == "answer_before_think"


def test_format_is_scored_beside_accuracy_and_can_gate_it(client: TestClient) -> None:
    items = [
        {"id": "good", "completion": GOOD, "verifier": ECHO, "reference": GOOD},
        {"id": "bare", "completion": "14", "verifier": ECHO, "reference": "14"},
    ]
    plain = client.post("/score", json={"items": items}).json()["results"]
    assert [x["components"]["format"] for x in plain] == [1.0, 0.0]
    assert [x["reward"] for x in plain] == [pytest.approx(1.1), pytest.approx(1.0)]
    assert [x["status"] for x in plain] == ["ok", "ok"]
    gated = client.post("/score", json={"items": items, "format_gate": True}).json()["results"]
    assert [x["status"] for x in gated] == ["ok", "format_error"]
    assert gated[1]["components"]["accuracy"] == 0.0 and gated[1]["reward"] == 0.0


def test_language_component_from_field_or_prompt(client: TestClient) -> None:
    zh = "<think>首先计算 $3 \\times 4 = 12$，然后加上 2 得到 14。</think> <answer>14</answer>"
    mixed = "<think>First 3*4 = 12, 然后加上 2 得到 14. So the answer follows.</think> <answer>14</answer>"
    items = [
        {"id": "zh", "completion": zh, "verifier": ECHO, "reference": "x", "language": "zh"},
        {"id": "mixed", "completion": mixed, "verifier": ECHO, "reference": "x", "language": "zh"},
        {
            "id": "prompt",
            "completion": zh,
            "verifier": ECHO,
            "reference": "x",
            "prompt": "计算 2 加 3 乘 4 的结果是多少？",
        },
        {
            "id": "chat",
            "completion": zh,
            "verifier": ECHO,
            "reference": "x",
            "prompt": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "请计算 2 加 3 乘 4。"},
            ],
        },
        {"id": "none", "completion": zh, "verifier": ECHO, "reference": "x"},
        {"id": "bad", "completion": zh, "verifier": ECHO, "reference": "x", "language": "xx"},
    ]
    r = {x["id"]: x for x in client.post("/score", json={"items": items}).json()["results"]}
    assert r["zh"]["components"]["language"] == 1.0  # formulas are neither Chinese nor foreign
    assert 0.0 < r["mixed"]["components"]["language"] < 1.0
    assert r["prompt"]["components"]["language"] == 1.0  # target derived from the prompt
    assert r["chat"]["components"]["language"] == 1.0  # ... or from the last user message
    assert r["none"]["components"]["language"] is None  # no target: not scored, weight 0
    assert r["zh"]["reward"] == pytest.approx(0.0 + 0.1 * r["zh"]["components"]["format"] + 0.2 * 1.0)
    assert r["bad"]["status"] == "invalid"


def test_math_items_end_to_end(client: TestClient) -> None:
    items = [
        {"id": "right", "completion": GOOD, "answer": "14"},
        {"id": "number", "completion": GOOD, "answer": 14},  # a numeric gold is read as text
        {
            "id": "reasoning-not-mined",
            "completion": "<think>6*7=42</think> <answer>41</answer>",
            "answer": "42",
        },
        {"id": "unfinished", "completion": "<think>let me think about 14", "answer": "14"},
        {"id": "bad-gold", "completion": GOOD, "answer": ""},
        {"id": "latex", "completion": "<think>half</think><answer>\\frac{1}{2}</answer>", "answer": "0.5"},
    ]
    r = {x["id"]: x for x in client.post("/score", json={"items": items}).json()["results"]}
    assert r["right"]["status"] == "ok" and r["right"]["reward"] == pytest.approx(1.1)
    assert r["right"]["extracted"] == "14" and r["right"]["components"]["accuracy"] == 1.0
    assert r["number"]["status"] == "ok"
    assert r["reasoning-not-mined"]["status"] == "wrong" and r["reasoning-not-mined"]["extracted"] == "41"
    assert r["unfinished"]["status"] == "no_answer"
    assert r["bad-gold"]["status"] == "invalid" and r["bad-gold"]["reward"] == 0.0
    assert r["latex"]["status"] == "ok"
    assert "accuracy" in r["right"]["details"]


def test_thousand_math_items(client: TestClient) -> None:
    items = [
        {"id": i, "completion": f"<think>add</think> <answer>{i % 13}</answer> ", "answer": str(i % 11)}
        for i in range(1000)
    ]
    results = client.post("/score", json={"items": items}).json()["results"]
    assert [x["status"] for x in results] == ["ok" if i % 13 == i % 11 else "wrong" for i in range(1000)]

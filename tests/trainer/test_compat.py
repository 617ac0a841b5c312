"""OpenRLHF ``/get_reward`` and slime ``/slime/reward``: pure translations and the routes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.routes.compat import (
    OpenRLHFRequest,
    SlimeRequest,
    openrlhf_items,
    response_from_query,
    slime_item,
    strip_special_tokens,
)
from tests.trainer.fake_referee import make_app

PROMPT = "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n"
GOOD = "<think>6*7</think><answer>42</answer>"


def test_response_is_cut_out_of_the_query_and_special_tokens_stripped() -> None:
    assert response_from_query(PROMPT + GOOD + "<|im_end|>", PROMPT) == GOOD
    assert response_from_query(GOOD + "<|endoftext|>", "a prompt that is not a prefix") == GOOD
    assert strip_special_tokens("x</s><|eot_id|>") == "x"


def test_labels_become_answers_or_tests() -> None:
    items = openrlhf_items(
        OpenRLHFRequest(
            query=[PROMPT + "a", PROMPT + "b", PROMPT + "c"],
            prompts=[PROMPT] * 3,
            labels=["42", None, '{"inputs": ["1"], "outputs": ["1"]}'],
        )
    )
    assert items[0]["answer"] == "42" and items[0]["completion"] == "a"
    assert "answer" not in items[1] and items[1]["verifier"] == "format"
    assert items[2]["tests"] == {"inputs": ["1"], "outputs": ["1"]}
    assert items[0]["prompt"] == "user\nWhat is 6*7?\nassistant"


def test_length_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="labels"):
        openrlhf_items(OpenRLHFRequest(query=["a", "b"], prompts=["", ""], labels=["1"]))


def test_slime_prompt_messages() -> None:
    item = slime_item(SlimeRequest(prompt=[{"role": "user", "content": "hi"}], response="r", label=3))
    assert item == {"id": "0", "completion": "r", "prompt": "hi", "answer": "3"}


@pytest.fixture(scope="module")
def http() -> TestClient:
    return TestClient(make_app())


def test_get_reward_openrlhf_shape(http: TestClient) -> None:
    body = {
        "query": [PROMPT + GOOD + "<|im_end|>", PROMPT + "no"],
        "prompts": [PROMPT, PROMPT],
        "labels": ["42", "42"],
    }
    out = http.post("/get_reward", json=body).json()
    assert out["rewards"] == pytest.approx([1.1, 0.0])
    assert out["scores"] == [1.0, 0.0]
    assert {k: len(v) for k, v in out["extra_logs"].items()} == {"accuracy": 2, "format": 2, "timeout": 2}
    assert http.post("/get_reward?extra_logs=false", json=body).json()["extra_logs"] == {}


def test_get_reward_empty_request_and_single_sample(http: TestClient) -> None:
    # OpenRLHF >= 0.9.1 with N URLs sends empty lists to servers 1..N-1.
    assert http.post("/get_reward", json={"query": [], "prompts": [], "labels": []}).json() == {
        "rewards": [],
        "scores": [],
        "extra_logs": {},
    }
    out = http.post("/get_reward", json={"query": [GOOD], "prompts": [""], "labels": [None]}).json()
    assert out["rewards"] == pytest.approx([0.1]) and out["scores"] == pytest.approx(
        [0.1]
    )  # no label: reward clipped


def test_get_reward_bad_body_is_4xx(http: TestClient) -> None:
    assert http.post("/get_reward", json={"query": "not a list"}).status_code == 422
    assert http.post("/get_reward", json={"query": ["a"], "prompts": ["a", "b"]}).status_code == 422


def test_slime_reward_number_and_dict(http: TestClient) -> None:
    body = {"prompt": "6*7?", "response": GOOD, "label": "42"}
    assert http.post("/slime/reward", json=body).json() == pytest.approx(1.1)
    d = http.post("/slime/reward?format=dict", json=body).json()
    assert d["score"] == pytest.approx(1.1) and d["accuracy"] == 1.0
    assert http.post("/slime/reward?format=xml", json=body).status_code == 422

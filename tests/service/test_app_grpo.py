"""The GRPO routes are part of the served app: /score results feed /grpo/advantages directly."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytest.importorskip("torch")


def test_score_then_advantages(client: TestClient) -> None:
    items = [
        {"id": f"g{g}-{i}", "completion": str(i % 2), "verifier": "test_echo", "reference": "1"}
        for g in range(2)
        for i in range(4)
    ]
    results = client.post("/score", json={"items": items}).json()["results"]
    r = client.post("/grpo/advantages", json={"results": results, "group_size": 4, "flavor": "trl"})
    assert r.status_code == 200, r.text
    adv = r.json()["advantages"]
    assert len(adv) == 8
    # Within each group of 4 the two right answers get equal positive advantages, the wrong ones negative.
    for g in range(2):
        group = adv[4 * g : 4 * g + 4]
        assert group[1] == group[3] > 0 > group[0] == group[2]
        assert sum(group) == pytest.approx(0.0, abs=1e-9)


def test_grpo_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/grpo/advantages" in paths and "/grpo/loss" in paths

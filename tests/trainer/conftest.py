from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.trainer.fake_referee import FakeReferee


@pytest.fixture(scope="module")
def referee() -> Iterator[FakeReferee]:
    with FakeReferee() as fake:
        yield fake


@pytest.fixture
def referee_env(referee: FakeReferee, monkeypatch: pytest.MonkeyPatch) -> FakeReferee:
    monkeypatch.setenv("REFEREE_URL", referee.url)
    monkeypatch.setenv("REFEREE_API_TOKEN", "sekrit")
    referee.app.state.seen.clear()
    referee.app.state.fail.clear()
    return referee


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The toy model's matmuls are tiny: intra-op threads only add contention on a shared 2-core box.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

"""The verifier registry: duplicates refused, helpful unknown-name errors, options validated into frozen configs."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import pytest

from verifiers import Verdict, get, register
from verifiers.registry import UnknownVerifierError, config_from_options
from verifiers.types import VerifierInputError


@dataclass(frozen=True)
class Cfg:
    mode: str = "strict"
    tolerance: float = 1e-6
    letters: tuple[str, ...] = ("A", "B")
    flag: bool = False
    limit: int | None = None


def _fn(completion: str, reference: object, config: Cfg) -> Verdict:
    return Verdict("ok", 1.0)


def test_register_and_get() -> None:
    register("reg_test_a", config=Cfg, component="accuracy", version="3")(_fn)
    spec = get("reg_test_a")
    assert spec.fn is _fn and spec.version == "3" and spec.component == "accuracy"
    register("reg_test_a", config=Cfg, component="accuracy", version="3")(_fn)  # same function again: fine


def test_duplicate_name_is_refused() -> None:
    register("reg_test_b", config=Cfg, component="accuracy", version="1")(_fn)

    def other(completion: str, reference: object, config: Cfg) -> Verdict:
        return Verdict("wrong", 0.0)

    with pytest.raises(ValueError, match="already registered"):
        register("reg_test_b", config=Cfg, component="accuracy", version="1")(other)


def test_unknown_name_lists_valid_names() -> None:
    register("reg_test_c", config=Cfg, component="accuracy", version="1")(_fn)
    with pytest.raises(UnknownVerifierError) as info:
        get("no-such-verifier")
    assert "reg_test_c" in str(info.value) and "valid names" in str(info.value)


def test_config_must_be_a_frozen_dataclass() -> None:
    @dataclass
    class Mutable:
        x: int = 1

    with pytest.raises(TypeError, match="frozen"):
        register("reg_test_d", config=Mutable, component="accuracy", version="1")


def test_options_become_a_hashable_frozen_config() -> None:
    cfg = config_from_options(
        Cfg, {"mode": "lenient", "tolerance": 1, "letters": ["A", "C"], "limit": 3}, verifier="x"
    )
    assert cfg == Cfg(mode="lenient", tolerance=1.0, letters=("A", "C"), limit=3)
    assert isinstance(cfg.tolerance, float)
    hash(cfg)
    assert pickle.loads(pickle.dumps(cfg)) == cfg


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"nope": 1}, "unknown option"),
        ({"tolerance": "small"}, "must be a number"),
        ({"flag": 1}, "must be a boolean"),
        ({"limit": 2.5}, "x.limit"),
        ({"letters": "AB"}, "must be a list"),
        ({"letters": [1]}, "must be a string"),
        ({"tolerance": True}, "must be a number"),  # a bool is not a number here
    ],
)
def test_bad_options_name_the_problem(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(VerifierInputError, match=fragment):
        config_from_options(Cfg, options, verifier="x")

"""Each adapter called exactly as its trainer calls it, against a live (fake) Referee over HTTP."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.trainer.fake_referee import FakeReferee
from trainer.adapters import slime, trl, verl

ROOT = Path(__file__).resolve().parents[2]
GOOD = "<think>6*7</think><answer>42</answer>"
BAD = "<think>6*7</think><answer>41</answer>"


# -- verl ----------------------------------------------------------------------------------------


def test_verl_compute_score_dict_has_fixed_keys(referee_env: FakeReferee) -> None:
    good = verl.compute_score("openai/gsm8k", GOOD, "42", extra_info={"index": 0})
    bad = verl.compute_score("lighteval/MATH", "no tags at all", "42")
    assert list(good) == list(bad) == list(verl.RESULT_KEYS)
    assert good["score"] == pytest.approx(1.1) and good["acc"] == 1.0 and good["pred"] == ""
    assert bad["score"] == 0.0 and bad["status"] == "wrong"


def test_verl_reward_kwargs_and_sandbox_url_are_accepted(referee_env: FakeReferee) -> None:
    out = verl.compute_score(
        "math_dapo",
        GOOD,
        "42",
        None,
        sandbox_fusion_url=None,
        referee_weights={"accuracy": 2.0, "format": 0.0},
    )
    assert out["score"] == pytest.approx(2.0)


def test_verl_batch_manager_shape(referee_env: FakeReferee) -> None:
    out = verl.compute_score_batch(
        data_sources=["openai/gsm8k", "numina_olympiads", "codecontests"],
        solution_strs=[GOOD, BAD, "```python\nprint(1)\n```"],
        ground_truths=["42", "42", json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]})],
        extra_infos=[{}, {}, {}],
    )
    assert [o["acc"] for o in out] == [1.0, 0.0, 1.0]
    assert verl.compute_score_batch(data_sources=[], solution_strs=[], ground_truths=[], extra_infos=[]) == []
    items = referee_env.app.state.seen
    assert len(items) == 1  # one request for the whole batch


def test_verl_prime_variant_is_positional_float(referee_env: FakeReferee) -> None:
    assert verl.compute_score_prime("aime2024", GOOD, "42", None) == pytest.approx(1.1)
    assert isinstance(verl.compute_score_prime("aime2024", BAD, "42", None), float)


def test_verl_async_variant(referee_env: FakeReferee) -> None:
    out = asyncio.run(verl.compute_score_async("math", GOOD, "42"))
    assert out["acc"] == 1.0


@pytest.mark.parametrize(
    ("data_source", "ground_truth", "field"),
    [
        ("openai/gsm8k", "#### 1,234", {"answer": "1234"}),
        ("HuggingFaceH4/MATH-500", "\\frac{1}{2}", {"answer": "\\frac{1}{2}"}),
        ("numina_cn_k12", "3", {"answer": "3"}),
        ("aime2025", ["7"], {"answer": "7"}),
        ("taco", '{"inputs": ["1"], "outputs": ["2"]}', {"tests": {"inputs": ["1"], "outputs": ["2"]}}),
        (
            "apps",
            {"inputs": ["1"], "outputs": ["2"], "fn_name": "f"},
            {"tests": {"inputs": ["1"], "outputs": ["2"], "fn_name": "f"}},
        ),
        ("my_private_set", {"inputs": [], "outputs": []}, {"tests": {"inputs": [], "outputs": []}}),
        ("my_private_set", "5", {"answer": "5"}),
    ],
)
def test_verl_routing_by_data_source(data_source: str, ground_truth: object, field: dict) -> None:
    item = verl.build_item("0", data_source, "x", ground_truth, None, {})
    assert {k: item[k] for k in field} == field


def test_verl_code_source_with_non_dict_ground_truth_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="code ground_truth"):
        verl.build_item("0", "codecontests", "x", "42", None, {})


def test_verl_file_loads_alone_without_the_project_on_sys_path(referee: FakeReferee, tmp_path: Path) -> None:
    # verl loads custom_reward_function.path with importlib: no `trainer` package, no `service`.
    # `-S` drops site-packages (where an editable install of this project would be found), so
    # only the standard library is there: the file must bootstrap its client by path, over urllib.
    script = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("custom_module", {str(ROOT / "trainer/adapters/verl.py")!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
assert "service" not in sys.modules and "verifiers" not in sys.modules and "trainer" not in sys.modules
print(mod.compute_score("openai/gsm8k", {GOOD!r}, "42")["acc"])
"""
    env = {**os.environ, "REFEREE_URL": referee.url, "PYTHONPATH": ""}
    out = subprocess.run(
        [sys.executable, "-S", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1.0"


# -- TRL / open-r1 ---------------------------------------------------------------------------------


def test_trl_string_completions(referee_env: FakeReferee) -> None:
    prompts = ["What is 6*7?", "What is 6*7?"]
    kwargs = {"solution": ["42", "42"], "trainer_state": object(), "log_extra": print, "log_metric": print}
    assert trl.accuracy(prompts, [GOOD, BAD], completion_ids=[[1], [2]], **kwargs) == [1.0, 0.0]
    assert trl.format(prompts, [GOOD, "nope"], completion_ids=None, **kwargs) == [1.0, 0.0]


def test_trl_conversational_completions(referee_env: FakeReferee) -> None:
    prompts = [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "6*7?"}]]
    completions = [[{"role": "assistant", "content": GOOD}]]
    assert trl.accuracy(prompts, completions, ground_truth=["42"]) == [1.0]
    seen_prompt = referee_env.app.state.seen[-1]
    assert seen_prompt[0] == "/score"


def test_trl_returns_none_where_the_reward_does_not_apply(referee_env: FakeReferee) -> None:
    assert trl.accuracy(["p", "p"], [GOOD, GOOD], solution=[None, "42"]) == [None, 1.0]
    assert trl.code(["p"], [GOOD]) == [None]  # no tests column
    assert trl.language(["p"], [GOOD]) == [None]


def test_trl_tag_count_partial_credit(referee_env: FakeReferee) -> None:
    assert trl.tag_count(["p"], ["<think>\nx\n</think>\n nothing else"]) == [0.5]
    assert trl.tag_count(["p"], ["<think>\nx\n</think>\n<answer>\n4\n</answer>"]) == [1.0]


def test_trl_code_from_open_r1_verification_info(referee_env: FakeReferee) -> None:
    info = {"language": "python", "test_cases": [{"input": "1\n", "output": "1\n"}]}
    assert trl.code(["p"], ["```python\nprint(input())\n```"], verification_info=[info]) == [1.0]


def test_trl_accuracy_and_format_share_one_request(referee_env: FakeReferee) -> None:
    kw = {"solution": ["42"]}
    trl.accuracy(["shared?"], [GOOD + " "], **kw)
    trl.format(["shared?"], [GOOD + " "], **kw)
    assert len(referee_env.app.state.seen) == 1


def test_trl_async_functions(referee_env: FakeReferee) -> None:
    async def main() -> list[list[float | None]]:
        return await asyncio.gather(
            trl.accuracy_async(["p"], [GOOD], solution=["42"]),
            trl.format_async(["p"], [BAD], solution=["41"]),
            trl.tag_count_async(["p"], ["\n<answer>\n"]),
        )

    assert asyncio.run(main()) == [[1.0], [1.0], [0.25]]
    assert trl.accuracy_async.__name__ == "accuracy_reward"


# -- OpenRLHF file mode ------------------------------------------------------------------------------


def _load_by_path(path: Path, name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_openrlhf_reward_func_file_mode(referee_env: FakeReferee) -> None:
    mod = _load_by_path(ROOT / "trainer/adapters/openrlhf.py", "reward_func_module")
    prompt = "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n"
    out = mod.reward_func([prompt + GOOD + "<|im_end|>", prompt + BAD], [prompt, prompt], ["42", "42"])  # type: ignore[attr-defined]
    assert out["rewards"].tolist() == pytest.approx([1.1, 0.1])
    assert out["scores"].tolist() == [1.0, 0.0]
    assert out["extra_logs"]["accuracy"].tolist() == [1.0, 0.0]
    empty = mod.reward_func([], [], [])  # type: ignore[attr-defined]
    assert empty["rewards"].numel() == 0 and empty["extra_logs"] == {}


# -- slime ---------------------------------------------------------------------------------------------


def test_slime_custom_rm(referee_env: FakeReferee) -> None:
    s = SimpleNamespace(prompt=[{"role": "user", "content": "6*7?"}], response=GOOD, label="42")
    assert asyncio.run(slime.reward(SimpleNamespace(), s)) == pytest.approx(1.1)
    group = [s, SimpleNamespace(prompt="6*7?", response=BAD, label="42")]
    assert asyncio.run(slime.group_reward(SimpleNamespace(), group)) == pytest.approx([1.1, 0.1])

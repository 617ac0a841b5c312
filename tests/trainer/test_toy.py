"""The toy policy, tokenizer and task rules, and the toy GRPO run (slow)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tests.trainer.fake_referee import FakeReferee
from trainer.client import ClientConfig, RefereeClient
from trainer.engine import GRPOOptions, HttpEngine
from trainer.loop import (
    DEFAULT_WEIGHTS,
    HttpScorer,
    LocalToyScorer,
    ToyPolicy,
    TrainConfig,
    default_score_options,
    sample,
    token_logprobs,
    train,
)
from trainer.toy import ArithmeticTask, CharTokenizer, Problem, toy_judgement

GOOD = "<think>\n3+4\n</think>\n\n<answer>\n7\n</answer>"


def test_tokenizer_round_trip_and_atomic_tags() -> None:
    tok = CharTokenizer()
    ids = tok.encode(GOOD)
    assert len(ids) == 4 + 3 + 1  # four tag tokens, "3+4", "7"
    assert tok.decode(ids) == GOOD
    assert tok.decode([*tok.encode("12"), tok.eos_id, *tok.encode("99")]) == "12"
    with pytest.raises(ValueError, match="not in the toy vocabulary"):
        tok.encode("x")


@pytest.mark.parametrize(
    ("completion", "acc", "fmt", "strict"),
    [
        (GOOD, 1.0, 1.0, 1.0),
        (GOOD.replace("7", "8"), 0.0, 1.0, 1.0),
        ("<think>\n\n</think>\n\n<answer>\n7\n</answer>", 1.0, 0.75, 0.0),  # empty think
        ("\n<answer>\n7\n</answer><think>\n1\n</think>\n", 1.0, 0.75, 0.0),  # answer before think
        ("<think>\n1\n</think>\n", 0.0, 0.5, 0.0),
        ("7", 0.0, 0.0, 0.0),
        (GOOD + "9", 1.0, 0.75, 0.0),  # text after the answer
    ],
)
def test_toy_judgement(completion: str, acc: float, fmt: float, strict: float) -> None:
    j = toy_judgement(completion, "7")
    assert (j["accuracy"], j["format"], j["strict"]) == (acc, fmt, strict)


def test_task_answers_are_right() -> None:
    rng = random.Random(0)
    for _ in range(50):
        p = ArithmeticTask(9, "+-").sample(rng)
        a, op, b = p.prompt[0], p.prompt[1], p.prompt[2]
        assert int(p.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b)) >= 0


def test_sampling_mask_and_logprobs() -> None:
    torch.manual_seed(0)
    policy = ToyPolicy(TrainConfig(), torch.device("cpu"))
    ids = policy.encode_prompts(["1+2="] * 8)
    completion, mask = sample(policy, ids, 7, 1.0)
    assert completion.shape == mask.shape and completion.shape[0] == 8
    for row, m in zip(completion.tolist(), mask.tolist(), strict=True):
        n = sum(m)
        assert all(m[:n]) and not any(m[n:])  # the mask is a prefix
        assert policy.eos_id not in row[: n - 1]  # nothing after <eos> is counted
    lp = token_logprobs(policy, ids, completion)
    assert lp.shape == completion.shape and bool((lp <= 0).all())


def test_local_scorer_weights() -> None:
    [j] = LocalToyScorer(0.5)([Problem("3+4=", "7")], [GOOD])
    assert (j.reward, j.accuracy, j.format_ok) == (1.5, 1.0, 1.0)
    # the prompt opened <think>: the completion continues inside the block
    [j] = LocalToyScorer(0.5, think_in_prompt=True)([Problem("3+4=", "7")], [GOOD.removeprefix("<think>\n")])
    assert (j.reward, j.accuracy, j.format_ok) == (1.5, 1.0, 1.0)
    [j] = LocalToyScorer(0.5, think_in_prompt=True)([Problem("3+4=", "7")], [GOOD])  # nested <think>
    assert j.format_ok == 0.0


def test_short_run_writes_log_and_plot(referee: FakeReferee, tmp_path: Path) -> None:
    client = RefereeClient(ClientConfig(base_url=referee.url))
    cfg = TrainConfig(steps=3, prompts_per_step=4, group_size=4, out_dir=str(tmp_path))
    history = train(cfg, scorer=HttpScorer(client), engine=HttpEngine(client, cfg.options))
    assert [h.step for h in history] == [0, 1, 2]
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_toy_grpo_run_reward_rises_and_format_appears(referee: FakeReferee, tmp_path: Path) -> None:
    """The acceptance run: random init, everything over HTTP (POST /score, /grpo/advantages, /grpo/loss)."""
    client = RefereeClient(ClientConfig(base_url=referee.url))
    cfg = TrainConfig(steps=250, seed=0, out_dir=str(tmp_path), options=GRPOOptions())
    scorer = HttpScorer(client, DEFAULT_WEIGHTS, default_score_options(cfg))
    history = train(cfg, scorer=scorer, engine=HttpEngine(client, cfg.options))
    first = sum(h.reward for h in history[:25]) / 25
    last = sum(h.reward for h in history[-25:]) / 25
    assert last > first + 0.3, (first, last)
    assert max(h.format for h in history[-50:]) > 0.5  # strict R1-Zero format compliance appeared
    assert history[0].format < 0.05
    assert (tmp_path / "curves.png").exists()


def test_hugging_face_causal_lm_from_a_local_path(referee: FakeReferee, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=300, n_positions=128)
    model_dir = tmp_path / "tiny-gpt2"
    transformers.GPT2LMHeadModel(config).save_pretrained(model_dir)
    # a character-level tokenizer built offline (BPE without merges): nothing is downloaded
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"<eos>": 0, **{chr(i): i for i in range(1, 127)}}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer(tokenizers.models.BPE(vocab, [], unk_token="<eos>")),
        eos_token="<eos>",
    )
    tok.save_pretrained(model_dir)
    client = RefereeClient(ClientConfig(base_url=referee.url))
    cfg = TrainConfig(
        steps=2,
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=4,
        model_path=str(model_dir),
        out_dir=str(tmp_path / "run"),
    )
    history = train(cfg, scorer=HttpScorer(client), engine=HttpEngine(client, cfg.options))
    assert len(history) == 2

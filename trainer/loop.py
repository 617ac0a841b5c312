"""The GRPO worker loop: sample G completions per prompt, score them with ``POST /score``, get
advantages and the loss gradient from the engine, ``logp.backward(grad)``, step the optimizer.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from trainer.engine import Engine, GRPOOptions, default_engine
from trainer.toy import ArithmeticTask, CharTokenizer, Problem, TinyCausalLM, toy_judgement

log = logging.getLogger("referee.trainer")

THINK_OPEN = "<think>\n"
DEFAULT_WEIGHTS = {"accuracy": 1.0, "format": 0.5}


def default_score_options(cfg: TrainConfig) -> dict[str, Any]:
    """``/score`` item options for the toy task: open-r1 tag_count partial credit for the format
    (a gradient towards the template from a random policy), and ``think_in_prompt`` when the prompt
    opened the think block.
    """
    return {"format": {"tag_count": True, "think_in_prompt": cfg.think_in_prompt, "mode": cfg.format_mode}}


@dataclass(frozen=True)
class Judged:
    """What the loop needs from one scored completion."""

    reward: float
    accuracy: float
    format_ok: float


class Scorer(Protocol):
    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Judged]: ...


class HttpScorer:
    """Scores with ``POST /score``: item ``answer`` = the gold, request ``weights`` as configured."""

    def __init__(
        self,
        client: Any,
        weights: dict[str, float] | None = None,
        options: dict[str, Any] | None = None,
        verifier: str | None = None,
    ) -> None:
        self.client = client
        self.weights = weights
        self.options = options
        self.verifier = verifier

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Judged]:
        items: list[dict[str, Any]] = []
        for i, (p, c) in enumerate(zip(problems, completions, strict=True)):
            item: dict[str, Any] = {"id": str(i), "completion": c, "answer": p.answer}
            if self.options:
                item["options"] = self.options
            if self.verifier:
                item["verifier"] = self.verifier
            items.append(item)
        out = []
        for r in self.client.score(items, self.weights):
            comps = r.get("components") or {}
            acc, fmt = comps.get("accuracy"), comps.get("format")
            out.append(Judged(float(r["reward"]), float(acc or 0.0), 1.0 if (fmt or 0.0) >= 1.0 else 0.0))
        return out


class LocalToyScorer:
    """Offline scorer of the toy task: the service's rules (accuracy + weighted tag_count format)."""

    def __init__(
        self, format_weight: float = 0.5, think_in_prompt: bool = False, mode: str = "strict"
    ) -> None:
        self.format_weight = format_weight
        self.think_in_prompt = think_in_prompt
        self.mode = mode

    def __call__(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[Judged]:
        out = []
        for p, c in zip(problems, completions, strict=True):
            j = toy_judgement(c, p.answer, self.think_in_prompt, self.mode)
            out.append(Judged(j["accuracy"] + self.format_weight * j["format"], j["accuracy"], j["strict"]))
        return out


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (defaults: the toy task, a few minutes on 2 CPU cores)."""

    steps: int = 200
    prompts_per_step: int = 16
    group_size: int = 8
    max_new_tokens: int = 7
    lr: float = 2e-3
    num_iterations: int = 2  # optimizer steps per sampled batch (> 1 makes the clip ratio meaningful)
    temperature: float = 1.0
    seed: int = 0
    d_model: int = 64
    n_layers: int = 2
    max_operand: int = 4
    options: GRPOOptions = field(default_factory=GRPOOptions)
    model_path: str | None = None  # a local Hugging Face causal LM instead of the toy policy
    device: str | None = None
    out_dir: str = "runs/toy"
    # R1-Zero / TinyZero style prompt ending with "<think>" (scored with the format verifier's
    # think_in_prompt option). Off by default: measured, the toy then learns the sums first and the
    # template less often (docs/trainers.md).
    think_in_prompt: bool = False
    format_mode: str = "strict"  # the format verifier's mode: strict | lenient
    entropy_coeff: float = 0.02  # verl actor.entropy_coeff: keeps groups diverse (0 = off)
    cpu_threads: int | None = 1  # torch.set_num_threads on CPU (None: leave torch's default)


# -- policies -----------------------------------------------------------------------------------


class ToyPolicy:
    """The tiny character-level transformer with its tokenizer."""

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.tok = CharTokenizer()
        self.model = TinyCausalLM(
            self.tok.vocab_size, cfg.d_model, cfg.n_layers, max_len=8 + cfg.max_new_tokens
        ).to(device)
        self.device = device
        self.eos_id, self.pad_id = self.tok.eos_id, self.tok.pad_id

    def encode_prompts(self, prompts: Sequence[str], suffix: str = "") -> torch.Tensor:
        rows = [[self.tok.bos_id, *self.tok.encode(p + suffix)] for p in prompts]
        if len({len(r) for r in rows}) != 1:
            raise ValueError("the toy policy needs prompts of equal length")
        return torch.tensor(rows, device=self.device)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids))


class HFPolicy:
    """A Hugging Face causal LM from a local path (``transformers`` imported lazily)."""

    def __init__(self, path: str, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, torch_dtype=dtype).to(
            device
        )
        self.device = device
        self.eos_id, self.pad_id = self.tok.eos_token_id, self.tok.pad_token_id

    def encode_prompts(self, prompts: Sequence[str], suffix: str = "") -> torch.Tensor:
        text = [
            f"Compute {p[:-1]}. Reply as <think>reasoning</think><answer>number</answer>.\n{suffix}"
            for p in prompts
        ]
        return self.tok(text, return_tensors="pt", padding=True).input_ids.to(self.device)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        # Prompts are left-padded: padding is every pad token before a row's first real token (a
        # prompt never starts with pad/eos). Pads after <eos> in a completion never influence the
        # tokens before them (causal attention), so they need no mask.
        attn = ((ids != self.pad_id).long().cumsum(1) > 0).long()
        positions = (attn.cumsum(1) - 1).clamp(min=0)
        return self.model(input_ids=ids, attention_mask=attn, position_ids=positions).logits

    def decode(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return str(self.tok.decode(ids, skip_special_tokens=True))


# -- the loop -------------------------------------------------------------------------------------


@torch.no_grad()
def sample(
    policy: Any, prompt_ids: torch.Tensor, max_new: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Autoregressive sampling; returns (completion ids (N, T), mask (N, T)), the mask covering the
    generated tokens up to and including ``<eos>``.
    """
    seq = prompt_ids
    n = seq.shape[0]
    done = torch.zeros(n, dtype=torch.bool, device=seq.device)
    out, mask = [], []
    for _ in range(max_new):
        logits = policy.logits(seq)[:, -1].float() / temperature
        nxt = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, policy.pad_id), nxt)
        mask.append(~done)
        out.append(nxt)
        done = done | (nxt == policy.eos_id)
        seq = torch.cat([seq, nxt[:, None]], 1)
        if bool(done.all()):
            break
    return torch.stack(out, 1), torch.stack(mask, 1)


def token_logprobs(policy: Any, prompt_ids: torch.Tensor, completion: torch.Tensor) -> torch.Tensor:
    """Per-token log-probabilities of ``completion`` given the prompt (N, T), float32."""
    return token_logprobs_and_entropy(policy, prompt_ids, completion)[0]


def token_logprobs_and_entropy(
    policy: Any, prompt_ids: torch.Tensor, completion: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probabilities of ``completion`` and the policy's entropy at each position."""
    ids = torch.cat([prompt_ids, completion], 1)
    logits = policy.logits(ids[:, :-1])[:, prompt_ids.shape[1] - 1 :].float()
    logp_all = F.log_softmax(logits, -1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return torch.gather(logp_all, 2, completion[:, :, None]).squeeze(2), entropy


def pick_device(name: str | None) -> tuple[torch.device, torch.dtype]:
    """``cuda`` with bf16 autocast when a GPU is present, else CPU fp32."""
    if name:
        dev = torch.device(name)
    else:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)


@dataclass(frozen=True)
class StepLog:
    step: int
    reward: float
    accuracy: float
    format: float
    kl: float
    clip_ratio: float
    response_length: float
    loss: float
    entropy: float
    seconds: float


def grpo_step(
    policy: Any,
    ref_policy: Any | None,
    optimizer: torch.optim.Optimizer,
    engine: Engine,
    scorer: Scorer,
    problems: Sequence[Problem],
    cfg: TrainConfig,
    autocast: Callable[[], Any],
) -> tuple[dict[str, float], list[str]]:
    """One GRPO step (sample → score → advantages → ``num_iterations`` × loss/backward/step)."""
    g = cfg.group_size
    expanded = [p for p in problems for _ in range(g)]
    suffix = THINK_OPEN if cfg.think_in_prompt else ""
    prompt_ids = policy.encode_prompts([p.prompt for p in expanded], suffix)
    with autocast():
        completion, mask = sample(policy, prompt_ids, cfg.max_new_tokens, cfg.temperature)
    texts = [policy.decode(row.tolist()) for row in completion]
    judged = scorer(expanded, texts)
    adv = engine.advantages([j.reward for j in judged], g).to(prompt_ids.device)
    with torch.no_grad(), autocast():
        old = token_logprobs(policy, prompt_ids, completion)
        ref = token_logprobs(ref_policy, prompt_ids, completion) if ref_policy is not None else None
    kl = clip = loss_value = 0.0
    entropy_value = 0.0
    m = mask.float()
    for _ in range(cfg.num_iterations):
        with autocast():
            logp, entropy = token_logprobs_and_entropy(policy, prompt_ids, completion)
        out = engine.loss(logp, old, ref, adv.float(), mask)
        optimizer.zero_grad(set_to_none=True)
        mean_entropy = (entropy * m).sum() / m.sum().clamp(min=1)
        entropy_value = float(mean_entropy.detach())
        # The engine returned d loss / d logp: chain it into the policy.
        logp.backward(out.grad, retain_graph=cfg.entropy_coeff > 0)
        if cfg.entropy_coeff > 0:  # verl's actor entropy_coeff: a bonus kept on the trainer side
            (-cfg.entropy_coeff * mean_entropy).backward()
        optimizer.step()
        kl, loss_value = out.metrics.get("kl", 0.0), out.loss
        clip = max(clip, out.metrics.get("clip_ratio/region_mean", 0.0))
    n = float(len(judged))
    return {
        "reward": sum(j.reward for j in judged) / n,
        "accuracy": sum(j.accuracy for j in judged) / n,
        "format": sum(j.format_ok for j in judged) / n,
        "kl": kl,
        "clip_ratio": clip,
        "response_length": float(mask.sum()) / n,
        "loss": loss_value,
        "entropy": entropy_value,
    }, texts


def train(
    cfg: TrainConfig,
    scorer: Scorer | None = None,
    engine: Engine | None = None,
    on_step: Callable[[StepLog], None] | None = None,
) -> list[StepLog]:
    """Run GRPO on the toy arithmetic task (or a local HF model); write ``log.jsonl`` and ``curves.png``.

    Args:
        cfg: the run's hyper-parameters.
        scorer: how completions are judged (default: ``POST /score`` at ``REFEREE_URL``).
        engine: where the GRPO maths runs (default: ``service.grpo`` in process, else ``LocalEngine``).
        on_step: called with every step's log line.

    Returns:
        The per-step logs.
    """
    if cfg.cpu_threads and (cfg.device in (None, "cpu")) and not torch.cuda.is_available():
        # A tiny model gains nothing from intra-op threads; on a shared 2-core box they cost 8x.
        torch.set_num_threads(cfg.cpu_threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device, dtype = pick_device(cfg.device)
    if scorer is None:
        from trainer.client import RefereeClient

        scorer = HttpScorer(RefereeClient(), DEFAULT_WEIGHTS, default_score_options(cfg))
    engine = engine or default_engine(cfg.options)
    policy: Any = HFPolicy(cfg.model_path, device, dtype) if cfg.model_path else ToyPolicy(cfg, device)
    ref_policy = None
    if cfg.options.beta != 0.0:
        ref_policy = copy.copy(policy)
        ref_policy.model = copy.deepcopy(policy.model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=cfg.lr, weight_decay=0.0)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda")

    task = ArithmeticTask(max_operand=cfg.max_operand)
    rng = random.Random(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history: list[StepLog] = []
    with (out_dir / "log.jsonl").open("w") as fh:
        for step in range(cfg.steps):
            t0 = time.perf_counter()
            problems = [task.sample(rng) for _ in range(cfg.prompts_per_step)]
            stats, texts = grpo_step(policy, ref_policy, optimizer, engine, scorer, problems, cfg, autocast)
            entry = StepLog(step=step, seconds=time.perf_counter() - t0, **stats)
            history.append(entry)
            fh.write(json.dumps({**asdict(entry), "sample": texts[0]}) + "\n")
            fh.flush()
            if on_step:
                on_step(entry)
    plot(history, out_dir / "curves.png")
    return history


def plot(history: Sequence[StepLog], path: Path) -> Path:
    """Write the reward / accuracy / format / KL / clip ratio / entropy / length / loss curves as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h.step for h in history]
    keys = ("reward", "accuracy", "format", "kl", "clip_ratio", "entropy", "response_length", "loss")
    fig, axes = plt.subplots(2, 4, figsize=(15, 6), constrained_layout=True)
    for ax, key in zip(axes.flat, keys, strict=True):
        values = [getattr(h, key) for h in history]
        ax.plot(steps, values, lw=0.8, alpha=0.5)
        k = max(1, len(values) // 20)
        smooth = [
            sum(values[max(0, i - k + 1) : i + 1]) / len(values[max(0, i - k + 1) : i + 1])
            for i in range(len(values))
        ]
        ax.plot(steps, smooth, lw=2)
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.suptitle("Referee GRPO toy run")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

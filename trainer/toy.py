"""The built-in toy policy: a character tokenizer, a tiny causal transformer, and a verifiable
arithmetic task whose completions are judged by Referee (``<think>…</think><answer>…</answer>``).

The policy starts from random weights (nothing is downloaded). The R1-Zero tags are single tokens
of the vocabulary, so a random policy emits them by chance often enough for a format reward to have
variance within a group; that is what lets GRPO learn the template first and then the sums.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import torch
from torch import nn

SPECIAL = ("<pad>", "<bos>", "<eos>")
# The tags with open-r1's tag_count newlines, so that the service's ``tag_count`` partial credit
# (0.25 for each of these strings found once) applies to what the toy policy writes.
TAGS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
CHARS = tuple("0123456789+-=")


class CharTokenizer:
    """Characters plus the four R1-Zero tags (with their newlines) as atomic tokens."""

    def __init__(self) -> None:
        self.itos: tuple[str, ...] = SPECIAL + TAGS + CHARS
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = (self.stoi[s] for s in SPECIAL)
        self._split = re.compile("|".join(re.escape(t) for t in TAGS) + "|.", re.S)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Text → ids (tags first, then characters); unknown characters raise ``ValueError``."""
        out = []
        for piece in self._split.findall(text):
            if piece not in self.stoi:
                raise ValueError(f"character {piece!r} is not in the toy vocabulary")
            out.append(self.stoi[piece])
        return out

    def decode(self, ids: list[int]) -> str:
        """Ids → text, stopping at ``<eos>`` and dropping pad/bos."""
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            out.append(self.itos[i])
        return "".join(out)


class TinyCausalLM(nn.Module):
    """A small pre-norm transformer decoder (learned positions, causal self-attention)."""

    def __init__(
        self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4, max_len: int = 32
    ):
        super().__init__()
        self.max_len = max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``ids`` (B, T) → logits (B, T, V)."""
        t = ids.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len {self.max_len}")
        x = self.tok(ids) + self.pos(torch.arange(t, device=ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device, dtype=x.dtype)
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))


@dataclass(frozen=True)
class Problem:
    """One task instance: the prompt text and the gold answer."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class ArithmeticTask:
    """``a+b=`` with single-digit operands (all prompts have the same length: no padding needed).

    Attributes:
        max_operand: largest operand (9 gives sums 0..18).
        ops: operators to draw from (``+`` and/or ``-``; subtraction keeps results non-negative).
    """

    max_operand: int = 9
    ops: str = "+"

    def sample(self, rng: random.Random) -> Problem:
        a, b = rng.randint(0, self.max_operand), rng.randint(0, self.max_operand)
        op = rng.choice(self.ops)
        if op == "-" and b > a:
            a, b = b, a
        return Problem(f"{a}{op}{b}=", str(a + b if op == "+" else a - b))


STRICT_TEMPLATE = re.compile(
    r"^\s*<think>(?=\s*[^\s<])[^<]*</think>\s*<answer>(?=\s*[^\s<])([^<]*)</answer>\s*$"
)
# Lenient mode: any tag-free text before, between and after, still exactly one ordered pair.
LENIENT_TEMPLATE = re.compile(
    r"^[^<]*<think>(?=\s*[^\s<])[^<]*</think>[^<]*<answer>(?=\s*[^\s<])([^<]*)</answer>[^<]*$"
)
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)


def toy_judgement(
    completion: str, answer: str, think_in_prompt: bool = False, mode: str = "strict"
) -> dict[str, float]:
    """The toy task's reward parts, computed locally with the service's rules (offline runs, tests).

    ``accuracy``: the last ``<answer>`` block equals the gold. ``format``: 1.0 for the strict R1-Zero
    template, else open-r1's tag_count partial credit capped at 0.75 (the service's
    ``{"format": {"tag_count": true}}``). ``strict``: the template alone (0/1). With
    ``think_in_prompt`` the prompt opened the think block, so ``<think>`` is prepended before judging
    (as the service's ``think_in_prompt`` option does); ``mode`` is the format verifier's ``strict`` /
    ``lenient``.
    """
    if think_in_prompt:
        completion = "<think>" + completion
    found = ANSWER_TAG.findall(completion)
    acc = 1.0 if found and found[-1].strip() == answer else 0.0
    template = STRICT_TEMPLATE if mode == "strict" else LENIENT_TEMPLATE
    strict = 1.0 if template.match(completion) else 0.0
    tags = sum(0.25 for t in TAGS if completion.count(t) == 1)
    return {"accuracy": acc, "format": strict or min(tags, 0.75), "strict": strict, "tag_count": tags}

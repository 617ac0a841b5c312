"""``python -m trainer`` / ``referee train``: run the GRPO worker against a Referee service.

The lead's CLI wires it as::

    t = sub.add_parser("train", help="GRPO toy run / trainer worker")
    trainer.cli.add_arguments(t)
    ...
    if args.command == "train":
        return trainer.cli.run(args)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from trainer.engine import Engine, GRPOOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the ``train`` command."""
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--prompts-per-step", type=int, default=16)
    p.add_argument("--group-size", type=int, default=8, help="G completions per prompt (TRL num_generations)")
    p.add_argument("--max-new-tokens", type=int, default=7)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--num-iterations", type=int, default=2, help="optimizer steps per sampled batch (μ)")
    p.add_argument("--loss-type", default="grpo", help="TRL loss_type (grpo, bnpo, dr_grpo, dapo, ...)")
    p.add_argument("--beta", type=float, default=0.01, help="KL coefficient (k3)")
    p.add_argument("--epsilon", type=float, default=0.2)
    p.add_argument("--entropy-coeff", type=float, default=0.02, help="entropy bonus (verl entropy_coeff)")
    p.add_argument("--epsilon-high", type=float, default=None)
    p.add_argument("--max-operand", type=int, default=4, help="toy task: a+b with a, b in 0..N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--think-in-prompt",
        action="store_true",
        help="the prompt ends with <think> (R1-Zero / TinyZero style)",
    )
    p.add_argument("--format-mode", choices=("strict", "lenient"), default=None, help="format verifier mode")
    p.add_argument(
        "--model-path", default=None, help="a local Hugging Face causal LM instead of the toy policy"
    )
    p.add_argument("--device", default=None, help="default: cuda (bf16) when available, else cpu")
    p.add_argument("--out-dir", default="runs/toy", help="log.jsonl and curves.png go here")
    p.add_argument("--url", default=None, help="Referee URL (default: REFEREE_URL or http://127.0.0.1:8000)")
    p.add_argument(
        "--scorer",
        choices=("http", "local"),
        default="http",
        help="http: POST /score; local: offline toy rules",
    )
    p.add_argument(
        "--engine",
        choices=("http", "inprocess", "local"),
        default="http",
        help="http: POST /grpo/*; inprocess: service.grpo; local: autograd fallback",
    )
    p.add_argument(
        "--weights", type=json.loads, default=None, help='/score weights, e.g. {"accuracy":1,"format":0.5}'
    )
    p.add_argument("--score-options", type=json.loads, default=None, help="per-item /score options (JSON)")
    p.add_argument("--verifier", default=None, help="per-item /score verifier name")


def run(args: argparse.Namespace) -> int:
    """Run a training job from parsed arguments; prints one line per step."""
    from trainer.client import ClientConfig, RefereeClient
    from trainer.engine import HttpEngine, InProcessEngine, LocalEngine
    from trainer.loop import (
        HttpScorer,
        LocalToyScorer,
        StepLog,
        TrainConfig,
        train,
    )

    options = GRPOOptions(
        loss_type=args.loss_type, beta=args.beta, epsilon=args.epsilon, epsilon_high=args.epsilon_high
    )
    cfg = TrainConfig(
        steps=args.steps,
        prompts_per_step=args.prompts_per_step,
        group_size=args.group_size,
        max_new_tokens=args.max_new_tokens,
        lr=args.lr,
        num_iterations=args.num_iterations,
        entropy_coeff=args.entropy_coeff,
        think_in_prompt=args.think_in_prompt,
        **({"format_mode": args.format_mode} if args.format_mode else {}),
        seed=args.seed,
        max_operand=args.max_operand,
        options=options,
        model_path=args.model_path,
        device=args.device,
        out_dir=args.out_dir,
    )
    client = RefereeClient(ClientConfig.from_env(base_url=args.url))
    scorer = (
        HttpScorer(
            client, args.weights or {"accuracy": 1.0, "format": 0.5}, args.score_options, args.verifier
        )
        if args.scorer == "http"
        else LocalToyScorer()
    )
    engine: Engine
    if args.engine == "http":
        engine = HttpEngine(client, options)
    elif args.engine == "inprocess":
        engine = InProcessEngine(options)
    else:
        engine = LocalEngine(options)

    def show(e: StepLog) -> None:
        print(
            f"step {e.step:4d}  reward {e.reward:.3f}  acc {e.accuracy:.3f}  format {e.format:.3f}  "
            f"kl {e.kl:.4f}  clip {e.clip_ratio:.3f}  len {e.response_length:.1f}  {e.seconds:.2f}s",
            flush=True,
        )

    history = train(cfg, scorer=scorer, engine=engine, on_step=show)
    client.close()
    k = max(1, len(history) // 10)
    first = sum(h.reward for h in history[:k]) / k
    last = sum(h.reward for h in history[-k:]) / k
    print(
        f"mean reward: first {k} steps {first:.3f} → last {k} steps {last:.3f}; plot: {cfg.out_dir}/curves.png"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="GRPO trainer worker for Referee.")
    add_arguments(parser)
    return run(parser.parse_args(argv))

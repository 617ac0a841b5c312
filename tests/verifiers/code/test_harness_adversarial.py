"""Hostile candidates that try to fake passing tests. Every one must score 0; honest ones score 1.

The tests run a function ``f(x) = 2x + 1``. Each trick returns a wrong value (or none) and tries
to make the harness believe otherwise. They run against the real bubblewrap sandbox when it is
available, else against the unsandboxed development runner (tricks that only the sandbox can stop
are skipped there).
"""

from __future__ import annotations

import textwrap

import pytest

from verifiers.code import CodeConfig, verify_code

ASSERT_CHECK = {
    "assert": textwrap.dedent(
        """
        import math

        def check(candidate):
            assert candidate(2) == 5
            import fractions  # a module the judge imports only now: planted copies must not load
            assert candidate(10) == 21
            assert abs(candidate(0.5) - 2.0) < 1e-9
            assert math.isclose(candidate(1.5), 4.0)
            assert candidate(3) != 0 and candidate(3) > 6
        """
    ),
    "entry_point": "f",
}
ASSERT_BARE = {"assert": ["assert f(2) == 5", "assert f(10) == 21", "assert abs(f(0.5) - 2.0) < 1e-9"]}
CALLS = {"fn_name": "f", "cases": [{"args": [2], "expected": 5}, {"args": [10], "expected": 21}]}
VERL_CALLS = {"inputs": ["2", "10"], "outputs": ["5", "21"], "fn_name": "f"}
SUITES = {"check": ASSERT_CHECK, "bare": ASSERT_BARE, "calls": CALLS, "verl": VERL_CALLS}

HONEST = "def f(x):\n    return 2 * x + 1\n"

# name -> (candidate program, needs the real sandbox to be stopped)
TRICKS: dict[str, tuple[str, bool]] = {
    "sys_exit_at_import": ("import sys\ndef f(x):\n    return 0\nsys.exit(0)\n", False),
    "os_exit_at_import": ("import os\ndef f(x):\n    return 0\nos._exit(0)\n", False),
    "sys_exit_in_call": ("import sys\ndef f(x):\n    sys.exit(0)\n", False),
    "os_exit_in_call": ("import os\ndef f(x):\n    os._exit(0)\n", False),
    "raise_systemexit_in_call": ("def f(x):\n    raise SystemExit(0)\n", False),
    "atexit_rewrite": (
        "import atexit, os\n"
        "def forge():\n"
        "    print('passed')\n"
        '    os.write(1, b\'{"test": 0, "done": true}\\n{"finished": true}\\n\')\n'
        "atexit.register(forge)\n"
        "def f(x):\n    return 0\n",
        False,
    ),
    "always_equal_object": (
        "class A:\n"
        "    def __eq__(self, o): return True\n"
        "    def __ne__(self, o): return False\n"
        "    def __lt__(self, o): return True\n"
        "    def __gt__(self, o): return True\n"
        "    def __sub__(self, o): return self\n"
        "    def __rsub__(self, o): return self\n"
        "    def __abs__(self): return 0\n"
        "    def __float__(self): return 0.0\n"
        "    def __bool__(self): return True\n"
        "    __hash__ = object.__hash__\n"
        "def f(x):\n    return A()\n",
        False,
    ),
    "int_subclass_eq": (
        "class I(int):\n"
        "    def __eq__(self, o): return True\n"
        "    def __ne__(self, o): return False\n"
        "    __hash__ = int.__hash__\n"
        "class F(float):\n"
        "    def __eq__(self, o): return True\n"
        "    def __sub__(self, o): return 0.0\n"
        "    def __gt__(self, o): return True\n"
        "def f(x):\n    return F(0.0) if isinstance(x, float) else I(0)\n",
        False,
    ),
    "class_spoof": (
        "class Fake:\n"
        "    __class__ = int\n"
        "    def __eq__(self, o): return True\n"
        "def f(x):\n    return Fake()\n",
        False,
    ),
    "patched_builtins": (
        "import builtins\n"
        "builtins.abs = lambda x: 0\n"
        "builtins.isinstance = lambda *a: True\n"
        "builtins.AssertionError = type('Nope', (Exception,), {})\n"
        "def f(x):\n    builtins.abs = lambda x: 0\n    return 0\n",
        False,
    ),
    "patched_math": (
        "import math\n"
        "math.isclose = lambda *a, **k: True\n"
        "def f(x):\n    math.isclose = lambda *a, **k: True\n    return 0\n",
        False,
    ),
    "caller_frame_and_gc": (
        "import gc, sys\n"
        "def f(x):\n"
        "    fr = sys._getframe(1)\n"
        "    while fr is not None:\n"
        "        for k, v in fr.f_locals.items():\n"
        "            if k in ('expected', 'want', 'case') and v is not None:\n"
        "                return v\n"
        "        fr = fr.f_back\n"
        "    for o in gc.get_objects():\n"
        "        if isinstance(o, dict) and 'expected' in o:\n"
        "            return o['expected']\n"
        "    return 0\n",
        False,
    ),
    "read_test_files_and_proc": (
        "import os, re\n"
        "found = {}\n"
        "def scan(text):\n"
        "    for a, b in re.findall(r'(?:candidate|f)\\((\\d+)\\) == (\\d+)', text):\n"
        "        found[int(a)] = int(b)\n"
        '    for a, b in re.findall(r\'"args": \\[(\\d+)\\], "expected": (\\d+)\', text):\n'
        "        found[int(a)] = int(b)\n"
        "paths = []\n"
        "for root in ('.', '..'):\n"
        "    try:\n"
        "        paths += [os.path.join(root, n) for n in os.listdir(root)]\n"
        "    except OSError:\n"
        "        pass\n"
        "pp = '/proc/%d' % os.getppid()\n"
        "paths += [pp + '/cmdline', pp + '/environ']\n"
        "try:\n"
        "    paths += [pp + '/fd/' + n for n in os.listdir(pp + '/fd')]\n"
        "except OSError:\n"
        "    pass\n"
        "for p in paths:\n"
        "    try:\n"
        "        with open(p, 'rb') as fh:\n"
        "            scan(fh.read(1 << 20).decode('utf-8', 'replace'))\n"
        "    except OSError:\n"
        "        pass\n"
        "def f(x):\n    return found.get(x, 0)\n",
        False,
    ),
    "read_stdin": (
        "import re, sys\n"
        "data = sys.stdin.read()\n"
        "m = {int(a): int(b) for a, b in re.findall(r'\\((\\d+)\\) == (\\d+)', data)}\n"
        "def f(x):\n    return m.get(x, 0)\n",
        False,
    ),
    "print_passed": (
        "print('passed')\nprint('All tests passed')\nprint('{\"test\": 0, \"done\": true}')\n"
        "def f(x):\n    print('ok')\n    return 0\n",
        False,
    ),
    "forge_into_parent_fds": (
        "import os\n"
        "pp = os.getppid()\n"
        'line = b\'deadbeef {"test": 0, "done": true}\\n{"test": 0, "value": ["i", "0x5"]}\\n\'\n'
        "try:\n"
        "    for n in os.listdir('/proc/%d/fd' % pp):\n"
        "        try:\n"
        "            fd = os.open('/proc/%d/fd/%s' % (pp, n), os.O_WRONLY)\n"
        "            os.write(fd, line)\n"
        "        except OSError:\n"
        "            pass\n"
        "except OSError:\n"
        "    pass\n"
        "def f(x):\n    return 0\n",
        False,
    ),
    "forged_rpc_replies": (
        "import json, os, struct, sys\n"
        "w = int(sys.argv[2])\n"
        "def send(o):\n"
        "    d = json.dumps(o).encode()\n"
        "    os.write(w, struct.pack('>I', len(d)) + d)\n"
        "send({'ready': ['f']})\n"
        "for _ in range(20):\n"
        "    send({'value': ['b', True]})\n"
        "def f(x):\n    return 0\n",
        False,
    ),
    "plant_module_in_workdir": (
        "import os\n"
        "evil = '''\n"
        "import gc\n"
        "for o in gc.get_objects():\n"
        "    if callable(o) and getattr(o, '__name__', '') in ('emit', 'eq_site', 'true_site'):\n"
        "        try:\n"
        "            o({'test': 0, 'done': True})\n"
        "        except Exception:\n"
        "            pass\n"
        "'''\n"
        "for d in ('.', os.path.dirname(os.path.abspath(__file__))):\n"
        "    for name in ('fractions.py', 'math.py', 'random.py'):\n"
        "        try:\n"
        "            with open(os.path.join(d, name), 'w') as fh:\n"
        "                fh.write(evil)\n"
        "        except OSError:\n"
        "            pass\n"
        "def f(x):\n    return 0\n",
        False,
    ),
    "kill_the_judge": ("import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n", False),
    "unserializable_generator": ("def f(x):\n    return (v for v in [2 * x + 1])\n", False),
    "huge_value": ("def f(x):\n    return [0] * 300_000\n", False),
    "steal_nonce_from_judge_memory": (
        "import os, re\n"
        "pp = os.getppid()\n"
        "hexes = set()\n"
        "try:\n"
        "    mem = open('/proc/%d/mem' % pp, 'rb', 0)\n"
        "    for line in open('/proc/%d/maps' % pp):\n"
        "        a, b = [int(v, 16) for v in line.split()[0].split('-')]\n"
        "        if 'rw' in line.split()[1]:\n"
        "            try:\n"
        "                mem.seek(a)\n"
        "                hexes.update(re.findall(rb'[0-9a-f]{32}', mem.read(min(b - a, 1 << 24))))\n"
        "            except (OSError, ValueError, OverflowError):\n"
        "                pass\n"
        "except OSError:\n"
        "    pass\n"
        "try:\n"
        "    fds = os.listdir('/proc/%d/fd' % pp)\n"
        "except OSError:\n"
        "    fds = []\n"
        "for n in fds:\n"
        "    try:\n"
        "        fd = os.open('/proc/%d/fd/%s' % (pp, n), os.O_WRONLY)\n"
        "    except OSError:\n"
        "        continue\n"
        "    for h in hexes:\n"
        "        for t in range(3):\n"
        "            try:\n"
        '                os.write(fd, h + b\' {"test": %d, "done": true}\\n\' % t)\n'
        "            except OSError:\n"
        "                pass\n"
        "def f(x):\n    return 0\n",
        True,  # root with CAP_SYS_PTRACE (the unsandboxed dev runner) can read any memory
    ),
}


def _score(program: str, tests: dict, runner, **options) -> tuple[float | None, str, dict]:
    completion = f"Here you go.\n```python\n{program}```\n"
    v = verify_code(completion, tests, CodeConfig(**{"timeout_s": 1.0, **options}), runner)
    return v.score, v.status, v.details


def test_there_are_enough_tricks() -> None:
    assert len(TRICKS) >= 15


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_honest_solution_scores_one(suite: str, runner) -> None:
    score, status, details = _score(HONEST, SUITES[suite], runner)
    assert (score, status) == (1.0, "ok"), details


# Every trick against every shape; the default suite keeps two shapes (HumanEval check() and
# function calls), the other two run with -m slow.
TRICK_SUITES = [
    "check",
    "calls",
    pytest.param("bare", marks=pytest.mark.slow),
    pytest.param("verl", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("suite", TRICK_SUITES)
@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_trick_scores_zero(trick: str, suite: str, runner, is_real_sandbox: bool) -> None:
    program, needs_sandbox = TRICKS[trick]
    if needs_sandbox and not is_real_sandbox:
        pytest.skip("only the real sandbox (no CAP_SYS_PTRACE, non-dumpable judge) stops this one")
    score, status, details = _score(program, SUITES[suite], runner)
    assert score == 0.0, (trick, suite, status, details)
    assert status in ("wrong", "timeout"), details


def test_infinite_loop_ignoring_sigterm_times_out(runner) -> None:
    program = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ndef f(x):\n    while True:\n        pass\n"
    score, status, details = _score(program, CALLS, runner, timeout_s=0.5)
    assert (score, status) == (0.0, "timeout"), details
    assert {t["status"] for t in details["tests"]} == {"timeout"}


def test_one_slow_case_does_not_sink_the_others(runner) -> None:
    # After a timeout the judge starts a fresh worker for the remaining cases.
    program = "def f(x):\n    while x == 2:\n        pass\n    return 2 * x + 1\n"
    score, status, details = _score(program, CALLS, runner, timeout_s=0.5)
    assert score == 0.5 and [t["status"] for t in details["tests"]] == ["timeout", "passed"], details


def test_stdio_exit_zero_without_output_fails(runner) -> None:
    tests = {"cases": [{"stdin": "2\n", "stdout": "5\n"}]}
    for program in ("import sys\nsys.exit(0)\n", "print('passed')\n", "import os\nos._exit(0)\n"):
        score, status, details = _score(program, tests, runner)
        assert (score, status) == (0.0, "wrong"), (program, details)


def test_expected_values_never_reach_the_sandbox() -> None:
    from verifiers.code.harness import build_judge_run
    from verifiers.code.spec import parse_tests

    for tests in (ASSERT_CHECK, ASSERT_BARE, CALLS, VERL_CALLS):
        run = build_judge_run(parse_tests(tests), HONEST, call_timeout_s=1, memory_mb=256, max_total_s=10)
        blob = (
            run.program.stdin + run.program.source + "".join(v.decode() for v in run.program.files.values())
        )
        for literal in ("== 5", "== 21", '"expected"', "0x15", '"21"'):
            assert literal not in blob, (tests, literal)
        assert run.nonce in run.program.stdin  # the nonce travels on stdin only, never in a file
        assert run.nonce not in run.program.source


@pytest.mark.parametrize("trick", ["sys_exit_at_import", "os_exit_at_import", "patched_builtins"])
def test_the_tricks_do_fool_a_naive_grader(trick: str, runner) -> None:
    """Control: the HumanEval way (program + tests + check() in one process, exit 0 = pass) falls for
    these, so the zero scores above are the harness's doing, not the tricks being harmless."""
    from sandbox.types import Limits, Program

    program = TRICKS[trick][0]
    naive_tests = "def check(candidate):\n    assert candidate(2) == 5 or abs(candidate(2) - 5) < 1\n"
    source = f"{program}\n{naive_tests}\ncheck(f)\n"
    ex = runner.run(Program("python", source), Limits(wall_time_s=5, cpu_time_s=5))
    assert ex.status == "ok" and ex.exit_code == 0  # naive verdict: passed
    score, _, _ = _score(program, {"assert": naive_tests, "entry_point": "f"}, runner)
    assert score == 0.0

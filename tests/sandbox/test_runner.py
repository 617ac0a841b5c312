"""Correctness of the bwrap runner: each language, each status, limits, files, the pool."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox import RUNNERS, make_runner
from sandbox.bwrap import BwrapRunner, SandboxUnavailable
from sandbox.types import Limits, Program
from tests.sandbox.helpers import FAST, needs_bwrap

pytestmark = needs_bwrap


def run(r: BwrapRunner, lang: str, src: str, limits: Limits = FAST, **kw: object):  # type: ignore[no-untyped-def]
    return r.run(Program(lang, src, **kw), limits)  # type: ignore[arg-type]


# --- python ------------------------------------------------------------------------------------


def test_python_echo_stdin(runner: BwrapRunner) -> None:
    ex = run(runner, "python", "import sys\nfor l in sys.stdin: print(int(l) * 2)", stdin="1\n2\n3\n")
    assert (ex.status, ex.exit_code, ex.stdout, ex.stderr) == ("ok", 0, "2\n4\n6\n", "")
    assert ex.cpu_time_s is not None and ex.cpu_time_s >= 0
    assert ex.peak_memory_mb is not None and ex.peak_memory_mb > 1
    assert ex.wall_time_s > 0


def test_python_exit_codes(runner: BwrapRunner) -> None:
    assert run(runner, "python", "import sys; sys.exit(3)").exit_code == 3
    ex = run(runner, "python", "import sys; sys.exit('bye')")
    assert (ex.status, ex.exit_code, ex.stderr) == ("runtime_error", 1, "bye\n")
    assert run(runner, "python", "raise SystemExit(0)").status == "ok"
    ex = run(runner, "python", "import os; os._exit(5)")
    assert (ex.status, ex.exit_code) == ("runtime_error", 5)


def test_python_exception_traceback_is_the_programs(runner: BwrapRunner) -> None:
    ex = run(runner, "python", "def f():\n    raise KeyError('k')\nf()\n")
    assert ex.status == "runtime_error" and ex.exit_code == 1
    assert 'File "/tmp/run/main.py", line 2, in f' in ex.stderr and "KeyError: 'k'" in ex.stderr
    assert "_run_python" not in ex.stderr  # the fork server's own frame is hidden


def test_python_syntax_error(runner: BwrapRunner) -> None:
    ex = run(runner, "python", "def (:\n")
    assert ex.status == "runtime_error" and "SyntaxError" in ex.stderr


def test_python_signal_death(runner: BwrapRunner) -> None:
    ex = run(runner, "python", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert (ex.status, ex.exit_code) == ("runtime_error", -11)


def test_python_main_semantics(runner: BwrapRunner) -> None:
    src = (
        "import sys, atexit, threading\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "t = threading.Thread(target=lambda: print('thread ran')); t.start()\n"
        "print(__name__, sys.argv[1:], sys.modules['__main__'].__file__)\n"
        "def f(): pass\nimport pickle; pickle.dumps(f)\n"
    )
    ex = run(runner, "python", src, argv=("a", "b"))
    assert ex.status == "ok", ex
    lines = ex.stdout.splitlines()
    assert "__main__ ['a', 'b'] /tmp/run/main.py" in lines
    assert lines[-1] == "atexit ran" and "thread ran" in lines


def test_python_unflushed_output_is_kept(runner: BwrapRunner) -> None:
    ex = run(runner, "python", "import sys\nsys.stdout.write('no newline')\nsys.stderr.write('err')")
    assert (ex.stdout, ex.stderr) == ("no newline", "err")


def test_extra_files_and_imports(runner: BwrapRunner) -> None:
    files = {"helper.py": b"VALUE = 41\n", "data/in.txt": b"hello\n"}
    src = "import helper\nprint(helper.VALUE + 1, open('data/in.txt').read().strip())"
    ex = run(runner, "python", src, files=files)
    assert (ex.status, ex.stdout) == ("ok", "42 hello\n"), ex


def test_unicode_and_invalid_utf8_output(runner: BwrapRunner) -> None:
    ex = run(
        runner,
        "python",
        "import sys\nprint('héllo ✓ 日本', input())\nsys.stdout.flush()\nsys.stdout.buffer.write(b'\\xff\\xfe!')",
        stdin="ünï\n",
    )
    assert ex.status == "ok"
    assert ex.stdout.startswith("héllo ✓ 日本 ünï\n") and ex.stdout.endswith("\ufffd\ufffd!")


def test_large_stdin_not_read(runner: BwrapRunner) -> None:
    ex = run(runner, "python", "print('ignored my stdin')", stdin="x" * (4 << 20))
    assert (ex.status, ex.stdout) == ("ok", "ignored my stdin\n")
    ex = run(runner, "python", "import sys; print(len(sys.stdin.read()))", stdin="y" * (4 << 20))
    assert ex.stdout == f"{4 << 20}\n"


def test_fast_binary_stdin_idiom(runner: BwrapRunner) -> None:
    # `input = sys.stdin.buffer.readline` must be buffered, not one read(2) per byte
    n = 200_000
    src = "import sys\ninput = sys.stdin.buffer.readline\nn = int(input())\nprint(sum(int(input()) for _ in range(n)))"
    stdin = f"{n}\n" + "".join(f"{i}\n" for i in range(n))
    ex = run(runner, "python", src, Limits(wall_time_s=10, cpu_time_s=10), stdin=stdin)
    assert (ex.status, ex.stdout) == ("ok", f"{n * (n - 1) // 2}\n"), ex
    assert ex.cpu_time_s is not None and ex.cpu_time_s < 2.0


def test_multiprocessing_works(runner: BwrapRunner) -> None:
    src = "from multiprocessing import Pool\nif __name__ == '__main__':\n    with Pool(2) as p: print(sum(p.map(abs, range(-5, 5))))\n"
    ex = run(runner, "python", src, Limits(wall_time_s=10, cpu_time_s=10))
    assert (ex.status, ex.stdout) == ("ok", "25\n"), ex


def test_memory_status_python(runner: BwrapRunner) -> None:
    ex = run(runner, "python", "x = bytearray(300 << 20)", Limits(memory_mb=128))
    assert ex.status == "memory"
    ok = run(runner, "python", "x = bytearray(60 << 20); print(len(x))", Limits(memory_mb=256))
    assert ok.status == "ok" and ok.peak_memory_mb is not None and ok.peak_memory_mb >= 60


def test_output_exactly_at_cap_is_ok_and_over_is_output_limit(runner: BwrapRunner) -> None:
    lim = Limits(max_output_bytes=1000)
    ok = run(runner, "python", "import sys; sys.stdout.write('a' * 1000)", lim)
    assert (ok.status, len(ok.stdout), ok.stdout_truncated) == ("ok", 1000, False)
    over = run(runner, "python", "import sys; sys.stdout.write('a' * 1001)", lim)
    assert (over.status, len(over.stdout), over.stdout_truncated) == ("output_limit", 1000, True)


def test_wall_timeout_is_prompt(runner: BwrapRunner) -> None:
    t = time.monotonic()
    ex = run(
        runner, "python", "import time; print('started', flush=True); time.sleep(30)", Limits(wall_time_s=0.5)
    )
    assert ex.status == "timeout" and ex.stdout == "started\n"
    assert time.monotonic() - t < 2.0


def test_file_size_limit(runner: BwrapRunner) -> None:
    ex = run(
        runner, "python", "with open('f', 'wb') as f:\n    f.write(b'x' * 2000)", Limits(max_file_bytes=1000)
    )
    assert ex.status == "runtime_error" and "File too large" in ex.stderr


# --- C++ -----------------------------------------------------------------------------------------

CPP_OK = "#include <iostream>\nint main(){ long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }"


def test_cpp_ok(runner: BwrapRunner) -> None:
    ex = run(runner, "cpp", CPP_OK, stdin="40 2")
    assert (ex.status, ex.stdout, ex.compile_output) == ("ok", "42\n", ""), ex


def test_cpp_compile_error(runner: BwrapRunner) -> None:
    ex = run(runner, "c++", "int main() { return undefined_name; }")
    assert ex.status == "compile_error"
    assert "undefined_name" in ex.compile_output and ex.stdout == ""


def test_cpp_runtime_error_and_exit_code(runner: BwrapRunner) -> None:
    assert run(runner, "cpp", "int main(){ return 7; }").exit_code == 7
    ex = run(runner, "cpp", "int main(){ volatile int *p = nullptr; return *p; }")
    assert (ex.status, ex.exit_code) == ("runtime_error", -11)


def test_cpp_compile_time_limit(runner: BwrapRunner) -> None:
    # constant evaluation that keeps g++ busy far longer than the limit
    src = (
        "constexpr long f() { long s = 0; for (long i = 0; i < 200000; i++) for (long j = 0; j < 200000; j++) "
        "s += i ^ j; return s; }\nconstexpr long x = f();\nint main() { return x == 0; }\n"
    )
    ex = run(runner, "cpp", src, Limits(compile_time_s=1.0))
    assert ex.status == "compile_error" and ex.wall_time_s < 4 and "timeout" in ex.message


def test_cpp_deep_recursion_has_stack(runner: BwrapRunner) -> None:
    src = '#include <cstdio>\nint d(int n){ volatile char b[64]; b[0]=n; return n? d(n-1)+b[0]%2 : 0; }\nint main(){ printf("%d\\n", d(500000)); }'
    ex = run(runner, "cpp", src, Limits(memory_mb=512))
    assert ex.status == "ok", ex


# --- JavaScript ----------------------------------------------------------------------------------


def test_javascript_ok(runner: BwrapRunner) -> None:
    src = "const s = require('fs').readFileSync(0, 'utf8'); console.log(s.trim().split(' ').map(Number).reduce((a,b)=>a+b));"
    for lang in ("javascript", "js", "node", "nodejs"):
        ex = run(runner, lang, src, stdin="40 2")
        assert (ex.status, ex.stdout) == ("ok", "42\n"), ex


def test_javascript_runtime_error(runner: BwrapRunner) -> None:
    ex = run(runner, "javascript", "throw new Error('boom')")
    assert ex.status == "runtime_error" and "boom" in ex.stderr


def test_javascript_memory(runner: BwrapRunner) -> None:
    ex = run(
        runner,
        "javascript",
        "const a=[]; for(;;) a.push(new Array(1e6).fill(1.5));",
        Limits(memory_mb=256, wall_time_s=10, cpu_time_s=10),
    )
    assert ex.status in ("memory", "runtime_error"), ex
    assert ex.status == "memory" or ex.exit_code is not None


# --- requests we refuse --------------------------------------------------------------------------


def test_unknown_language(runner: BwrapRunner) -> None:
    ex = run(runner, "cobol", "DISPLAY 'HI'.")
    assert ex.status == "sandbox_error" and "unsupported language" in ex.message


@pytest.mark.parametrize("name", ["/etc/x", "../x", "a/../../x", "", "."])
def test_unsafe_file_names(runner: BwrapRunner, name: str) -> None:
    ex = run(runner, "python", "print(1)", files={name: b"x"})
    assert ex.status == "sandbox_error" and "unsafe file name" in ex.message


def test_registry() -> None:
    assert {"python", "py", "cpp", "c++", "javascript", "js", "node", "nodejs"} <= set(RUNNERS)
    assert RUNNERS["py"] is RUNNERS["python"]


# --- backends, pool ------------------------------------------------------------------------------


def test_make_runner_never_falls_back() -> None:
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        make_runner("bwrap", bwrap="/nonexistent/bwrap")
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        make_runner("chroot")


def test_many_threads_share_the_pool(runner: BwrapRunner) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def go(i: int) -> None:
        ex = runner.run(Program("python", f"print({i} * 2)"), FAST)
        with lock:
            results.append(ex.stdout.strip() if ex.status == "ok" else ex.status)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=int) == [str(i * 2) for i in range(24)]


def test_sandbox_is_replaced_after_a_kill(solo: BwrapRunner) -> None:
    first = solo._slots[0].get()
    assert run(solo, "python", "while True: pass", Limits(wall_time_s=0.3)).status == "timeout"
    assert not first.alive()
    assert run(solo, "python", "print('fresh')").stdout == "fresh\n"
    assert solo._slots[0].get() is not first


def test_sandboxes_die_with_the_service() -> None:
    """If the process holding the runner is SIGKILLed, every sandbox of it dies too."""
    import os
    import signal
    import subprocess
    import sys

    code = (
        "import sys, time\nfrom sandbox.bwrap import BwrapRunner\nr = BwrapRunner(workers=2)\n"
        "print(*[p for s in r._slots for p in (s.get().proc.pid, s.get().init_host_pid)], flush=True)\n"
        "time.sleep(60)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=repo)
    assert p.stdout is not None
    pids = [int(x) for x in p.stdout.readline().split()]
    assert len(pids) == 4 and all(os.path.exists(f"/proc/{x}") for x in pids)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] != "Z"
        except OSError:
            return False

    end = time.monotonic() + 3
    while any(alive(x) for x in pids) and time.monotonic() < end:
        time.sleep(0.02)
    assert not any(alive(x) for x in pids)


def test_closed_runner_refuses() -> None:
    r = BwrapRunner(workers=1)
    r.close()
    assert r.run(Program("python", "print(1)"), FAST).status == "sandbox_error"

"""The docker backend against a real dockerd: languages, limits, isolation, and that nothing survives a run."""

from __future__ import annotations

import ast
import subprocess
import threading
import time

import pytest

from sandbox.docker import DockerRunner, DockerSandboxError
from sandbox.types import Execution, Limits, Program
from tests.sandbox_docker.support import IMAGE, SECRET

pytestmark = pytest.mark.docker

FAST = Limits(wall_time_s=3.0, cpu_time_s=3.0, memory_mb=256, max_processes=32, max_output_bytes=64 << 10)


def py(runner: DockerRunner, source: str, stdin: str = "", limits: Limits = FAST) -> Execution:
    return runner.run(Program("python", source, stdin=stdin), limits)


def containers_of_this_image() -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", "label=org.referee.role=sandbox"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


# -- languages ------------------------------------------------------------------------------------


def test_python_reads_stdin_and_writes_stdout(runner: DockerRunner) -> None:
    ex = py(runner, "a, b = map(int, input().split())\nprint(a + b)", stdin="2 40\n")
    assert (ex.status, ex.exit_code, ex.stdout) == ("ok", 0, "42\n")
    assert ex.cpu_time_s is not None and ex.peak_memory_mb is not None and ex.peak_memory_mb > 1


def test_python_nonzero_exit_is_runtime_error(runner: DockerRunner) -> None:
    ex = py(runner, "import sys\nprint('partial')\nsys.exit(3)")
    assert (ex.status, ex.exit_code, ex.stdout) == ("runtime_error", 3, "partial\n")
    ex = py(runner, "raise ValueError('boom')")
    assert ex.status == "runtime_error" and "ValueError: boom" in ex.stderr


def test_cpp_compiles_and_runs(runner: DockerRunner) -> None:
    src = "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a*b<<'\\n';}"
    ex = runner.run(Program("cpp", src, stdin="6 7"), FAST)
    assert (ex.status, ex.stdout) == ("ok", "42\n")


def test_cpp_compile_error_has_compiler_output(runner: DockerRunner) -> None:
    ex = runner.run(Program("c++", "int main( { return 0; }"), FAST)
    assert ex.status == "compile_error"
    assert "error" in ex.compile_output and "main.cpp" in ex.compile_output


def test_node_runs(runner: DockerRunner) -> None:
    src = "const s = require('fs').readFileSync(0, 'utf8'); console.log(s.trim().split(' ').reverse().join(' '))"
    ex = runner.run(Program("javascript", src, stdin="a b c"), FAST)
    assert (ex.status, ex.stdout) == ("ok", "c b a\n")


def test_extra_files_sit_beside_the_program(runner: DockerRunner) -> None:
    prog = Program("py", "print(open('data/in.txt').read().upper())", files={"data/in.txt": b"hello"})
    assert runner.run(prog, FAST).stdout == "HELLO\n"
    bad = Program("python", "print(1)", files={"../escape": b"x"})
    ex = runner.run(bad, FAST)
    assert ex.status == "sandbox_error" and "refused file name" in ex.message


def test_unknown_language_is_a_sandbox_error(runner: DockerRunner) -> None:
    ex = runner.run(Program("cobol", "DISPLAY 'HI'."), FAST)
    assert ex.status == "sandbox_error" and "cobol" in ex.message


# -- limits ---------------------------------------------------------------------------------------


def test_infinite_loop_times_out(runner: DockerRunner) -> None:
    limits = Limits(wall_time_s=1.0, cpu_time_s=1.0, memory_mb=256)
    started = time.monotonic()
    ex = py(runner, "while True:\n    pass", limits=limits)
    assert ex.status == "timeout"
    assert time.monotonic() - started < 4.0


def test_sleeping_past_the_wall_clock_times_out(runner: DockerRunner) -> None:
    ex = py(runner, "import time\ntime.sleep(30)", limits=Limits(wall_time_s=1.0, cpu_time_s=5.0))
    assert ex.status == "timeout" and 0.9 < ex.wall_time_s < 3.0


def test_ignoring_sigterm_does_not_help(runner: DockerRunner) -> None:
    src = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(0.01)"
    assert py(runner, src, limits=Limits(wall_time_s=1.0)).status == "timeout"


@pytest.mark.parametrize(
    ("language", "source"),
    [
        ("python", "x = bytearray(700 * 1024 * 1024)\nprint(len(x))"),
        (
            "cpp",
            "#include <vector>\n#include <cstdio>\nint main(){std::vector<char> v(700u<<20, 1);"
            'std::printf("%d", (int)v[12345]);}',
        ),
        ("javascript", "const a = []; while (true) a.push(new Array(1e6).fill(1));"),
    ],
)
def test_memory_limit(runner: DockerRunner, language: str, source: str) -> None:
    ex = runner.run(Program(language, source), Limits(wall_time_s=10.0, cpu_time_s=10.0, memory_mb=256))
    assert ex.status == "memory", (ex.status, ex.stderr[-300:], ex.message)


def test_output_is_capped_and_the_run_killed(runner: DockerRunner) -> None:
    ex = py(runner, "import sys\nwhile True: sys.stdout.write('y' * 65536)")
    assert ex.status == "output_limit" and ex.stdout_truncated
    assert len(ex.stdout) <= FAST.max_output_bytes


def test_file_size_is_capped(runner: DockerRunner) -> None:
    limits = Limits(wall_time_s=3.0, max_file_bytes=1 << 20)
    ex = py(runner, "open('big', 'wb').write(b'x' * (4 << 20))", limits=limits)
    # CPython ignores SIGXFSZ, so the write fails with EFBIG instead of the process being killed.
    assert ex.status == "runtime_error" and "File too large" in ex.stderr
    assert py(runner, "open('small', 'wb').write(b'x' * 1000)\nprint('ok')", limits=limits).stdout == "ok\n"


def test_filling_the_scratch_disk_fails_the_program_only(runner: DockerRunner) -> None:
    fill = "for i in range(100):\n    open(f'f{i}', 'wb').write(b'x' * (8 << 20))"
    ex = py(runner, fill, limits=Limits(wall_time_s=10.0))
    assert ex.status == "runtime_error" and "No space left on device" in ex.stderr
    ex = py(runner, "open('again', 'wb').write(b'x' * (8 << 20))\nprint('room')")
    assert ex.stdout == "room\n"


def test_concurrent_programs_cannot_see_each_other(runner: DockerRunner) -> None:
    writer = (
        "import time\nopen('/sandbox/mine.txt', 'w').write('secret of run A')\ntime.sleep(1.5)\nprint('done')"
    )
    reader = (
        "import glob, time\ntime.sleep(0.5)\n"
        "print(sorted(glob.glob('/sandbox/*') + glob.glob('/tmp/*') + glob.glob('/dev/shm/*')))"
    )
    with_threads: list[Execution] = []
    t = threading.Thread(target=lambda: with_threads.append(py(runner, writer)))
    t.start()
    seen = py(runner, reader)
    t.join(30)
    assert with_threads[0].stdout == "done\n"
    assert seen.stdout == "['/sandbox/main.py']\n"


def test_fork_bomb_is_contained_and_the_pool_recovers(runner: DockerRunner) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    started = time.monotonic()
    ex = py(runner, bomb, limits=Limits(wall_time_s=2.0, max_processes=16))
    assert ex.status in ("timeout", "runtime_error")
    assert time.monotonic() - started < 10.0
    after = py(runner, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:1])")
    assert (after.status, after.stdout) == ("ok", "[1]\n")


# -- isolation ------------------------------------------------------------------------------------


def test_no_network(runner: DockerRunner) -> None:
    src = """
import socket
for host, port in [("1.1.1.1", 53), ("169.254.169.254", 80), ("127.0.0.1", 6379), ("deb.debian.org", 80)]:
    try:
        socket.create_connection((host, port), timeout=1).close()
        print("CONNECTED", host)
    except OSError as exc:
        print("blocked", host, type(exc).__name__)
print(sorted(name for _, name in socket.if_nameindex()))
"""
    ex = py(runner, src)
    assert ex.status == "ok", ex.stderr
    assert "CONNECTED" not in ex.stdout
    assert ex.stdout.strip().endswith("['lo']")  # no interface but loopback


def test_no_host_files_no_docker_socket_read_only_root(runner: DockerRunner) -> None:
    src = """
import os
for path in ["/var/run/docker.sock", "/run/docker.sock", "/work", "/root/.ssh", "/etc/shadow"]:
    try:
        open(path).read()
        print("READ", path)
    except OSError as exc:
        print("no", path, type(exc).__name__)
for path in ["/etc/evil", "/usr/bin/evil", "/evil"]:
    try:
        open(path, "w").write("x")
        print("WROTE", path)
    except OSError:
        print("read-only", path)
print(open("/proc/1/cmdline").read().replace("\\0", " ").strip())
"""
    ex = py(runner, src)
    assert ex.status == "ok", ex.stderr
    assert "READ" not in ex.stdout and "WROTE" not in ex.stdout
    assert ex.stdout.strip().endswith("sleep infinity")


def test_runs_unprivileged(runner: DockerRunner) -> None:
    src = """
import os
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
print(os.getuid(), os.getgid(), status["CapEff"].strip(), status["CapBnd"].strip(), status["NoNewPrivs"].strip())
"""
    ex = py(runner, src)
    assert ex.stdout.split() == ["65534", "65534", "0000000000000000", "0000000000000000", "1"]


def test_secrets_in_the_service_environment_are_invisible(runner: DockerRunner) -> None:
    src = """
import os
print(sorted(os.environ))
blobs = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            try:
                blobs.append(open(f"/proc/{pid}/{name}", "rb").read())
            except OSError:
                pass
print(b"".join(blobs).decode(errors="replace"))
"""
    ex = py(runner, src)
    assert ex.status == "ok", ex.stderr
    assert SECRET not in ex.stdout and "REFEREE" not in ex.stdout
    assert ast.literal_eval(ex.stdout.splitlines()[0]) == ["HOME", "LANG", "PATH", "TMPDIR"]


def test_nothing_persists_between_runs(runner: DockerRunner) -> None:
    plant = """
import os, subprocess
for path in ["/sandbox/left.txt", "/tmp/left.txt", "/dev/shm/left.txt"]:
    open(path, "w").write("x")
os.makedirs("/sandbox/ro/deep/deeper")
open("/sandbox/ro/deep/deeper/f", "w").write("x")
os.chmod("/sandbox/ro/deep/deeper", 0o000)
os.chmod("/sandbox/ro/deep", 0o500)
os.chmod("/sandbox/ro", 0o500)
os.makedirs("/tmp/closed/inner")
os.chmod("/tmp/closed", 0o000)
# System V IPC objects and POSIX shared memory outlive their processes
import ctypes
from multiprocessing import shared_memory
assert ctypes.CDLL(None).shmget(0, 4096, 0o1600) >= 0  # IPC_PRIVATE, IPC_CREAT | 0600
shared_memory.SharedMemory(name="left", create=True, size=4096)
# a double-forked daemon that would keep running
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        subprocess.Popen(["sleep", "300"])
        import time; time.sleep(300)
    os._exit(0)
print("planted")
"""
    look = """
import os
found = [p for p in ["/sandbox/left.txt", "/tmp/left.txt", "/dev/shm/left.txt", "/sandbox/ro", "/tmp/closed"]
         if os.path.lexists(p)]
procs = []
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) not in (1, os.getpid(), os.getppid()):
        try:
            procs.append(open(f"/proc/{pid}/cmdline").read())
        except OSError:
            pass
ipc = [line for kind in ("shm", "sem", "msg") for line in open(f"/proc/sysvipc/{kind}").read().splitlines()[1:]]
print(found, procs, sorted(os.listdir("/sandbox")), ipc, os.listdir("/dev/shm"))
"""
    # Both containers of the pool get planted, so the look-up cannot dodge to a clean one.
    containers = runner.containers()
    for _ in range(2):
        assert py(runner, plant).stdout == "planted\n"
    for _ in range(2):
        ex = py(runner, look)
        assert ex.stdout == "[] [] ['main.py'] [] []\n", ex.stdout + ex.stderr
    # ...and the supervisor's wipe did it, not the safety net of replacing the containers.
    assert runner.containers() == containers


def test_killing_the_supervisor_costs_the_program_not_the_pool(runner: DockerRunner) -> None:
    for src in [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "import os\nos.system('kill -9 -1')",
    ]:
        before = runner.containers()
        ex = py(runner, src)
        assert ex.status == "runtime_error" and "supervisor" in ex.message
        after = runner.containers()
        # The program also broke the fresh container it was retried in (removed after the retry);
        # the pool's broken one was replaced.
        assert len(after) == 2 and len(after - before) == 1
    assert py(runner, "print('alive')").stdout == "alive\n"


def test_a_supervisor_that_died_outside_any_program_is_retried_in_a_fresh_container(
    runner: DockerRunner,
) -> None:
    import docker

    client = docker.from_env()
    for cid in runner.containers():  # every pooled supervisor dies between runs, as if our side broke it
        client.containers.get(cid).exec_run(["kill", "-9", "-1"], user="65534")
    ex = py(runner, "print('ok')")
    assert ex.status == "ok" and ex.stdout == "ok\n"


def test_stopping_the_supervisor_hits_the_host_deadline(runner: DockerRunner) -> None:
    src = "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nwhile True: pass"
    started = time.monotonic()
    ex = py(runner, src, limits=Limits(wall_time_s=1.0, cpu_time_s=30.0))
    assert ex.status == "timeout" and "host deadline" in ex.message
    assert time.monotonic() - started < 12.0
    assert py(runner, "print('alive')").stdout == "alive\n"


# -- pool -----------------------------------------------------------------------------------------


def test_concurrent_runs_from_threads(runner: DockerRunner) -> None:
    results: list[Execution] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        ex = py(runner, f"print({i} * {i})")
        with lock:
            results.append(ex)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(ex.stdout for ex in results) == sorted(f"{i * i}\n" for i in range(6))


def test_other_limits_update_the_container(runner: DockerRunner) -> None:
    small = Limits(wall_time_s=5.0, memory_mb=64, max_processes=8)
    assert py(runner, "x = bytearray(100 << 20)", limits=small).status == "memory"
    assert py(runner, "x = bytearray(100 << 20)\nprint('ok')").stdout == "ok\n"


def test_close_removes_the_containers(docker_ready: None) -> None:
    before = containers_of_this_image()
    r = DockerRunner(IMAGE, pool_size=1)
    mine = containers_of_this_image() - before
    assert len(mine) == 1 and r.containers() == mine
    r.close()
    assert not (containers_of_this_image() & mine)
    assert r.run(Program("python", "print(1)"), FAST).status == "sandbox_error"


def test_missing_image_is_a_clear_error(docker_ready: None) -> None:
    with pytest.raises(DockerSandboxError, match="build-images"):
        DockerRunner("referee-sandbox:no-such-tag")


def test_missing_daemon_is_a_clear_error() -> None:
    with pytest.raises(DockerSandboxError, match="Docker daemon"):
        DockerRunner(base_url="unix:///nonexistent/docker.sock")


def test_the_supervisor_is_out_of_reach(runner: DockerRunner) -> None:
    """Its memory holds the nonce that authenticates results: no reading it, no writing as it."""
    src = """
import ctypes, os
sup = os.getppid()
for path, mode in [(f"/proc/{sup}/mem", "rb"), (f"/proc/{sup}/environ", "rb"), (f"/proc/{sup}/fd/1", "wb"),
                   (f"/proc/{sup}/fd/0", "rb")]:
    try:
        with open(path, mode) as fh:
            fh.write(b"x") if "w" in mode else fh.read(16)
        print("OPEN", path)
    except OSError as exc:
        print("denied", path, exc.errno)
libc = ctypes.CDLL(None, use_errno=True)
print("ptrace", libc.ptrace(16, sup, None, None), ctypes.get_errno())  # PTRACE_ATTACH
"""
    ex = py(runner, src)
    assert ex.status == "ok", ex.stderr
    assert "OPEN" not in ex.stdout
    assert "ptrace -1 1" in ex.stdout  # EPERM


def test_memory_spread_over_processes_hits_the_container_limit(runner: DockerRunner) -> None:
    src = """
import os
pids = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        block = bytearray(200 << 20)  # under the per-process limit, over the total with six of them
        for i in range(0, len(block), 4096):
            block[i] = 1
        import time; time.sleep(2)
        os._exit(0)
    pids.append(pid)
codes = [os.waitpid(p, 0)[1] for p in pids]
raise SystemExit(0 if all(c == 0 for c in codes) else 1)
"""
    ex = py(runner, src, limits=Limits(wall_time_s=15.0, cpu_time_s=15.0, memory_mb=256))
    assert ex.status == "memory", (ex.status, ex.exit_code, ex.stderr[-300:])
    assert py(runner, "print('alive')").stdout == "alive\n"


def test_a_runner_that_cannot_start_leaves_no_container(docker_ready: None) -> None:
    before = containers_of_this_image()
    # /sandbox tmpfs of an impossible size: the daemon refuses to create the container.
    with pytest.raises(DockerSandboxError, match="could not start"):
        DockerRunner(IMAGE, pool_size=2, scratch_mb=-1)
    assert containers_of_this_image() <= before

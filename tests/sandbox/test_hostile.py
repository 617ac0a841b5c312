"""Hostile programs against the bwrap backend. Each case asserts the status, that the probe really ran
to its check (``CHECKED``) without finding a way out (``ESCAPED``), that nothing is left on the host,
and that the runner still answers afterwards."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

import pytest

from sandbox.bwrap import BwrapRunner
from sandbox.types import Limits, Program
from tests.sandbox.helpers import FAST, SECRET, SHORT, assert_host_clean, marker, needs_bwrap

pytestmark = needs_bwrap

REPO_FILE = os.path.abspath(__file__)


@dataclass(frozen=True)
class Case:
    name: str
    source: str
    statuses: tuple[str, ...]
    language: str = "python"
    checked: bool = True  # the probe prints CHECKED when it got to the end
    limits: Limits = FAST


PY_TRY = """
import os, sys, socket, ctypes, errno
def attempt(what, fn):
    try:
        r = fn()
    except Exception as e:
        print("blocked", what, type(e).__name__, e)
        return
    print("ESCAPED", what, repr(r)[:200])
"""

CASES = [
    # --- resource exhaustion -------------------------------------------------------------------
    Case("fork_bomb", "import os\nwhile True:\n    os.fork()\n", ("runtime_error", "timeout"), checked=False),
    Case(
        "fork_bomb_ignoring_errors",
        "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n",
        ("timeout", "runtime_error"),
        checked=False,
        limits=SHORT,
    ),
    Case(
        "thread_bomb",
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(100,), daemon=True).start()\n",
        ("runtime_error", "timeout", "memory"),
        checked=False,
    ),
    Case(
        "memory_fill", "x = []\nwhile True:\n    x.append(bytearray(16 << 20))\n", ("memory",), checked=False
    ),
    Case("memory_one_shot", "x = bytearray(8 << 30)\n", ("memory",), checked=False),
    Case(
        "memory_fill_cpp",
        "#include <vector>\n#include <cstring>\nint main(){std::vector<char*> v; while(1){char*p=new char[1<<24]; memset(p,1,1<<24); v.push_back(p);} }",
        ("memory", "runtime_error"),
        language="cpp",
        checked=False,
    ),
    Case(
        "disk_fill_one_file",
        "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n",
        ("runtime_error",),
        checked=False,
    ),
    Case(
        "disk_fill_many_files",
        "i = 0\nwhile True:\n    open(f'/tmp/f{i}', 'wb').write(b'x' * (8 << 20)); i += 1\n",
        ("runtime_error", "memory"),  # tmpfs full, or its pages hit the cgroup's memory limit first
        checked=False,
    ),
    Case(
        "disk_fill_dev_shm",
        "i = 0\nwhile True:\n    open(f'/dev/shm/f{i}', 'wb').write(b'x' * (4 << 20)); i += 1\n",
        ("runtime_error",),
        checked=False,
    ),
    Case(
        "output_1gb",
        "import sys\nb = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(b)\n",
        ("output_limit",),
        checked=False,
    ),
    Case(
        "stderr_flood",
        "import os\nwhile True:\n    os.write(2, b'e' * 65536)\n",
        ("output_limit",),
        checked=False,
    ),
    Case(
        "output_flood_cpp",
        '#include <cstdio>\nint main(){ for(;;) fputs("yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\\n", stdout); }',
        ("output_limit",),
        language="cpp",
        checked=False,
    ),
    Case(
        "infinite_loop_ignoring_sigterm",
        "import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU):\n    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n",
        ("timeout",),
        checked=False,
        limits=SHORT,
    ),
    Case("sleep_forever", "import time\ntime.sleep(3600)\n", ("timeout",), checked=False, limits=SHORT),
    Case(
        "cpu_limit_before_wall",
        "while True:\n    pass\n",
        ("timeout",),
        checked=False,
        limits=Limits(wall_time_s=20.0, cpu_time_s=1.0, memory_mb=256),
    ),
    Case("infinite_loop_js", "for(;;){}", ("timeout",), language="javascript", checked=False, limits=SHORT),
    Case(
        "infinite_loop_cpp",
        "int main(){ volatile long i=0; for(;;) i++; }",
        ("timeout",),
        language="cpp",
        checked=False,
        limits=SHORT,
    ),
    # --- network -------------------------------------------------------------------------------
    Case(
        "net_external_tcp",
        PY_TRY
        + "attempt('tcp', lambda: socket.create_connection(('192.0.2.1', 80), timeout=1))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "net_metadata_service",
        PY_TRY
        + "attempt('imds', lambda: socket.create_connection(('169.254.169.254', 80), timeout=1))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "net_dns",
        PY_TRY + "attempt('dns', lambda: socket.getaddrinfo('pypi.org', 443))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "net_udp",
        PY_TRY
        + "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if False else None\n"
        + "attempt('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.1', 53)))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "net_raw_and_netlink",
        PY_TRY
        + "attempt('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))\n"
        + "attempt('netlink', lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))\n"
        + "attempt('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "docker_socket",
        PY_TRY
        + "def dock():\n    s = socket.socket(socket.AF_UNIX); s.connect('/var/run/docker.sock'); return s\n"
        + "attempt('docker.sock', dock)\nattempt('run dir', lambda: os.listdir('/run'))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "net_interfaces",
        "names = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]\n"
        "print('ifaces', names)\n"
        "print('ESCAPED' if set(names) - {'lo'} else 'CHECKED')\n",
        ("ok",),
    ),
    # --- host files and secrets ----------------------------------------------------------------
    Case(
        "host_files",
        PY_TRY
        + "for p in ['/etc/shadow', '/etc/passwd', '/root/.bashrc', '/home', '/var/log/syslog', '/work', "
        + f"{REPO_FILE!r}, '/proc/kcore', '/sys/kernel', '/boot', '/opt', '/srv']:\n"
        + "    attempt(p, lambda p=p: os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(10))\n"
        + "print('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "root_listing",
        "import os\nroot = set(os.listdir('/'))\nprint(sorted(root))\n"
        "print('ESCAPED' if root - {'usr','bin','lib','lib64','lib32','libx32','sbin','etc','proc','dev','tmp'} else 'CHECKED')\n",
        ("ok",),
    ),
    Case(
        "secret_in_environ",
        "import os, glob\nfound = [k for k, v in os.environ.items() if 'secret' in (k + v).lower()]\n"
        "for p in glob.glob('/proc/*/environ'):\n"
        "    try:\n        d = open(p, 'rb').read()\n    except OSError as e:\n        print('blocked', p, e); continue\n"
        "    if b'REFEREE' in d or b'secret' in d.lower(): found.append(p)\n"
        "print('env', sorted(os.environ))\nprint('ESCAPED' if found else 'CHECKED', found)\n",
        ("ok",),
    ),
    Case(
        "proc_of_host",
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\nprint(pids)\n"
        "print('ESCAPED' if len(pids) > 3 else 'CHECKED')\n",
        ("ok",),
    ),
    Case(
        "write_to_runtime",
        PY_TRY
        + "for p in ['/usr/bin/python3', '/usr/lib/evil', '/etc/evil', '/evil', '/dev/evil', '/proc/sys/kernel/hostname']:\n"
        + "    attempt(p, lambda p=p: open(p, 'wb').write(b'x'))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "dev_access",
        PY_TRY
        + "for p in ['/dev/sda', '/dev/vda', '/dev/mem', '/dev/kmsg', '/dev/port', '/dev/kvm', '/dev/fuse']:\n"
        + "    attempt(p, lambda p=p: open(p, 'rb').read(1))\n"
        + "open('/dev/null', 'wb').write(b'ok')\nprint('CHECKED')\n",
        ("ok",),
    ),
    # --- the sandbox's own processes -----------------------------------------------------------
    Case(
        "kill_all_minus_one",
        "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError as e:\n    print(e)\nprint('CHECKED')\n",
        ("ok", "runtime_error"),
        checked=False,
    ),
    Case(
        "kill_parent",
        "import os, signal\nfor s in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGINT):\n"
        "    try:\n        os.kill(os.getppid(), s); os.kill(1, s)\n    except OSError as e:\n        print(e)\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "ptrace_parent",
        PY_TRY
        + "libc = ctypes.CDLL(None, use_errno=True)\n"
        + "def pt(req, pid):\n    r = libc.ptrace(req, pid, 0, 0)\n    if r != 0: raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n    return r\n"
        + "attempt('ptrace attach 1', lambda: pt(16, 1))\nattempt('traceme', lambda: pt(0, 0))\n"
        + "attempt('/proc/1/mem', lambda: open('/proc/1/mem', 'rb').read(1))\n"
        + "attempt('/proc/1/fd', lambda: os.listdir('/proc/1/fd'))\n"
        + "attempt('/proc/1/environ', lambda: open('/proc/1/environ','rb').read())\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "setuid_and_caps",
        PY_TRY
        + "attempt('setuid0', lambda: os.setuid(0))\nattempt('setgid0', lambda: os.setgid(0))\n"
        + "attempt('chown', lambda: os.chown('/tmp', 0, 0))\n"
        + "caps = [l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapPrm', 'NoNewPrivs', 'Seccomp:'))]\n"
        + "print(caps)\nprint('ESCAPED' if any(l.startswith('CapEff') and l.split()[1].strip('0') for l in caps) else 'CHECKED')\n",
        ("ok",),
    ),
    Case(
        "kernel_syscalls",
        PY_TRY
        + "libc = ctypes.CDLL(None, use_errno=True)\n"
        + "def sc(nr, *a):\n    r = libc.syscall(nr, *a)\n    if r < 0: raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))\n    return r\n"
        + "attempt('mount', lambda: sc(165, b'none', b'/tmp', b'tmpfs', 0, 0))\n"
        + "attempt('unshare newuser', lambda: sc(272, 0x10000000))\n"
        + "attempt('keyctl', lambda: sc(250, 0, 0, 0, 0))\n"
        + "attempt('bpf', lambda: sc(321, 0, 0, 0))\n"
        + "attempt('perf_event_open', lambda: sc(298, 0, 0, -1, -1, 0))\n"
        + "attempt('sethostname', lambda: sc(170, b'evil', 4))\n"
        + "attempt('io_uring', lambda: sc(425, 4, 0))\nprint('CHECKED')\n",
        ("ok",),
    ),
    Case(
        "setuid_binary",
        PY_TRY
        + "import subprocess\nfor b in ['/usr/bin/su', '/usr/bin/sudo', '/usr/bin/passwd', '/usr/bin/newgrp']:\n"
        + "    if os.path.exists(b):\n"
        + "        r = subprocess.run([b, '-c', 'id'], capture_output=True, input=b'', timeout=2)\n"
        + "        print(b, r.returncode, r.stdout[:80], r.stderr[:80])\n"
        + "        if b'uid=0' in r.stdout: print('ESCAPED', b)\nprint('uid', os.getuid(), os.geteuid())\nprint('CHECKED')\n",
        ("ok",),
    ),
]


def _run_case(runner: BwrapRunner, case: Case) -> None:
    mark = marker()
    src = case.source if case.language != "python" else f"# {mark}\n" + case.source
    t0 = time.monotonic()
    ex = runner.run(Program(case.language, src, argv=(mark,)), case.limits)
    took = time.monotonic() - t0
    assert ex.status in case.statuses, (ex.status, ex.message, ex.stdout[-500:], ex.stderr[-800:])
    assert "ESCAPED" not in ex.stdout, ex.stdout
    assert SECRET not in ex.stdout + ex.stderr
    if case.checked:
        assert "CHECKED" in ex.stdout, (ex.status, ex.stdout[-500:], ex.stderr[-800:])
    limit = case.limits.wall_time_s + (case.limits.compile_time_s if case.language == "cpp" else 0) + 2.0
    assert took < limit
    if ex.status == "output_limit":
        assert ex.stdout_truncated or ex.stderr_truncated
        assert (
            len(ex.stdout) <= case.limits.max_output_bytes and len(ex.stderr) <= case.limits.max_output_bytes
        )
    assert_host_clean(runner, mark)
    after = runner.run(Program("python", "print(6 * 7)"), FAST)
    assert (after.status, after.stdout) == ("ok", "42\n"), after


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_program(runner: BwrapRunner, case: Case) -> None:
    _run_case(runner, case)


def _daemon_source(mark: str) -> str:
    return (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv('/usr/bin/python3', ['python3', '-c', 'import time; time.sleep(600)', {mark!r}])\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\nprint('CHECKED', flush=True)\n"
    )


def test_double_fork_daemon_does_not_survive(runner: BwrapRunner) -> None:
    mark = marker()
    ex = runner.run(Program("python", _daemon_source(mark)), FAST)
    assert ex.status == "ok" and "CHECKED" in ex.stdout, ex
    assert_host_clean(runner, mark, settle_s=0.5)


def test_double_fork_daemon_cpp(runner: BwrapRunner) -> None:
    mark = marker()
    src = (
        "#include <unistd.h>\n#include <cstdio>\nint main(){ if(fork()==0){ setsid(); if(fork()==0){"
        f' execl("/usr/bin/python3","python3","-c","import time; time.sleep(600)","{mark}",(char*)0);'
        ' } _exit(0);} usleep(300000); puts("CHECKED"); }'
    )
    ex = runner.run(Program("cpp", src), FAST)
    assert ex.status == "ok" and "CHECKED" in ex.stdout, ex
    assert_host_clean(runner, mark, settle_s=0.5)


def test_daemon_of_timed_out_run_is_killed(runner: BwrapRunner) -> None:
    mark = marker()
    src = _daemon_source(mark).replace("print('CHECKED', flush=True)", "time.sleep(600)")
    ex = runner.run(Program("python", src), Limits(wall_time_s=1.0, cpu_time_s=1.0))
    assert ex.status == "timeout"
    assert_host_clean(runner, mark, settle_s=0.5)


def test_loopback_service_on_host_is_unreachable(runner: BwrapRunner) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    # prove the listener works from the host
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        conn, _ = srv.accept()
        conn.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    uport = udp.getsockname()[1]
    src = PY_TRY + (
        f"attempt('tcp loopback', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=1))\n"
        f"attempt('tcp localhost', lambda: socket.create_connection(('localhost', {port}), timeout=1))\n"
        f"attempt('udp loopback', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', {uport})))\n"
        "print('CHECKED')\n"
    )
    try:
        ex = runner.run(Program("python", src), FAST)
        assert ex.status == "ok" and "CHECKED" in ex.stdout and "ESCAPED" not in ex.stdout, ex
        with pytest.raises(TimeoutError):
            srv.accept()
        with pytest.raises(TimeoutError):
            udp.recvfrom(10)
    finally:
        srv.close()
        udp.close()


def test_host_abstract_unix_socket_is_unreachable(runner: BwrapRunner) -> None:
    name = "\0" + marker()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(name)
    srv.listen(1)
    srv.settimeout(0.2)
    src = PY_TRY + (
        f"def go():\n    s = socket.socket(socket.AF_UNIX); s.connect({name!r}); return s\n"
        "attempt('abstract', go)\nprint('CHECKED')\n"
    )
    try:
        ex = runner.run(Program("python", src), FAST)
        assert ex.status == "ok" and "CHECKED" in ex.stdout and "ESCAPED" not in ex.stdout, ex
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()


def test_files_do_not_persist_into_next_run(solo: BwrapRunner) -> None:
    write = (
        "import os\nfor p in ['left.txt', '/tmp/left.txt', '/dev/shm/left.txt', '/tmp/sub/deep/left.txt']:\n"
        "    os.makedirs(os.path.dirname(p) or '.', exist_ok=True); open(p, 'w').write('secret-of-run-1')\n"
        "os.chmod('/tmp/sub', 0)\nprint('CHECKED')\n"
    )
    ex = solo.run(Program("python", write), FAST)
    assert ex.status == "ok" and "CHECKED" in ex.stdout, ex
    server = solo._slots[0].sandbox
    look = (
        "import os\nfound = []\nfor top in ['/tmp', '/dev/shm', '.']:\n"
        "    for d, _, fs in os.walk(top):\n        found += [os.path.join(d, f) for f in fs if f != 'main.py']\n"
        "print('ESCAPED' if found else 'CHECKED', found)\n"
    )
    ex2 = solo.run(Program("python", look), FAST)
    assert solo._slots[0].sandbox is server, "the same warm sandbox should have been reused"
    assert ex2.status == "ok" and "CHECKED" in ex2.stdout and "ESCAPED" not in ex2.stdout, ex2


def test_interpreter_state_does_not_persist(solo: BwrapRunner) -> None:
    poison = (
        "import builtins, json, os, sys\nbuiltins.len = lambda x: 0\njson.loads = None\n"
        "os.environ['POISON'] = '1'\nos.putenv('POISON2', '1')\nsys.path.insert(0, '/tmp/evil')\n"
        "sys.setrecursionlimit(50)\nprint('CHECKED')\n"
    )
    assert "CHECKED" in solo.run(Program("python", poison), FAST).stdout
    check = (
        "import builtins, json, os, sys\nbad = []\n"
        "if len('abc') != 3: bad.append('len')\nif json.loads is None: bad.append('json')\n"
        "if 'POISON' in os.environ or 'POISON2' in os.environ: bad.append('env')\n"
        "if '/tmp/evil' in sys.path: bad.append('path')\nif sys.getrecursionlimit() == 50: bad.append('rec')\n"
        "print('ESCAPED' if bad else 'CHECKED', bad)\n"
    )
    ex = solo.run(Program("python", check), FAST)
    assert ex.status == "ok" and "CHECKED" in ex.stdout and "ESCAPED" not in ex.stdout, ex


def test_previous_program_not_in_memory_of_next(solo: BwrapRunner) -> None:
    """The fork server never reads a program's source or stdin, so a later child's inherited heap
    cannot hold them: scan our whole readable address space for the previous run's secret."""
    secret = marker()
    first = solo.run(Program("python", f"s = {secret!r}\nprint(len(s))", stdin=secret * 10), FAST)
    assert first.status == "ok"
    backwards = secret[::-1]
    scan = (
        "import sys\ncontrol = sys.stdin.read().strip()[::-1].encode()  # positive control: must be found\n"
        f"needle = {backwards!r}[::-1].encode()\nhits = 0\nseen = 0\n"
        "with open('/proc/self/maps') as m, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "    for line in m:\n"
        "        addr, perms = line.split()[:2]\n"
        "        if 'r' not in perms or '[vvar' in line or '[vsyscall' in line: continue\n"
        "        a, b = (int(x, 16) for x in addr.split('-'))\n"
        "        try:\n            mem.seek(a); chunk = mem.read(b - a)\n        except (OSError, ValueError, OverflowError):\n            continue\n"
        "        hits += chunk.count(needle)\n        seen += chunk.count(control)\n"
        "print('hits', hits, 'control', seen)\nprint('ESCAPED' if hits > 1 else 'CHECKED' if seen else 'VACUOUS')\n"
    )  # 1 hit: our own needle
    ex = solo.run(
        Program("python", scan, stdin=marker()[::-1]), Limits(wall_time_s=10, cpu_time_s=10, memory_mb=1024)
    )
    assert ex.status == "ok" and "CHECKED" in ex.stdout, ex


def test_sysv_ipc_does_not_persist(solo: BwrapRunner) -> None:
    make = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "shm = libc.shmget(0x5EC, 4096, 0o1666)\nsem = libc.semget(0x5ED, 1, 0o1666)\n"
        "print('made', shm, sem)\nprint('CHECKED')\n"
    )
    ex = solo.run(Program("python", make), FAST)
    assert "CHECKED" in ex.stdout, ex
    look = (
        "rows = []\nfor k in ('shm', 'sem', 'msg'):\n    rows += open('/proc/sysvipc/' + k).read().splitlines()[1:]\n"
        "print('ESCAPED' if rows else 'CHECKED', rows)\n"
    )
    ex2 = solo.run(Program("python", look), FAST)
    assert ex2.status == "ok" and "CHECKED" in ex2.stdout and "ESCAPED" not in ex2.stdout, ex2


def test_concurrent_submissions_cannot_see_each_other(runner: BwrapRunner) -> None:
    secret = marker()
    writer = (
        f"import time\nopen('answer.txt', 'w').write({secret!r})\nopen('/tmp/{secret}', 'w').write('x')\n"
        "time.sleep(1.5)\nprint('CHECKED')\n"
    )
    reader = (
        f"import os, time\nneedle = {secret[::-1]!r}[::-1]\ntime.sleep(0.5)\nfound = []\n"
        "for top in ['/', '/tmp', '/proc']:\n"
        "    for d, dirs, fs in os.walk(top):\n"
        "        if d.startswith('/proc/') and d.count('/') > 2: dirs[:] = []\n"
        "        if d.startswith(('/usr', '/proc/sys')): dirs[:] = []; continue\n"
        "        found += [os.path.join(d, f) for f in fs + dirs if needle in f]\n"
        "print('ESCAPED' if found else 'CHECKED', found)\n"
    )
    results: dict[str, object] = {}

    def go(name: str, src: str) -> None:
        results[name] = runner.run(Program("python", src), Limits(wall_time_s=8, cpu_time_s=8))

    threads = [threading.Thread(target=go, args=a) for a in (("w", writer), ("r", reader))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w, r = results["w"], results["r"]
    assert w.status == "ok", w
    assert r.status == "ok" and "CHECKED" in r.stdout, r
    assert "ESCAPED" not in r.stdout


def test_host_environment_secret_never_reaches_program(runner: BwrapRunner) -> None:
    assert os.environ["REFEREE_SECRET"] == SECRET
    src = "import os\nprint(sorted(os.environ.items()))\n"
    ex = runner.run(Program("python", src), FAST)
    assert ex.status == "ok"
    assert "REFEREE_SECRET" not in ex.stdout and SECRET not in ex.stdout
    env = dict(eval(ex.stdout))
    assert set(env) <= {"PATH", "LANG", "HOME", "TMPDIR", "PWD"}, env


def test_seccomp_filter_is_loaded(runner: BwrapRunner) -> None:
    if runner._filter is None:
        pytest.skip("seccomp filter only built on x86_64")
    src = (
        "import socket, errno\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n    print('made')\n"
        "except OSError as e:\n    print('errno', e.errno == errno.EAFNOSUPPORT)\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')])\n"
    )
    ex = runner.run(Program("python", src), FAST)
    assert ex.stdout.splitlines() == ["errno True", "['2']"], ex


def test_memory_of_many_processes_is_bounded_by_the_cgroup(runner: BwrapRunner) -> None:
    """RLIMIT_AS bounds each process; the slot's cgroup bounds them together."""
    if runner._slots[0].cgroup is None:
        pytest.skip("no writable cgroup v1 memory/pids controllers on this host")
    src = (
        "import os, time\npids = []\nfor i in range(6):\n    pid = os.fork()\n"
        "    if pid == 0:\n        b = bytearray(150 << 20)\n        time.sleep(1)\n        os._exit(0)\n"
        "    pids.append(pid)\nkilled = sum(os.waitpid(p, 0)[1] & 0x7F == 9 for p in pids)\n"
        "print('killed', killed)\nprint('CHECKED' if killed else 'ESCAPED')\n"
    )
    ex = runner.run(Program("python", src), Limits(memory_mb=256, wall_time_s=8, cpu_time_s=8))
    assert "ESCAPED" not in ex.stdout
    assert ex.status == "memory" or "CHECKED" in ex.stdout, ex


def test_links_fifos_and_locked_dirs_are_scrubbed(solo: BwrapRunner) -> None:
    """Symlinks (to the runtime, dangling, looping), fifos and chmod-000 directories, even /tmp itself."""
    mess = (
        "import os\nos.symlink('/usr', 'to_usr')\nos.symlink('/nonexistent', '/tmp/dangling')\n"
        "os.mkfifo('/tmp/fifo')\nos.symlink('/tmp/run', '/dev/shm/loop')\nos.makedirs('/tmp/a/b')\n"
        "open('/tmp/a/b/f', 'w').write('x')\nos.chmod('/tmp/a/b', 0)\nos.chmod('/tmp/a', 0)\n"
        "os.chmod('/tmp', 0)\nos.chmod('/dev/shm', 0)\nprint('CHECKED')\n"
    )
    ex = solo.run(Program("python", mess), FAST)
    assert (ex.status, ex.stdout) == ("ok", "CHECKED\n"), ex
    look = "import os\nprint(sorted(os.listdir('/tmp')), os.listdir('/dev/shm'), os.listdir('.'))\n"
    ex2 = solo.run(Program("python", look), FAST)
    assert (ex2.status, ex2.stdout) == ("ok", "['run'] [] ['main.py']\n"), ex2
    assert os.path.isdir("/usr/bin")  # the link's target on the host is untouched

"""``POST /run_code`` in SandboxFusion's shapes, posted the way verl and ROLL post."""

from __future__ import annotations

import base64

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sandbox.types import Execution, Limits, Program
from service.routes.run_code import router
from tests.verifiers.code.local_runner import SubprocessTestRunner, real_sandbox_runner


def _app(runner) -> TestClient:
    app = FastAPI()
    app.include_router(router)
    app.state.sandbox = runner
    return TestClient(app)


@pytest.fixture(scope="module")
def client():
    runner = real_sandbox_runner() or SubprocessTestRunner()
    with _app(runner) as c:
        yield c
    runner.close()


def verl_body(code: str, stdin: str = "", language: str = "python", **kw) -> dict:
    """Exactly what verl's sandbox_fusion client posts per test case."""
    body = {
        "code": code,
        "stdin": stdin,
        "compile_timeout": 10,
        "run_timeout": 10,
        "memory_limit_MB": 1024,
        "language": language,
        "files": {},
        "fetch_files": [],
    }
    body.update(kw)
    return body


def verl_case_passes(resp: dict, expected: str) -> bool:
    """verl's pass rule for one case."""
    return (
        resp["status"] == "Success"
        and resp["run_result"]["status"] == "Finished"
        and resp["run_result"]["stdout"].rstrip("\n") == expected.rstrip("\n")
    )


def test_verl_style_success(client) -> None:
    r = client.post("/run_code", json=verl_body("print(int(input()) * 2)", "21\n"))
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"status", "message", "compile_result", "run_result", "executor_pod_name", "files"}
    assert body["run_result"]["return_code"] == 0 and body["compile_result"] is None
    assert isinstance(body["run_result"]["execution_time"], float)
    assert verl_case_passes(body, "42")
    assert not verl_case_passes(body, "41")


def test_roll_style_minimal_body(client) -> None:
    body = client.post("/run_code", json={"code": "print('hi')", "language": "python"}).json()
    assert body["status"] == "Success" and body["run_result"]["stdout"] == "hi\n"


def test_runtime_error_is_failed_with_return_code(client) -> None:
    body = client.post("/run_code", json=verl_body("import sys\nprint('x')\nsys.exit(3)")).json()
    assert body["status"] == "Failed"
    assert body["run_result"]["status"] == "Finished" and body["run_result"]["return_code"] == 3
    assert body["run_result"]["stdout"] == "x\n"
    body = client.post("/run_code", json=verl_body("raise ValueError('boom')")).json()
    assert body["status"] == "Failed" and "ValueError" in body["run_result"]["stderr"]


def test_timeout_is_time_limit_exceeded(client) -> None:
    body = client.post("/run_code", json=verl_body("while True:\n    pass", run_timeout=1)).json()
    assert body["status"] == "Failed"
    assert body["run_result"]["status"] == "TimeLimitExceeded"


def test_cpp_compile_and_run(client) -> None:
    code = '#include <iostream>\nint main(){int a,b;std::cin>>a>>b;std::cout<<a+b<<"\\n";}\n'
    body = client.post("/run_code", json=verl_body(code, "2 3\n", language="cpp")).json()
    assert body["status"] == "Success", body
    assert body["compile_result"]["status"] == "Finished" and body["compile_result"]["return_code"] == 0
    assert body["run_result"]["stdout"] == "5\n"


def test_cpp_compile_error(client) -> None:
    body = client.post("/run_code", json=verl_body("int main( { return 0; }", language="cpp")).json()
    assert body["status"] == "Failed" and body["run_result"] is None
    assert body["compile_result"]["status"] == "Finished" and body["compile_result"]["return_code"] != 0
    assert body["compile_result"]["stderr"]


def test_nodejs(client) -> None:
    code = "const l = require('fs').readFileSync(0, 'utf8').trim(); console.log(Number(l) + 1);"
    body = client.post("/run_code", json=verl_body(code, "41\n", language="nodejs")).json()
    assert body["status"] == "Success" and body["run_result"]["stdout"] == "42\n", body


def test_unknown_language_is_sandbox_error_in_their_shape(client) -> None:
    r = client.post("/run_code", json=verl_body("x", language="cobol"))
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "SandboxError" and body["run_result"] is None
    assert "cobol" in body["message"] and "python" in body["message"]


def test_files_are_placed_beside_the_program(client) -> None:
    files = {"data.csv": base64.b64encode(b"1,2,3\n").decode()}
    code = "print(sum(map(int, open('data.csv').read().split(','))))"
    body = client.post("/run_code", json=verl_body(code, files=files)).json()
    assert body["status"] == "Success" and body["run_result"]["stdout"] == "6\n", body


@pytest.mark.parametrize(
    "files",
    [{"x.txt": "not base64!!"}, {"../escape.txt": ""}, {"/etc/passwd": ""}],
)
def test_bad_files_are_sandbox_errors(client, files) -> None:
    body = client.post("/run_code", json=verl_body("print(1)", files=files)).json()
    assert body["status"] == "SandboxError" and body["message"]


def test_fetch_files(client) -> None:
    code = "open('out.txt', 'w').write('result')"
    body = client.post("/run_code", json=verl_body(code, fetch_files=["out.txt"])).json()
    from service.routes.run_code import _PROGRAM_HAS_FETCH

    if not _PROGRAM_HAS_FETCH:
        assert body["status"] == "SandboxError" and "fetch_files" in body["message"]
    else:
        assert body["status"] == "Success", body
        assert base64.b64decode(body["files"]["out.txt"]) == b"result"


def test_missing_code_is_422(client) -> None:
    assert client.post("/run_code", json={"language": "python"}).status_code == 422


class _BrokenRunner:
    name = "broken"

    def __init__(self, raise_: bool) -> None:
        self.raise_ = raise_

    def run(self, program: Program, limits: Limits) -> Execution:
        if self.raise_:
            raise RuntimeError("backend exploded")
        return Execution("sandbox_error", None, "", "", 0.0, message="no free sandbox slot")

    def close(self) -> None:
        pass


@pytest.mark.parametrize("raise_", [False, True])
def test_sandbox_failure_is_sandbox_error_never_a_silent_zero(raise_: bool) -> None:
    with _app(_BrokenRunner(raise_)) as c:
        body = c.post("/run_code", json=verl_body("print(1)")).json()
    assert body["status"] == "SandboxError"
    assert ("exploded" if raise_ else "slot") in body["message"]


def test_no_sandbox_configured() -> None:
    with _app(None) as c:
        body = c.post("/run_code", json=verl_body("print(1)")).json()
    assert body["status"] == "SandboxError" and "sandbox" in body["message"]


def test_limits_translate() -> None:
    from service.routes.run_code import RunCodeRequest, build_program

    program, limits = build_program(
        RunCodeRequest(code="x", memory_limit_MB=-1, run_timeout=3, compile_timeout=7)
    )
    assert limits.memory_mb == 1024 and limits.wall_time_s == 3 and limits.compile_time_s == 7
    program, limits = build_program(RunCodeRequest(code="x", language="nodejs", memory_limit_MB=256))
    assert program.language == "javascript" and limits.memory_mb == 256

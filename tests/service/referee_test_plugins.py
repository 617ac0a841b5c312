"""Verifiers that exist only to exercise the service's execution model (loaded as a plugin).

They are real registered verifiers run by the real pool; what they do on purpose (sleep past the
timeout, allocate past the memory limit, kill their own process) is what a pathological input
does to a math parser, made deterministic.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from verifiers import Verdict, register


@dataclass(frozen=True)
class EchoConfig:
    case_sensitive: bool = True


@register("test_echo", config=EchoConfig, component="accuracy", version="1")
def test_echo(completion: str, reference: object, config: EchoConfig) -> Verdict:
    """Correct when the completion equals the reference."""
    a, b = completion.strip(), str(reference).strip()
    if not config.case_sensitive:
        a, b = a.lower(), b.lower()
    if not a:
        return Verdict("no_answer", 0.0)
    return Verdict("ok" if a == b else "wrong", 1.0 if a == b else 0.0, extracted=a)


@dataclass(frozen=True)
class SleepConfig:
    seconds: float = 60.0


@register("test_sleep", config=SleepConfig, component="accuracy", version="1")
def test_sleep(completion: str, reference: object, config: SleepConfig) -> Verdict:
    """Spins (CPU) for `seconds`, like a pathological expression does."""
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:
        pass
    return Verdict("ok", 1.0)


@dataclass(frozen=True)
class NoConfig:
    pass


@register("test_hog", config=NoConfig, component="accuracy", version="1")
def test_hog(completion: str, reference: object, config: NoConfig) -> Verdict:
    """Allocates without bound."""
    blocks = []
    while True:
        blocks.append(bytearray(64 << 20))


@register("test_die", config=NoConfig, component="accuracy", version="1")
def test_die(completion: str, reference: object, config: NoConfig) -> Verdict:
    """Kills its own process, like a segfault in a native extension."""
    os._exit(3)


@register("test_pid", config=NoConfig, component="accuracy", version="1")
def test_pid(completion: str, reference: object, config: NoConfig) -> Verdict:
    """Reports which process scored the item (to show workers are replaced, not reused)."""
    return Verdict("ok", 1.0, extracted=str(os.getpid()))

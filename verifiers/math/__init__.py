"""The ``math`` verifier: is the committed final answer equal to the gold answer?

Steps, one module each: ``extraction`` (which text is the answer), ``guards`` (refuse inputs that
could be slow), ``normalisation`` (canonical text), ``structure`` (value, tuple, set, interval),
``exact`` (fast exact arithmetic), ``symbolic`` (math-verify + sympy for the long tail),
``compare`` (the rules) and ``verifier`` (the registered entry point).
"""

from verifiers.math.config import MathConfig
from verifiers.math.verifier import verify_math, warm_up

__all__ = ["MathConfig", "verify_math", "warm_up"]

"""The fast exact path: arithmetic over Gaussian rationals, without sympy.

Most golds and answers are integers, decimals, fractions, mixed numbers, powers with small
integer exponents or complex numbers ``a+bi``. They are evaluated here exactly (``Fraction``)
in microseconds; anything else (roots, pi, variables) returns ``None`` and goes to the
symbolic path. Sizes are bounded, so no input can make this path slow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath

from verifiers.math.guards import GuardError

MAX_BITS = 20_000  # about 6,000 decimal digits: far past any contest answer
MAX_FACTORIAL = 1_000


@dataclass(frozen=True)
class Gaussian:
    """An exact complex rational ``re + im·i``."""

    re: Fraction
    im: Fraction = Fraction(0)

    def __add__(self, o: Gaussian) -> Gaussian:
        return Gaussian(self.re + o.re, self.im + o.im)

    def __sub__(self, o: Gaussian) -> Gaussian:
        return Gaussian(self.re - o.re, self.im - o.im)

    def __mul__(self, o: Gaussian) -> Gaussian:
        return _bounded(Gaussian(self.re * o.re - self.im * o.im, self.re * o.im + self.im * o.re))

    def __truediv__(self, o: Gaussian) -> Gaussian:
        d = o.re * o.re + o.im * o.im
        if d == 0:
            raise ZeroDivisionError("division by zero")
        return _bounded(
            Gaussian((self.re * o.re + self.im * o.im) / d, (self.im * o.re - self.re * o.im) / d)
        )

    def __neg__(self) -> Gaussian:
        return Gaussian(-self.re, -self.im)

    @property
    def is_real(self) -> bool:
        return self.im == 0


@dataclass(frozen=True)
class ExactValue:
    """A value and whether it came from a terminating decimal literal (an inexact gold)."""

    value: Gaussian
    has_decimal: bool
    decimals: int  # the most digits after a decimal point among its literals


def _bits(f: Fraction) -> int:
    return f.numerator.bit_length() + f.denominator.bit_length()


def _bounded(g: Gaussian) -> Gaussian:
    if _bits(g.re) + _bits(g.im) > MAX_BITS:
        raise GuardError("number too large for exact arithmetic")
    return g


_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>\d+\.\d*\\overline\{\d+\}|\.\d+\\overline\{\d+\}|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+)"
    r"|(?P<cmd>\\frac|\\cdot|\\times|\\div|\\sqrt|\\pi(?![A-Za-z]))"
    r"|(?P<op>[-+*/^()!{}])"
    r"|(?P<i>i)(?![A-Za-z])"
    r")"
)


class _Unsupported(Exception):
    """The text holds something the exact path does not evaluate (→ symbolic path)."""


def _tokenise(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _Unsupported(text[pos : pos + 10])
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def _literal(tok: str) -> tuple[Fraction, int]:
    """Exact value of a number literal and its count of decimals (-1 when exact: repeating)."""
    rep = re.fullmatch(r"(\d*)\.(\d*)\\overline\{(\d+)\}", tok)
    if rep:
        whole, fixed, cycle = rep.group(1) or "0", rep.group(2), rep.group(3)
        base = Fraction(int(whole + fixed), 10 ** len(fixed))
        cyc = Fraction(int(cycle), (10 ** len(cycle) - 1) * 10 ** len(fixed))
        return base + cyc, -1
    mant, _, exp = tok.lower().partition("e")
    if exp and abs(int(exp)) > 400:
        raise GuardError("exponent of a number literal too large")
    value = Fraction(mant) * (Fraction(10) ** int(exp or 0))
    decimals = len(mant.partition(".")[2])
    return value, decimals


class Approx:
    """A complex number to 60 significant digits: the domain of the numeric fast path (roots, pi)."""

    __slots__ = ("z",)

    def __init__(self, z: Any) -> None:
        self.z = z

    def __add__(self, o: Approx) -> Approx:
        return Approx(self.z + o.z)

    def __sub__(self, o: Approx) -> Approx:
        return Approx(self.z - o.z)

    def __mul__(self, o: Approx) -> Approx:
        return Approx(self.z * o.z)

    def __truediv__(self, o: Approx) -> Approx:
        if o.z == 0:
            raise ZeroDivisionError("division by zero")
        return Approx(self.z / o.z)

    def __neg__(self) -> Approx:
        return Approx(-self.z)


_MP = mpmath.MPContext()
_MP.dps = 60
_SAME = _MP.mpf(10) ** -40


def approx_equal(a: Approx, b: Approx) -> bool:
    """Equal to 40 significant digits (relative), the bound the symbolic path uses too."""
    scale = max(abs(a.z), abs(b.z))
    return bool(abs(a.z - b.z) <= _SAME * scale) if scale != 0 else True


Value = Any  # Gaussian in the exact domain, Approx in the numeric one


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], *, numeric: bool = False) -> None:
        self.toks = tokens
        self.pos = 0
        self.decimals = 0
        self.has_decimal = False
        self.numeric = numeric

    # --- the two domains ---

    def const(self, f: Fraction) -> Value:
        if self.numeric:
            return Approx(_MP.mpc(_MP.mpf(f.numerator) / f.denominator))
        return Gaussian(f)

    def unit(self) -> Value:
        return Approx(_MP.mpc(0, 1)) if self.numeric else Gaussian(Fraction(0), Fraction(1))

    def natural(self, v: Value) -> int | None:
        """The value as a non-negative int, or None."""
        if self.numeric:
            z = v.z
            if z.imag != 0 or z.real < 0 or not _MP.isint(z.real) or z.real > 10**6:
                return None
            return int(z.real)
        if v.is_real and v.re.denominator == 1 and v.re >= 0:
            return int(v.re)
        return None

    def integer(self, v: Value) -> int | None:
        n = self.natural(v)
        if n is not None:
            return n
        m = self.natural(-v)
        return -m if m is not None else None

    def power(self) -> Value:
        base = self.postfix()
        tok = self.peek()
        if tok is not None and tok[1] == "^":
            self.take()
            exp = self._exponent()
            if not self.numeric:
                return _power(base, exp)
            n = self.integer(exp)
            if n is not None and abs(n) > 100_000:
                raise GuardError("power too large")
            if base.z == 0 and (n is None or n < 0):
                raise ZeroDivisionError("0 to a negative or complex power")
            if n is None and abs(exp.z) > 10_000:
                raise GuardError("power too large")
            return Approx(base.z ** (n if n is not None else exp.z))
        return base

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise _Unsupported(f"expected {value!r}")
        self.pos += 1
        return tok

    def parse(self) -> Value:
        v = self.expr()
        if self.peek() is not None:
            raise _Unsupported("trailing tokens")
        return v

    def expr(self) -> Value:
        v = self.term()
        while (tok := self.peek()) is not None and tok[1] in "+-":
            self.take()
            rhs = self.term()
            v = v + rhs if tok[1] == "+" else v - rhs
        return v

    def _starts_atom(self, tok: tuple[str, str] | None) -> bool:
        return tok is not None and (
            tok[0] in ("num", "i") or tok[1] in ("(", "{", "\\frac", "\\sqrt", "\\pi")
        )

    def term(self) -> Value:
        v = self.unary()
        while True:
            tok = self.peek()
            if tok is not None and tok[1] in ("*", "\\cdot", "\\times", "/", "\\div"):
                self.take()
                rhs = self.unary()
                v = v / rhs if tok[1] in ("/", "\\div") else v * rhs
            elif self._starts_atom(tok):
                # Implicit product ("4i", "2(3+i)"), but two bare numbers side by side are not one.
                assert tok is not None
                if tok[0] == "num" and self.toks[self.pos - 1][0] == "num":
                    raise _Unsupported("two numbers side by side")
                v = v * self.power()
            else:
                return v

    def unary(self) -> Value:
        tok = self.peek()
        if tok is not None and tok[1] in "+-":
            self.take()
            v = self.unary()
            return -v if tok[1] == "-" else v
        return self.power()

    def _exponent(self) -> Value:
        tok = self.peek()
        if tok is None:
            raise _Unsupported("dangling ^")
        if tok[1] == "{":
            self.take()
            v = self.expr()
            self.take("}")
            return v
        if tok[0] == "num":
            # "2^10" in LaTeX is 2^1·0; only a one-digit exponent is unambiguous.
            self.take()
            if len(tok[1]) != 1:
                raise _Unsupported("multi-digit exponent without braces")
            return self.const(Fraction(int(tok[1])))
        return self.unary()

    def postfix(self) -> Value:
        v = self.atom()
        while (tok := self.peek()) is not None and tok[1] == "!":
            self.take()
            n = self.natural(v)
            if n is None:
                raise _Unsupported("factorial of a non-natural number")
            if n > MAX_FACTORIAL:
                raise _Unsupported("large factorial: left to sympy")
            acc = 1
            for k in range(2, n + 1):
                acc *= k
            v = self.const(Fraction(acc))
        return v

    def atom(self) -> Value:
        kind, val = self.take()
        if kind == "num":
            value, decimals = _literal(val)
            if decimals > 0:
                self.has_decimal = True
                self.decimals = max(self.decimals, decimals)
            nxt = self.peek()
            # A mixed number: an integer directly followed by \frac of two integers (2\frac12 = 5/2).
            if nxt is not None and nxt[1] == "\\frac" and value.denominator == 1 and "." not in val:
                frac = self._frac(mixed=True)
                return self.const(value) + frac
            return self.const(value)
        if kind == "i":
            return self.unit()
        if val == "\\pi":
            if not self.numeric:
                raise _Unsupported("pi: numeric path")
            return Approx(_MP.mpc(_MP.pi))
        if val == "\\sqrt":
            if not self.numeric:
                raise _Unsupported("root: numeric path")
            arg = self._frac_arg()
            return Approx(_MP.sqrt(arg.z))
        if val == "(":
            v = self.expr()
            self.take(")")
            return v
        if val == "{":
            v = self.expr()
            self.take("}")
            return v
        if val == "\\frac":
            self.pos -= 1
            return self._frac(mixed=False)
        raise _Unsupported(val)

    def _frac_arg(self) -> Value:
        tok = self.take()
        if tok[1] == "{":
            v = self.expr()
            self.take("}")
            return v
        if tok[0] == "num" and len(tok[1]) == 1:
            return self.const(Fraction(int(tok[1])))  # \frac1{2}: one digit per bare argument
        raise _Unsupported("fraction argument")

    def _frac(self, *, mixed: bool) -> Value:
        self.take("\\frac")
        tok = self.peek()
        if tok is not None and tok[0] == "num" and re.fullmatch(r"\d\d", tok[1]):
            self.take()  # \frac12: the shorthand of \frac{1}{2}
            return self.const(Fraction(int(tok[1][0]))) / self.const(Fraction(int(tok[1][1])))
        num = self._frac_arg()
        den = self._frac_arg()
        # A mixed number's fraction is of two naturals: 2\frac{1}{2} is 5/2, never 2·(1/2).
        if mixed and (self.natural(num) is None or self.natural(den) is None):
            raise _Unsupported("mixed number with a non-integer fraction")
        return num / den


def _power(base: Gaussian, exp: Gaussian) -> Gaussian:
    if not exp.is_real or exp.re.denominator != 1:
        raise _Unsupported("non-integer exponent")
    n = int(exp.re)
    if base == Gaussian(Fraction(0)) and n < 0:
        raise ZeroDivisionError("0 to a negative power")
    bits = max(_bits(base.re) + _bits(base.im), 2)
    if abs(n) > 100_000 or bits * abs(n) > MAX_BITS * 2:
        raise GuardError("power too large for exact arithmetic")
    result = Gaussian(Fraction(1))
    b = base
    k = abs(n)
    while k:
        if k & 1:
            result = result * b
        k >>= 1
        if k:
            b = b * b
    return Gaussian(Fraction(1)) / result if n < 0 else result


def evaluate(text: str) -> ExactValue | None:
    """Evaluate ``text`` exactly, or return ``None`` when it is outside the fast path.

    Raises:
        GuardError: the value would be too large to compute quickly.

    >>> evaluate(r"2\\frac{1}{2}").value.re
    Fraction(5, 2)
    """
    try:
        parser = _Parser(_tokenise(text))
        if not parser.toks:
            return None
        value = parser.parse()
    except GuardError:
        raise
    except (_Unsupported, ZeroDivisionError, ValueError):
        return None
    return ExactValue(value, parser.has_decimal, parser.decimals)


def evaluate_numeric(text: str) -> Approx | None:
    """Evaluate ``text`` to 60 digits, roots and pi included, or None outside this path.

    Used when the exact path cannot (``\\sqrt{8}``, ``\\frac{\\pi}{2}``): the comparison it
    allows is the one the symbolic path would make (60 digits, 1e-40 relative), without sympy.

    Raises:
        GuardError: the value would be too large to compute quickly.
    """
    try:
        parser = _Parser(_tokenise(text), numeric=True)
        if not parser.toks:
            return None
        value = parser.parse()
    except GuardError:
        raise
    except (_Unsupported, ZeroDivisionError, ValueError, OverflowError):
        return None
    if not (_MP.isfinite(value.z.real) and _MP.isfinite(value.z.imag)):
        return None
    return value

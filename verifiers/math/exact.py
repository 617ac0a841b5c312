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
    r"|(?P<cmd>\\frac|\\cdot|\\times|\\div)"
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


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.pos = 0
        self.decimals = 0
        self.has_decimal = False

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise _Unsupported(f"expected {value!r}")
        self.pos += 1
        return tok

    def parse(self) -> Gaussian:
        v = self.expr()
        if self.peek() is not None:
            raise _Unsupported("trailing tokens")
        return v

    def expr(self) -> Gaussian:
        v = self.term()
        while (tok := self.peek()) is not None and tok[1] in "+-":
            self.take()
            rhs = self.term()
            v = v + rhs if tok[1] == "+" else v - rhs
        return v

    def _starts_atom(self, tok: tuple[str, str] | None) -> bool:
        return tok is not None and (tok[0] in ("num", "i") or tok[1] in ("(", "{", "\\frac"))

    def term(self) -> Gaussian:
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

    def unary(self) -> Gaussian:
        tok = self.peek()
        if tok is not None and tok[1] in "+-":
            self.take()
            v = self.unary()
            return -v if tok[1] == "-" else v
        return self.power()

    def power(self) -> Gaussian:
        base = self.postfix()
        tok = self.peek()
        if tok is not None and tok[1] == "^":
            self.take()
            exp = self._exponent()
            return _power(base, exp)
        return base

    def _exponent(self) -> Gaussian:
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
            return Gaussian(Fraction(int(tok[1])))
        return self.unary()

    def postfix(self) -> Gaussian:
        v = self.atom()
        while (tok := self.peek()) is not None and tok[1] == "!":
            self.take()
            if not v.is_real or v.re.denominator != 1 or v.re < 0:
                raise _Unsupported("factorial of a non-natural number")
            n = int(v.re)
            if n > MAX_FACTORIAL:
                raise _Unsupported("large factorial: left to sympy")
            acc = 1
            for k in range(2, n + 1):
                acc *= k
            v = Gaussian(Fraction(acc))
        return v

    def atom(self) -> Gaussian:
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
                if frac.re < 0:
                    raise _Unsupported("negative fraction in a mixed number")
                return Gaussian(value + frac.re)
            return Gaussian(value)
        if kind == "i":
            return Gaussian(Fraction(0), Fraction(1))
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

    def _frac_arg(self) -> Gaussian:
        tok = self.take()
        if tok[1] == "{":
            v = self.expr()
            self.take("}")
            return v
        if tok[0] == "num" and len(tok[1]) == 1:
            return Gaussian(Fraction(int(tok[1])))  # \frac1{2}: one digit per bare argument
        raise _Unsupported("fraction argument")

    def _frac(self, *, mixed: bool) -> Gaussian:
        self.take("\\frac")
        tok = self.peek()
        if tok is not None and tok[0] == "num" and re.fullmatch(r"\d\d", tok[1]):
            self.take()  # \frac12: the shorthand of \frac{1}{2}
            return Gaussian(Fraction(int(tok[1][0]))) / Gaussian(Fraction(int(tok[1][1])))
        num = self._frac_arg()
        den = self._frac_arg()
        whole = num.is_real and den.is_real and num.re.denominator == 1 and den.re.denominator == 1
        if mixed and not whole:
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

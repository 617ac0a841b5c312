"""Inputs built to make a math checker slow (power towers, huge factorials, deep nesting, long text).

None of them deserves a reward. The unit tests check that each is judged in well under a second
of CPU; ``bench/math_bench.py`` times them against plain math-verify in a subprocess each.
"""

from __future__ import annotations


def _ta(answer: str) -> str:
    return f"<think>Let me work this out.</think>\n<answer>{answer}</answer>"


ADVERSARIAL: list[tuple[str, str, str]] = [
    ("tower 9^9^9^9", _ta("9^{9^{9^9}}"), "3"),
    ("boxed tower", "The answer is $\\boxed{9^{9^{9^{9}}}}$", "3"),
    ("tower of 10s", "$\\boxed{10^{10^{10^{10}}}}$", "10"),
    ("two-level big power", _ta("9^{9^{9}}"), "9"),
    ("bare double superscript", _ta("9^9^9^9"), "9"),
    ("huge factorial", _ta("100000!"), "1"),
    ("iterated factorial", _ta("3!!!!!!"), "6"),
    ("binomial of a power", _ta("\\binom{10^{4000}}{2000}"), "1"),
    ("power of a power", _ta("(10^{4000})^{4000}"), "10"),
    ("huge exponent", _ta("2^{10000000}"), "2"),
    ("deep parentheses", _ta("(" * 300 + "1" + ")" * 300), "1"),
    ("deep fractions", _ta("\\frac{1}{" * 200 + "2" + "}" * 200), "2"),
    ("deep roots", _ta("\\sqrt{" * 200 + "2" + "}" * 200), "2"),
    ("long sum", _ta("+".join(["x^{2}"] * 2000)), "2000x^2"),
    ("long digits", "The answer is " + "9" * 50_000, "9"),
    ("many boxes", " ".join(f"\\boxed{{{k}}}" for k in range(5_000)), "42"),
    ("many open answer tags", "<answer>" * 20_000, "42"),
    ("many open boxes", "\\boxed{" * 20_000, "42"),
    ("long reasoning then answer", "<think>" + "Let x = 3. " * 20_000 + "</think><answer>41</answer>", "42"),
    ("polynomial power", _ta("(x+1)^{4096} - (x+1)^{4095}"), "x(x+1)^{4095}"),
    ("sine of a huge number", _ta("\\sin(10^{4000})"), "0"),
    (
        "big matrix",
        _ta("\\begin{pmatrix}" + "\\\\".join(["&".join(["x"] * 30)] * 30) + "\\end{pmatrix}"),
        "0",
    ),
    ("big set", _ta("\\{" + ",".join(f"\\sqrt{{{k}}}" for k in range(2, 300)) + "\\}"), "\\{1\\}"),
    (
        "sets of radicals",
        _ta(",".join(f"\\sqrt{{{k}}}" for k in range(2, 60))),
        ",".join(f"\\sqrt{{{k + 1}}}" for k in range(2, 60)),
    ),
    ("nested exponentials", _ta("e^{e^{e^{e^{e^{10}}}}}"), "1"),
    ("gamma of huge", _ta("\\Gamma(10^{100})"), "1"),
    ("huge integer literal", _ta("1" * 5000), "1"),
    ("scientific notation abuse", _ta("1e999999999"), "1"),
    ("equation with a big power", _ta("y=(x+1)^{200} - x"), "y=(x+2)^{200}"),
    ("two-variable equation, big power", _ta("x^2 + y^2 = (a+b)^{50}"), "x^2+y^2=(a+b)^{49}"),
    (
        "matrix of big powers",
        _ta("\\begin{pmatrix} x^{99} & 1 \\\\ 2 & 3\\end{pmatrix}"),
        "\\begin{pmatrix} x^{98} & 1 \\\\ 2 & 3\\end{pmatrix}",
    ),
    ("repeating decimal abuse", _ta("0.\\overline{" + "9" * 5000 + "}"), "1"),
]

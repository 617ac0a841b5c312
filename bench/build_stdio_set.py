"""Build ``bench/data/stdio_set.json.gz``: our own stdin/stdout problems, each with four solutions.

Every problem has test inputs (small ones plus one large one), expected outputs from a reference
function written here, and four Python programs: ``correct``, ``wrong`` (a plausible bug),
``slow`` (right answers, hopeless complexity on the large case) and ``crash`` (dies on some case).
The builder checks each solution with plain ``python`` before writing: correct passes every case,
wrong fails at least one, slow overruns ``SLOW_S`` on at least one, crash exits non-zero on one.

Usage: python bench/build_stdio_set.py
"""

from __future__ import annotations

import gzip
import json
import math
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

OUT = Path(__file__).parent / "data" / "stdio_set.json.gz"
SLOW_S = 6.0
R = random.Random(2026)


def nums(n: int, lo: int, hi: int) -> list[int]:
    return [R.randint(lo, hi) for _ in range(n)]


def arr_input(a: list[int]) -> str:
    return f"{len(a)}\n{' '.join(map(str, a))}\n"


def arr_cases(sizes=(1, 5, 8, 50), big=20000, lo=-100, hi=100) -> list[str]:
    return [arr_input(nums(n, lo, hi)) for n in sizes] + [arr_input(nums(big, lo, hi))]


def read_arr(s: str) -> list[int]:
    return list(map(int, s.split()[1:]))


READ = "import sys\ndata = sys.stdin.read().split()\nn = int(data[0])\na = list(map(int, data[1:1 + n]))\n"

PROBLEMS: list[dict] = []


def problem(
    pid: str,
    cases: list[str],
    ref,
    correct: str,
    wrong: str,
    slow: str,
    crash: str,
    checker: str = "lines_rstrip",
) -> None:
    PROBLEMS.append(
        {
            "id": pid,
            "checker": checker,
            "inputs": cases,
            "ref": ref,
            "solutions": {"correct": correct, "wrong": wrong, "slow": slow, "crash": crash},
        }
    )


# 1. a + b
problem(
    "sum2",
    [f"{a} {b}\n" for a, b in [(1, 2), (-5, 5), (0, 0), (10**9, 7)]] + ["300000000 1\n"],
    lambda s: str(sum(map(int, s.split()))),
    "a, b = map(int, input().split())\nprint(a + b)\n",
    "a, b = map(int, input().split())\nprint(a + b + (1 if a < 0 else 0))\n",
    "a, b = map(int, input().split())\nt = 0\nfor _ in range(abs(a)):\n    t += 1 if a > 0 else -1\nprint(t + b)\n",
    "a, b = map(int, input().split())\nprint(a // b + a + b - a // b)\n",
)
# 2. sum of array
problem(
    "sum_array",
    arr_cases(sizes=(1, 3, 10, 100)),
    lambda s: str(sum(read_arr(s))),
    READ + "print(sum(a))\n",
    READ + "print(sum(a[1:]) if n > 1 else a[0])\n",
    READ
    + "best = 0\nfor i in range(n):\n    best = 0\n    for x in a[: i + 1]:\n        best += x\nprint(best)\n",
    READ + "print(sum(a) // (a[0] - a[0]) if n > 5 else sum(a))\n",
)
# 3. maximum
problem(
    "max_array",
    arr_cases() + [arr_input([-5, -3, -9])],
    lambda s: str(max(read_arr(s))),
    READ + "print(max(a))\n",
    READ + "m = 0\nfor x in a:\n    m = max(m, x)\nprint(m)\n",
    READ + "print([x for x in a if sum(1 for y in a if y > x) == 0][0])\n",
    READ + "print(sorted(a)[n])\n",
)
# 4. count distinct
problem(
    "distinct",
    arr_cases(lo=0, hi=50) + [arr_input(list(range(20000)))],
    lambda s: str(len(set(read_arr(s)))),
    READ + "print(len(set(a)))\n",
    READ + "print(len(set(a[:-1])) + 1)\n",
    READ
    + "seen = []\nfor x in a:\n    if all(y != x for y in seen):\n        seen.append(x)\nprint(len(seen))\n",
    READ + "print(len(set(a)) + a[10])\n",
)
# 5. reverse a string
problem(
    "reverse",
    ["abc\n", "a\n", "racecar\n", "hello world\n", "".join(R.choice("ab") for _ in range(60000)) + "\n"],
    lambda s: s.rstrip("\n")[::-1],
    "print(input()[::-1])\n",
    "s = input()\nprint(s[::-1] if len(s) % 2 else s)\n",
    "s = input()\nr = []\nfor i in range(len(s)):\n    r.append(s[len(s) - 1 - i])\n    size = sum(1 for _ in r)\nprint(''.join(r))\n",
    "s = input()\nprint(s[::-1] if ' ' not in s else s.split()[2])\n",
)
# 6. fibonacci (exact, n <= 90)
problem(
    "fib",
    [f"{n}\n" for n in (1, 2, 10, 50, 38)],
    lambda s: str(_fib(int(s))),
    "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)\n",
    "n = int(input())\na, b = 1, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)\n",
    "def f(n):\n    return n if n < 2 else f(n - 1) + f(n - 2)\nprint(f(int(input())))\n",
    "n = int(input())\nf = [0, 1]\nfor i in range(2, n):\n    f.append(f[-1] + f[-2])\nprint(f[n])\n",
)
# 7. primality
problem(
    "is_prime",
    [f"{n}\n" for n in (1, 2, 9, 97, 1000003)] + ["999999999989\n"],
    lambda s: "YES" if _is_prime(int(s)) else "NO",
    "n = int(input())\nok = n > 1\ni = 2\nwhile i * i <= n:\n    if n % i == 0:\n        ok = False\n        break\n    i += 1\nprint('YES' if ok else 'NO')\n",
    "n = int(input())\nok = True\ni = 2\nwhile i * i <= n:\n    if n % i == 0:\n        ok = False\n        break\n    i += 1\nprint('YES' if ok else 'NO')\n",
    "n = int(input())\nprint('YES' if n > 1 and all(n % d for d in range(2, n)) else 'NO')\n",
    "def f(n, d):\n    return d * d > n or (n % d != 0 and f(n, d + 1))\nn = int(input())\nprint('YES' if n > 1 and f(n, 2) else 'NO')\n",
)
# 8. gcd
problem(
    "gcd",
    [f"{a} {b}\n" for a, b in [(12, 18), (7, 13), (100, 10), (1, 1)]] + ["999999999937 999999999989\n"],
    lambda s: str(math.gcd(*map(int, s.split()))),
    "a, b = map(int, input().split())\nwhile b:\n    a, b = b, a % b\nprint(a)\n",
    "a, b = map(int, input().split())\nprint(min(a, b) if max(a, b) % min(a, b) == 0 else 1)\n",
    "a, b = map(int, input().split())\nd = min(a, b)\nwhile a % d or b % d:\n    d -= 1\nprint(d)\n",
    "a, b = map(int, input().split())\nimport math\nprint(math.gcd(a, b) if a != b else a // (a - b))\n",
)
# 9. sort
problem(
    "sort",
    arr_cases(big=6000),
    lambda s: " ".join(map(str, sorted(read_arr(s)))),
    READ + "print(*sorted(a))\n",
    READ + "print(*sorted(a, key=abs))\n",
    READ
    + "a = a[:]\nfor i in range(n):\n    for j in range(n - 1):\n        if a[j] > a[j + 1]:\n            a[j], a[j + 1] = a[j + 1], a[j]\nfor _ in range(3):\n    for i in range(n):\n        for j in range(n - 1):\n            pass\nprint(*a)\n",
    READ + "a.sort()\nprint(*a[: n // 2], *a[n // 2 :], a[n] if n > 40 else '')\n",
)
# 10. vowels
problem(
    "vowels",
    ["hello\n", "AEIOU\n", "rhythm\n", "Programming Is Fun\n", "ab" * 150000 + "\n"],
    lambda s: str(sum(c in "aeiouAEIOU" for c in s)),
    "print(sum(c in 'aeiouAEIOU' for c in input()))\n",
    "print(sum(c in 'aeiou' for c in input()))\n",
    "s = input()\nt = 0\nfor i in range(len(s)):\n    t = sum(1 for c in s[: i + 1] if c in 'aeiouAEIOU')\nprint(t)\n",
    "s = input()\nprint(sum(c in 'aeiouAEIOU' for c in s) + (0 if s.islower() else int('x')))\n",
)
# 11. palindrome
problem(
    "palindrome",
    ["abba\n", "abc\n", "a\n", "ab\n", "abca\n", "x" * 200000 + "\n"],
    lambda s: "YES" if s.strip() == s.strip()[::-1] else "NO",
    "s = input().strip()\nprint('YES' if s == s[::-1] else 'NO')\n",
    "s = input().strip()\nprint('YES' if s[0] == s[-1] else 'NO')\n",
    "s = input().strip()\nok = all(all(s[j] == s[len(s) - 1 - j] for j in range(i + 1)) for i in range(len(s)))\nprint('YES' if ok else 'NO')\n",
    "s = input().strip()\nprint('YES' if s == s[::-1] and s[1] else 'NO')\n",
)
# 12. factorial mod
problem(
    "factorial_mod",
    [f"{n}\n" for n in (0, 1, 5, 20, 300000)],
    lambda s: str(_fact_mod(int(s))),
    "n = int(input())\nr = 1\nfor i in range(2, n + 1):\n    r = r * i % 1000000007\nprint(r)\n",
    "n = int(input())\nr = 1\nfor i in range(2, n):\n    r = r * i % 1000000007\nprint(r)\n",
    "n = int(input())\nr = 1\nfor i in range(2, n + 1):\n    r = r * i\nprint(r % 1000000007)\n",
    "import sys\nsys.setrecursionlimit(100)\ndef f(n):\n    return 1 if n < 2 else n * f(n - 1) % 1000000007\nprint(f(int(input())))\n",
)
# 13. inversions
problem(
    "inversions",
    arr_cases(big=20000),
    lambda s: str(_inversions(read_arr(s))),
    READ
    + "def ms(a):\n    if len(a) < 2:\n        return a, 0\n    m = len(a) // 2\n    l, x = ms(a[:m])\n    r, y = ms(a[m:])\n    out, i, j, c = [], 0, 0, x + y\n    while i < len(l) and j < len(r):\n        if l[i] <= r[j]:\n            out.append(l[i]); i += 1\n        else:\n            out.append(r[j]); j += 1; c += len(l) - i\n    out += l[i:] + r[j:]\n    return out, c\nprint(ms(a)[1])\n",
    READ + "print(sum(1 for i in range(n - 1) if a[i] > a[i + 1]))\n",
    READ + "print(sum(1 for i in range(n) for j in range(i + 1, n) if a[i] > a[j]))\n",
    READ
    + "def f(a):\n    return 0 if len(a) < 2 else f(a[1:]) + sum(1 for x in a[1:] if x < a[0])\nprint(f(a))\n",
)
# 14. longest strictly increasing subsequence
problem(
    "lis",
    arr_cases(big=20000),
    lambda s: str(_lis(read_arr(s))),
    READ
    + "import bisect\nt = []\nfor x in a:\n    i = bisect.bisect_left(t, x)\n    t[i:i + 1] = [x]\nprint(len(t))\n",
    READ
    + "import bisect\nt = []\nfor x in a:\n    i = bisect.bisect_right(t, x)\n    t[i:i + 1] = [x]\nprint(len(t))\n",
    READ
    + "d = [1] * n\nfor i in range(n):\n    for j in range(i):\n        if a[j] < a[i] and d[j] + 1 > d[i]:\n            d[i] = d[j] + 1\nprint(max(d))\n",
    READ
    + "import bisect\nt = []\nfor x in a:\n    i = bisect.bisect_left(t, x)\n    t[i:i + 1] = [x]\nprint(len(t) // (n % 5))\n",
)
# 15. two-sum exists
problem(
    "two_sum",
    [
        f"{len(a)} {t}\n{' '.join(map(str, a))}\n"
        for a, t in [([1, 2, 3], 5), ([1, 2, 3], 7), ([5], 10), ([5, 5], 10), (nums(12000, 1, 99999), 7)]
    ],
    lambda s: _two_sum(s),
    "import sys\nd = sys.stdin.read().split()\nn, t = int(d[0]), int(d[1])\nseen = set()\nok = False\nfor x in map(int, d[2:2 + n]):\n    if t - x in seen:\n        ok = True\n    seen.add(x)\nprint('YES' if ok else 'NO')\n",
    "import sys\nd = sys.stdin.read().split()\nn, t = int(d[0]), int(d[1])\na = set(map(int, d[2:2 + n]))\nprint('YES' if any(t - x in a for x in a) else 'NO')\n",
    "import sys\nd = sys.stdin.read().split()\nn, t = int(d[0]), int(d[1])\na = list(map(int, d[2:2 + n]))\nprint('YES' if any(a[i] + a[j] == t for i in range(n) for j in range(i + 1, n)) else 'NO')\n",
    "import sys\nd = sys.stdin.read().split()\nn, t = int(d[0]), int(d[1])\na = list(map(int, d[2:2 + n]))\nprint('YES' if a[1] + a[0] == t or any(t - x in set(a[:i]) for i, x in enumerate(a) if i < 50) else 'NO')\n",
)


# 16. prefix-sum range queries
def _rq_input(n: int, q: int) -> str:
    a = nums(n, -100, 100)
    qs = [sorted((R.randint(1, n), R.randint(1, n))) for _ in range(q)]
    return f"{n} {q}\n{' '.join(map(str, a))}\n" + "".join(f"{lo} {hi}\n" for lo, hi in qs)


problem(
    "range_sum",
    [_rq_input(1, 1), _rq_input(5, 3), _rq_input(10, 10), _rq_input(20000, 3000)],
    lambda s: _range_sum(s),
    "import sys\nd = sys.stdin.read().split()\nn, q = int(d[0]), int(d[1])\np = [0]\nfor x in d[2:2 + n]:\n    p.append(p[-1] + int(x))\nout = []\nfor k in range(q):\n    l, r = int(d[2 + n + 2 * k]), int(d[3 + n + 2 * k])\n    out.append(p[r] - p[l - 1])\nprint('\\n'.join(map(str, out)))\n",
    "import sys\nd = sys.stdin.read().split()\nn, q = int(d[0]), int(d[1])\np = [0]\nfor x in d[2:2 + n]:\n    p.append(p[-1] + int(x))\nout = []\nfor k in range(q):\n    l, r = int(d[2 + n + 2 * k]), int(d[3 + n + 2 * k])\n    out.append(p[r] - p[l])\nprint('\\n'.join(map(str, out)))\n",
    "import sys\nd = sys.stdin.read().split()\nn, q = int(d[0]), int(d[1])\na = list(map(int, d[2:2 + n]))\nout = []\nfor k in range(q):\n    l, r = int(d[2 + n + 2 * k]), int(d[3 + n + 2 * k])\n    out.append(sum(a[i] for i in range(l - 1, r)) + sum(0 for _ in range(n) for _ in range(3)))\nprint('\\n'.join(map(str, out)))\n",
    "import sys\nd = sys.stdin.read().split()\nn, q = int(d[0]), int(d[1])\na = list(map(int, d[2:2 + n]))\nout = []\nfor k in range(q):\n    l, r = int(d[2 + n + 2 * k]), int(d[3 + n + 2 * k])\n    out.append(sum(a[l - 1:r]) + a[r])\nprint('\\n'.join(map(str, out)))\n",
)
# 17. count primes <= n
problem(
    "count_primes",
    [f"{n}\n" for n in (1, 2, 10, 49, 121, 1000000)],
    lambda s: str(_count_primes(int(s))),
    "n = int(input())\ns = bytearray([1]) * (n + 1)\ns[0:2] = b'\\x00\\x00'[: min(2, n + 1)]\ni = 2\nwhile i * i <= n:\n    if s[i]:\n        s[i * i::i] = bytearray(len(range(i * i, n + 1, i)))\n    i += 1\nprint(sum(s))\n",
    "n = int(input())\ns = bytearray([1]) * (n + 1)\ns[0:2] = b'\\x00\\x00'[: min(2, n + 1)]\ni = 2\nwhile i * i < n:\n    if s[i]:\n        s[i * i::i] = bytearray(len(range(i * i, n + 1, i)))\n    i += 1\nprint(sum(s))\n",
    "n = int(input())\nprint(sum(1 for k in range(2, n + 1) if all(k % d for d in range(2, k))))\n",
    "n = int(input())\nprint([0, 0, 1, 2, 2, 3, 3, 4, 4, 4, 4][n])\n",
)
# 18. binary representation
problem(
    "binary",
    [f"{n}\n" for n in (0, 1, 5, 255, 10**18)],
    lambda s: bin(int(s))[2:],
    "print(bin(int(input()))[2:])\n",
    "n = int(input())\nr = ''\nwhile n:\n    r = str(n % 2) + r\n    n //= 2\nprint(r)\n",
    "n = int(input())\nk = 0\nwhile k < n:\n    k += 1\nprint(bin(k)[2:])\n",
    "n = int(input())\nprint(bin(n)[2:] if n else int('zero'))\n",
)
# 19. most common word (ties: lexicographically smallest)
problem(
    "common_word",
    [
        "a b a\n",
        "x y\n",
        "the cat the dog the\n",
        "b a\n",
        " ".join(R.choice([f"w{i}" for i in range(300)]) for _ in range(30000)) + "\n",
    ],
    lambda s: _common(s),
    "from collections import Counter\nc = Counter(input().split())\nm = max(c.values())\nprint(min(w for w in c if c[w] == m))\n",
    "from collections import Counter\nprint(Counter(input().split()).most_common(1)[0][0])\n",
    "w = input().split()\nbest = None\nfor x in sorted(w):\n    k = sum(1 for y in w if y == x)\n    if best is None or k > best[0]:\n        best = (k, x)\nprint(best[1])\n",
    "from collections import Counter\nc = Counter(input().split())\nm = max(c.values())\nprint(min(w for w in c if c[w] == m) if len(c) > 2 else None + 1)\n",
)
# 20. balanced parentheses
problem(
    "balanced",
    ["()\n", "(()\n", ")(\n", "(())()\n", "(" * 100000 + ")" * 100000 + "\n"],
    lambda s: "YES" if _balanced(s.strip()) else "NO",
    "d = 0\nok = True\nfor c in input().strip():\n    d += 1 if c == '(' else -1\n    if d < 0:\n        ok = False\nprint('YES' if ok and d == 0 else 'NO')\n",
    "s = input().strip()\nprint('YES' if s.count('(') == s.count(')') else 'NO')\n",
    "s = input().strip()\nwhile '()' in s:\n    s = s.replace('()', '', 1)\nprint('NO' if s else 'YES')\n",
    "import sys\nsys.setrecursionlimit(1000)\ndef f(s, d):\n    return d == 0 if not s else d >= 0 and f(s[1:], d + (1 if s[0] == '(' else -1))\nprint('YES' if f(input().strip(), 0) else 'NO')\n",
)
# 21. lcm of an array
problem(
    "lcm",
    arr_cases(sizes=(1, 2, 5, 10), big=300, lo=1, hi=60),
    lambda s: str(math.lcm(*read_arr(s))),
    READ + "import math\nprint(math.lcm(*a))\n",
    READ + "import math\nr = 1\nfor x in a:\n    r = r * x // math.gcd(r, x) if x % 2 else r\nprint(r)\n",
    READ + "import math\nr = max(a)\nwhile any(r % x for x in a):\n    r += 1\nprint(r)\n",
    READ + "import math\nprint(math.lcm(*a) // (n - 1))\n",
)
# 22. modular power
problem(
    "powmod",
    [f"{a} {b} {m}\n" for a, b, m in [(2, 10, 1000), (3, 0, 7), (5, 3, 13), (10, 18, 7)]]
    + ["7 100000000000 1000000007\n"],
    lambda s: str(pow(*map(int, s.split()))),
    "a, b, m = map(int, input().split())\nprint(pow(a, b, m))\n",
    "a, b, m = map(int, input().split())\nprint(pow(a, b - 1, m) * a % m if b else 0)\n",
    "a, b, m = map(int, input().split())\nr = 1\nfor _ in range(b):\n    r = r * a % m\nprint(r)\n",
    "a, b, m = map(int, input().split())\nprint(pow(a, b, m) if b < 10**6 else [][0])\n",
)
# 23. digit sum of a big number
problem(
    "digit_sum",
    ["0\n", "12345\n", "9999\n", "1000000\n", "".join(R.choice("0123456789") for _ in range(60000)) + "\n"],
    lambda s: str(sum(map(int, s.strip()))),
    "print(sum(map(int, input().strip())))\n",
    "print(sum(map(int, input().strip()[1:])))\n",
    "s = input().strip()\nt = 0\nfor i in range(len(s)):\n    t = sum(map(int, s[: i + 1]))\nprint(t)\n",
    "import sys\nsys.set_int_max_str_digits(100)\nn = int(input())\nprint(sum(map(int, str(n))))\n",
)
# 24. second largest distinct
problem(
    "second_max",
    [arr_input(a) for a in ([1, 2], [5, 5, 4], [3, 1, 2, 3], [10, -1, 7])]
    + [arr_input(nums(15000, -30000, 30000))],
    lambda s: str(sorted(set(read_arr(s)))[-2]),
    READ + "print(sorted(set(a))[-2])\n",
    READ + "print(sorted(a)[-2])\n",
    READ
    + "u = []\nfor x in a:\n    seen = 0\n    for y in a:\n        seen += y == x\n    if x not in u:\n        u.append(x)\nprint(sorted(u)[-2])\n",
    READ + "print(sorted(set(a))[-2] if n != 2 else sorted(set(a))[-3])\n",
)
# 25. run-length encoding
problem(
    "rle",
    [
        "aaabcc\n",
        "a\n",
        "abc\n",
        "zzzzzzzzzz\n",
        "".join(R.choice("ab") * R.randint(1, 3) for _ in range(60000)) + "\n",
    ],
    lambda s: _rle(s.strip()),
    "s = input().strip()\nout = []\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n    out.append(s[i] + str(j - i))\n    i = j\nprint(''.join(out))\n",
    "s = input().strip()\nout = []\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n    out.append(s[i] + (str(j - i) if j - i > 1 else ''))\n    i = j\nprint(''.join(out))\n",
    "s = input().strip()\nout = []\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n    out.append(s[i] + str(j - i))\n    size = sum(len(p) for p in out)\n    i = j\nprint(''.join(out))\n",
    "s = input().strip()\nout = []\ni = 0\nwhile i < len(s):\n    j = i\n    while s[j] == s[i]:\n        j += 1\n    out.append(s[i] + str(j - i))\n    i = j\nprint(''.join(out))\n",
)
# 26. caesar shift
problem(
    "caesar",
    [
        "3\nabc\n",
        "1\nxyz\n",
        "26\nhello\n",
        "13\nabcdefghijklmnopqrstuvwxyz\n",
        "25\n" + "".join(R.choice("abc") for _ in range(50000)) + "\n",
    ],
    lambda s: _caesar(s),
    "k = int(input())\nprint(''.join(chr((ord(c) - 97 + k) % 26 + 97) for c in input().strip()))\n",
    "k = int(input())\nprint(''.join(chr(ord(c) + k) for c in input().strip()))\n",
    "k = int(input())\ns = input().strip()\nr = []\nfor c in s:\n    for _ in range(k + 26 * 100):\n        c = chr((ord(c) - 97 + 1) % 26 + 97)\n    r.append(c)\nprint(''.join(r))\n",
    "k = int(input())\ns = input().strip()\nprint(''.join('abcdefghijklmnopqrstuvwxyz'[ord(c) - 97 + k] for c in s))\n",
)
# 27. pairs with sum divisible by k
problem(
    "div_pairs",
    [
        f"{len(a)} {k}\n{' '.join(map(str, a))}\n"
        for a, k in [
            ([1, 2, 3, 4], 3),
            ([5], 5),
            ([2, 2, 2], 2),
            ([1, 3, 5, 7], 4),
            (nums(20000, 1, 1000), 7),
        ]
    ],
    lambda s: _div_pairs(s),
    "import sys\nd = sys.stdin.read().split()\nn, k = int(d[0]), int(d[1])\nc = [0] * k\ntotal = 0\nfor x in map(int, d[2:2 + n]):\n    total += c[(-x) % k]\n    c[x % k] += 1\nprint(total)\n",
    "import sys\nd = sys.stdin.read().split()\nn, k = int(d[0]), int(d[1])\nc = [0] * k\ntotal = 0\nfor x in map(int, d[2:2 + n]):\n    c[x % k] += 1\n    total += c[(-x) % k] - 1\nprint(total)\n",
    "import sys\nd = sys.stdin.read().split()\nn, k = int(d[0]), int(d[1])\na = list(map(int, d[2:2 + n]))\nprint(sum(1 for i in range(n) for j in range(i + 1, n) if (a[i] + a[j]) % k == 0))\n",
    "import sys\nd = sys.stdin.read().split()\nn, k = int(d[0]), int(d[1])\nc = [0] * k\ntotal = 0\nfor x in map(int, d[2:2 + n]):\n    total += c[k - x % k]\n    c[x % k] += 1\nprint(total)\n",
)
# 28. maximum subarray sum
problem(
    "max_subarray",
    arr_cases(big=20000) + [arr_input([-3, -1, -2])],
    lambda s: str(_kadane(read_arr(s))),
    READ
    + "best = cur = a[0]\nfor x in a[1:]:\n    cur = max(x, cur + x)\n    best = max(best, cur)\nprint(best)\n",
    READ + "best = cur = 0\nfor x in a:\n    cur = max(0, cur + x)\n    best = max(best, cur)\nprint(best)\n",
    READ + "print(max(sum(a[i:j + 1]) for i in range(n) for j in range(i, n)))\n",
    READ
    + "best = cur = a[0]\nfor i in range(1, n + 1):\n    cur = max(a[i], cur + a[i])\n    best = max(best, cur)\nprint(best)\n",
)
# 29. stairs (1 or 2 steps) mod 1e9+7
problem(
    "stairs",
    [f"{n}\n" for n in (1, 2, 3, 10, 400000)],
    lambda s: str(_stairs(int(s))),
    "n = int(input())\na, b = 1, 1\nfor _ in range(n):\n    a, b = b, (a + b) % 1000000007\nprint(a)\n",
    "n = int(input())\na, b = 1, 2\nfor _ in range(n):\n    a, b = b, (a + b) % 1000000007\nprint(a)\n",
    "n = int(input())\nf = [1] + [0] * n\nfor i in range(1, n + 1):\n    f[i] = sum(f[j] for j in range(i) if i - j <= 2) % 1000000007\nprint(f[n])\n",
    "n = int(input())\nf = [1, 1] + [0] * (n - 1)\nfor i in range(2, n + 1):\n    f[i] = (f[i - 1] + f[i - 2]) % 1000000007\nprint(f[n] if n > 1 else f[n + 5])\n",
)


# 30. anagrams
def _shuffled_pair(n: int) -> str:
    a = [R.choice("ab") for _ in range(n)]
    b = a[:]
    R.shuffle(b)
    return "".join(a) + "\n" + "".join(b) + "\n"


problem(
    "anagram",
    [
        "listen\nsilent\n",
        "abc\nabd\n",
        "a\na\n",
        "ab\nba\n",
        "aab\nabb\n",
        _shuffled_pair(30000),
    ],
    lambda s: "YES" if sorted(s.split()[0]) == sorted(s.split()[1]) else "NO",
    "a = input().strip()\nb = input().strip()\nprint('YES' if sorted(a) == sorted(b) else 'NO')\n",
    "a = input().strip()\nb = input().strip()\nprint('YES' if set(a) == set(b) else 'NO')\n",
    "a = input().strip()\nb = input().strip()\nok = len(a) == len(b) and all(sum(1 for c in a if c == a[i]) == sum(1 for c in b if c == a[i]) for i in range(len(a)))\nprint('YES' if ok else 'NO')\n",
    "a = input().strip()\nb = input().strip()\nprint('YES' if sorted(a) == sorted(b) else 'NO'[len(a)])\n",
)
# 31. mean with tolerance (floats checker)
problem(
    "mean",
    arr_cases(sizes=(1, 3, 7, 10), big=20000),
    lambda s: f"{sum(read_arr(s)) / len(read_arr(s)):.6f}",
    READ + "print(f'{sum(a) / n:.9f}')\n",
    READ + "print(sum(a) // n)\n",
    READ
    + "m = 0.0\nfor i in range(n):\n    t = 0\n    for x in a[: i + 1]:\n        t += x\n    m = t / (i + 1)\nprint(m)\n",
    READ + "print(sum(a) / (n - 1) if n > 1 else a[0] / 0)\n",
    checker="floats",
)


# 32. matrix transpose (line-oriented output)
def _matrix(r: int, c: int) -> str:
    return f"{r} {c}\n" + "".join(" ".join(str(R.randint(0, 9)) for _ in range(c)) + "\n" for _ in range(r))


problem(
    "transpose",
    [_matrix(1, 1), _matrix(2, 3), _matrix(3, 2), _matrix(4, 4), _matrix(150, 150)],
    lambda s: _transpose(s),
    "r, c = map(int, input().split())\nm = [input().split() for _ in range(r)]\nprint('\\n'.join(' '.join(m[i][j] for i in range(r)) for j in range(c)))\n",
    "r, c = map(int, input().split())\nm = [input().split() for _ in range(r)]\nprint('\\n'.join(' '.join(m[j][i] for i in range(min(r, c))) for j in range(min(r, c))))\n",
    "r, c = map(int, input().split())\nm = [input().split() for _ in range(r)]\nout = []\nfor j in range(c):\n    row = []\n    for i in range(r):\n        for _ in range(r * c // 2):\n            pass\n        row.append(m[i][j])\n    out.append(' '.join(row))\nprint('\\n'.join(out))\n",
    "r, c = map(int, input().split())\nm = [input().split() for _ in range(r)]\nprint('\\n'.join(' '.join(m[i][j] for i in range(r)) for j in range(c + (r == 2))))\n",
)


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


def _fact_mod(n: int) -> int:
    r = 1
    for i in range(2, n + 1):
        r = r * i % 1_000_000_007
    return r


def _inversions(a: list[int]) -> int:
    # Fenwick tree over ranks
    ranks = {v: i + 1 for i, v in enumerate(sorted(set(a)))}
    tree = [0] * (len(ranks) + 1)
    inv = 0
    for seen, x in enumerate(a):
        r = ranks[x]
        i, le = r, 0
        while i > 0:
            le += tree[i]
            i -= i & -i
        inv += seen - le
        i = r
        while i < len(tree):
            tree[i] += 1
            i += i & -i
    return inv


def _lis(a: list[int]) -> int:
    import bisect

    tails: list[int] = []
    for x in a:
        i = bisect.bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(tails)


def _two_sum(s: str) -> str:
    d = s.split()
    n, t = int(d[0]), int(d[1])
    a = list(map(int, d[2 : 2 + n]))
    c = Counter(a)
    return "YES" if any((t - x in c) and (t - x != x or c[x] > 1) for x in c) else "NO"


def _range_sum(s: str) -> str:
    d = list(map(int, s.split()))
    n, q = d[0], d[1]
    a = d[2 : 2 + n]
    out = []
    for k in range(q):
        lo, hi = d[2 + n + 2 * k], d[3 + n + 2 * k]
        out.append(str(sum(a[lo - 1 : hi])))
    return "\n".join(out)


def _count_primes(n: int) -> int:
    if n < 2:
        return 0
    sieve = [True] * (n + 1)
    sieve[0] = sieve[1] = False
    for i in range(2, math.isqrt(n) + 1):
        if sieve[i]:
            for j in range(i * i, n + 1, i):
                sieve[j] = False
    return sum(sieve)


def _common(s: str) -> str:
    c = Counter(s.split())
    m = max(c.values())
    return min(w for w in c if c[w] == m)


def _balanced(s: str) -> bool:
    d = 0
    for ch in s:
        d += 1 if ch == "(" else -1
        if d < 0:
            return False
    return d == 0


def _rle(s: str) -> str:
    out = []
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out.append(f"{s[i]}{j - i}")
        i = j
    return "".join(out)


def _caesar(s: str) -> str:
    k, text = s.split("\n")[0], s.split("\n")[1]
    return "".join(chr((ord(c) - 97 + int(k)) % 26 + 97) for c in text.strip())


def _div_pairs(s: str) -> str:
    d = list(map(int, s.split()))
    n, k = d[0], d[1]
    c = Counter(x % k for x in d[2 : 2 + n])
    total = 0
    for r, cnt in c.items():
        o = (-r) % k
        if r < o:
            total += cnt * c.get(o, 0)
        elif r == o:
            total += cnt * (cnt - 1) // 2
    return str(total)


def _kadane(a: list[int]) -> int:
    best = cur = a[0]
    for x in a[1:]:
        cur = max(x, cur + x)
        best = max(best, cur)
    return best


def _stairs(n: int) -> int:
    a, b = 1, 1
    for _ in range(n):
        a, b = b, (a + b) % 1_000_000_007
    return a


def _transpose(s: str) -> str:
    lines = s.strip("\n").split("\n")
    r, c = map(int, lines[0].split())
    m = [line.split() for line in lines[1 : 1 + r]]
    return "\n".join(" ".join(m[i][j] for i in range(r)) for j in range(c))


def _run(program: str, stdin: str, timeout: float) -> tuple[str, int | None, str]:
    try:
        p = subprocess.run(
            [sys.executable, "-c", program], input=stdin, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", None, ""
    return ("ok" if p.returncode == 0 else "crash"), p.returncode, p.stdout


def _matches(got: str, want: str, checker: str) -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from verifiers.code.checkers import output_matches

    return output_matches(got, want, checker)  # type: ignore[arg-type]


def main() -> None:
    out = []
    bad: list[str] = []
    for p in PROBLEMS:
        cases = [{"stdin": s, "stdout": p["ref"](s) + "\n"} for s in p["inputs"]]
        verdicts = {}
        for kind, program in p["solutions"].items():
            results = []
            for c in cases:
                status, _, stdout = _run(program, c["stdin"], SLOW_S)
                results.append(
                    "passed"
                    if status == "ok" and _matches(stdout, c["stdout"], p["checker"])
                    else status
                    if status != "ok"
                    else "failed"
                )
            verdicts[kind] = results
        ok = (
            all(r == "passed" for r in verdicts["correct"])
            and "failed" in verdicts["wrong"]
            and "timeout" in verdicts["slow"]
            and "crash" in verdicts["crash"]
        )
        print(p["id"], "OK" if ok else "BAD", verdicts, flush=True)
        if not ok:
            bad.append(p["id"])
            continue
        out.append(
            {
                "id": p["id"],
                "checker": p["checker"],
                "cases": cases,
                "solutions": p["solutions"],
                "reference_verdicts": verdicts,
            }
        )
    if bad:
        raise SystemExit(f"problems that do not separate their solutions: {bad}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt") as f:
        json.dump(out, f)
    print(f"wrote {len(out)} problems to {OUT}")


if __name__ == "__main__":
    main()

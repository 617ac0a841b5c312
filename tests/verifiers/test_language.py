"""The language verifier: script counting, blanking of notation, shared-script detection, speed."""

from __future__ import annotations

import pickle
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import verifiers
from verifiers.language import (
    LanguageConfig,
    blank_non_language,
    count_languages,
    detect_target_language,
    normalize_language,
    verify_language,
)
from verifiers.types import VerifierInputError

BUILTIN = LanguageConfig()

ZH_WITH_MATH = (
    "<think>首先，设 $x^2 - 5x + 6 = 0$。根据求根公式 \\[x = \\frac{5 \\pm 1}{2}\\]，得到 x_1 = 3。\n"
    "\\begin{align} a &= b + c \\\\ \\text{and so on} \\end{align}\n"
    "用代码验证：\n```python\nimport math\nprint(math.sqrt(4))  # check the root\n```\n"
    "调用 np.roots(coeffs) 和 is_valid 以及 camelCase 变量，参考 https://example.com/docs 或 a.b@c.org。"
    "所以 sin(x) 的值是 0.5，长度 3 cm。</think><answer>3</answer>"
)

# (completion, target, expected score)
SCORE_CASES = [
    (ZH_WITH_MATH, "zh", 1.0),  # formulas, LaTeX, code, identifiers, URL, e-mail, units: all neutral
    (
        "<think>我们先算和。然后 we check the answer carefully。</think>",
        "zh",
        7 / 12,
    ),  # 7 Han, 5 English words
    ("<think>First we add the numbers. Then we check the answer.</think>", "en", 1.0),  # pure English
    (
        "<think>First we add the numbers. Then we check the answer.</think>",
        "zh",
        0.0,
    ),  # English for a zh target
    ("<think>我们先算和，然后检查答案。</think>", "en", 0.0),  # Chinese for an en target
    # Shared script: settled per sentence by the profiles, not per word.
    (
        "<think>Primero sumamos los números. Luego verificamos la respuesta. Then we check it again.</think>",
        "es",
        8 / 13,
    ),  # two Spanish sentences (8 words), one English (5)
    ("<think>Donc nous avons la somme. Ensuite nous vérifions le résultat.</think>", "fr", 1.0),  # French
    (
        "<think>Donc nous avons la somme. Ensuite nous vérifions le résultat.</think>",
        "en",
        0.0,
    ),  # not English
    ("<think>Zuerst berechnen wir die Summe. Dann prüfen wir das Ergebnis.</think>", "de", 1.0),  # German
    (
        "<think>Zuerst berechnen wir die Summe. Dann prüfen wir das Ergebnis.</think>",
        "es",
        0.0,
    ),  # not Spanish
    ("<think>Сначала найдём сумму. Затем проверим ответ.</think>", "ru", 1.0),  # Russian
    ("<think>Сначала найдём сумму. Затем проверим ответ.</think>", "uk", 0.0),  # not Ukrainian
    ("<think>Сначала найдём сумму. Then we check the answer.</think>", "ru", 3 / 8),  # mixed scripts
    # Han is Japanese when kana say so.
    ("<think>まず方程式を解きます。次に答えを確認します。</think>", "ja", 1.0),  # Japanese
    ("<think>まず方程式を解きます。次に答えを確認します。</think>", "zh", 0.0),  # kanji in Japanese sentences
    (
        "<think>まず方程式を解きます。計算結果。次に答えを確認します。</think>",
        "ja",
        1.0,
    ),  # kana-less sentence
    ("<think>我们先算和，然后检查答案。</think>", "ja", 0.0),  # Chinese is not Japanese
    ("<think>まず方程式を解きます。我们先算和。</think>", "ja", 10 / 15),  # a Chinese sentence in Japanese
    ("<think>まず方程式を解きます。我们先算和。</think>", "zh", 5 / 15),  # ... counted as Chinese
    ("<think>먼저 방정식을 풉니다. 답을 확인합니다.</think>", "ko", 1.0),  # Korean, per word
    ("<think>Πρώτα βρίσκουμε το άθροισμα.</think>", "el", 1.0),  # Greek
    ("<think>पहले हम योग निकालते हैं। फिर उत्तर की जाँच करते हैं।</think>", "hi", 1.0),  # Devanagari, vowel signs
    ("<think>ก่อนอื่น เราหาผลรวม แล้วตรวจคำตอบ</think>", "th", 1.0),  # Thai, per run
    ("<think>أولا نحسب المجموع. ثم نتحقق من الإجابة في هذه الخطوة.</think>", "ar", 1.0),  # Arabic
    ("<think>أولا نحسب المجموع. ثم نتحقق من الإجابة في هذه الخطوة.</think>", "fa", 0.0),  # not Persian
    ("<think>ابتدا مجموع را محاسبه می کنیم. سپس پاسخ را بررسی کنیم.</think>", "fa", 1.0),  # Persian
    (
        "<think>Najpierw obliczamy sumę. Potem sprawdzamy odpowiedź, czy jest dobra.</think>",
        "pl",
        1.0,
    ),  # Polish
    ("<think>Önce toplamı hesaplayalım. Sonra cevabı kontrol edelim.</think>", "tr", 1.0),  # Turkish
    ("<think>Đầu tiên ta tính tổng. Sau đó kiểm tra kết quả.</think>", "vi", 1.0),  # Vietnamese
    # Scope: the think block only, unless asked otherwise.
    ("<think>我们先算和。</think><answer>The answer is five</answer>", "zh", 1.0),  # answer not judged
    ("我们先算和。</think>The answer is five", "zh", 1.0),  # think opened in the prompt
    ("No tags here, all English.", "en", 1.0),  # no think block: the whole completion
]


@pytest.mark.parametrize(("completion", "target", "expected"), SCORE_CASES)
def test_language_share(completion: str, target: str, expected: float) -> None:
    verdict = verify_language(completion, target, BUILTIN)
    assert verdict.status == "ok"
    assert verdict.score == pytest.approx(expected)


def test_scope_completion_counts_the_answer_too() -> None:
    completion = "<think>我们先算和。</think><answer>The answer is five</answer>"
    verdict = verify_language(completion, "zh", LanguageConfig(scope="completion"))
    assert verdict.score == pytest.approx(5 / 9)  # 5 Han characters, 4 English words


# (text, what must disappear) — each neutral rule, with a control that stays.
BLANK_CASES = [
    ("词 $a+b$ 词", "a+b"),  # inline dollars
    ("词 $$\\sum_i i$$ 词", "sum"),  # display dollars
    ("词 \\(y=mx\\) 词", "mx"),  # \( \)
    ("词 \\[y=mx\\] 词", "mx"),  # \[ \]
    ("词 \\begin{cases} x & here \\end{cases} 词", "here"),  # environments
    ("词 \\alpha 词", "alpha"),  # commands
    ("词 `inline words` 词", "inline"),  # inline code
    ("词\n```\nfenced words\n```\n词", "fenced"),  # fenced code
    ("词 https://example.com/some/path 词", "example"),  # URL
    ("词 www.example.com 词", "example"),  # bare www URL
    ("词 someone.name@example.org 词", "someone"),  # e-mail
    ("词 numpy.linalg.norm 词", "linalg"),  # dotted identifier
    ("词 solve_quadratic(a) 词", "solve_quadratic"),  # function call
    ("词 np.roots(coeffs) 词", "coeffs"),  # a call's arguments too
    ("词 <think> 词 <|im_end|>", "think"),  # markup and chat tokens
]


@pytest.mark.parametrize(("text", "gone"), BLANK_CASES)
def test_blank_non_language(text: str, gone: str) -> None:
    blanked = blank_non_language(text)
    assert gone not in blanked
    assert blanked.count("词") == 2


def test_costs_in_dollars_are_not_math() -> None:
    # Pandoc's rule: "$5 and $" is not inline math (space before the closing dollar).
    assert "and" in blank_non_language("it costs $5 and $10")


# (word in an English sentence, counted?) — the notation rules for single tokens.
NOTATION_CASES = [
    ("x", False),  # a variable
    ("x2", False),  # has a digit
    ("2024", False),  # a number
    ("snake_case", False),  # identifier
    ("camelCase", False),  # identifier
    ("GCD", False),  # acronym
    ("sin", False),  # function name
    ("kg", False),  # unit
    ("apple", True),  # a word
    ("Apple", True),  # a capitalised word
]


@pytest.mark.parametrize(("token", "counted"), NOTATION_CASES)
def test_notation_is_neutral(token: str, counted: bool) -> None:
    counts = count_languages(f"我们 {token}")
    assert counts.total == 2 + (1 if counted else 0)


def test_nothing_to_count_is_none() -> None:
    verdict = verify_language("<think>$x^2=4$, x = 2, `x**2`</think><answer>2</answer>", "en", BUILTIN)
    assert (verdict.status, verdict.score) == ("ok", None)
    assert "nothing to count" in verdict.details["reason"]


def test_min_units() -> None:
    assert verify_language("我们", "zh", LanguageConfig(min_units=3)).score is None
    assert verify_language("我们好", "zh", LanguageConfig(min_units=3)).score == 1.0


def test_no_target_is_none() -> None:
    verdict = verify_language("any text", None, BUILTIN)
    assert verdict.score is None and verdict.details["reason"]


@pytest.mark.parametrize(
    ("code", "normalized"),
    [("zh", "zh"), ("zh-CN", "zh"), ("pt_BR", "pt"), ("EN", "en"), (" ja ", "ja")],
)
def test_language_codes_normalize(code: str, normalized: str) -> None:
    assert normalize_language(code) == normalized


@pytest.mark.parametrize("code", ["xx", "english", "", "z", 7, ["en"]])
def test_unknown_language_is_input_error(code: object) -> None:
    with pytest.raises(VerifierInputError):
        verify_language("text", code, BUILTIN)


# (prompt, detected language)
DETECT_CASES = [
    ("Find all real numbers x such that $x^2 = 4$.", "en"),  # English with math
    ("求所有满足 $x^2=4$ 的实数 x。", "zh"),  # Chinese with math
    ("次の方程式を解いてください：$x^2=4$。", "ja"),  # Japanese
    ("Решите уравнение $x^2 = 4$.", "ru"),  # Russian
    ("Résoudre l'équation suivante : $x^2 = 4$.", "fr"),  # French
    ("Encuentra todos los números reales que cumplen la ecuación.", "es"),  # Spanish
    ("Bestimme alle reellen Zahlen, welche die Gleichung lösen.", "de"),  # German
    ("다음 방정식을 푸세요.", "ko"),  # Korean
    ("$x^2 = 4$", None),  # math only: nothing to go on
    ("", None),  # empty
    ("Hmm", None),  # one word without evidence
]


@pytest.mark.parametrize(("prompt", "expected"), DETECT_CASES)
def test_detect_target_language(prompt: str, expected: str | None) -> None:
    assert detect_target_language(prompt) == expected


LANGDETECT_CASES = [
    ("<think>First we add the numbers. Then we check the answer carefully.</think>", "en", 1.0),
    (
        "<think>Primero sumamos todos los números de la lista y luego verificamos que la respuesta final "
        "es correcta para el problema.</think>",
        "es",
        1.0,
    ),  # one long sentence: langdetect needs length
    ("<think>我们先算和，然后检查答案。</think>", "zh", 1.0),  # Han never reaches langdetect
]


@pytest.mark.parametrize(("completion", "target", "expected"), LANGDETECT_CASES)
def test_langdetect_backend(completion: str, target: str, expected: float) -> None:
    pytest.importorskip("langdetect")
    verdict = verify_language(completion, target, LanguageConfig(backend="langdetect"))
    assert verdict.score == pytest.approx(expected)
    assert verdict.details["backend"] == "langdetect"


@pytest.mark.parametrize(
    "adversarial",
    [
        "$" * 200_000,  # unclosed dollars
        "$a" * 100_000,  # many inline-math openers
        "\\(" * 100_000,  # unclosed \(
        "\\begin{a}" * 25_000,  # unclosed environments
        "a" * 200_000 + "@",  # a long run before an @
        "a." * 100_000,  # dotted-identifier prefix
        "中a" * 100_000,  # alternating scripts
        "the " * 50_000,  # a long English text
        "<" * 200_000,  # markup openers
        "http://" + "a" * 200_000,  # a huge URL
    ],
)
def test_long_adversarial_inputs_are_fast(adversarial: str) -> None:
    assert len(adversarial) >= 200_000
    start = time.perf_counter()
    verify_language(adversarial, "en", BUILTIN)
    detect_target_language(adversarial)
    assert time.perf_counter() - start < 5.0  # linear: ~0.2 s; quadratic would take minutes


def test_bad_options() -> None:
    spec = verifiers.get("language")
    for options in ({"backend": "fasttext"}, {"scope": "answer"}, {"min_units": 0}, {"think_tag": "<t>"}):
        with pytest.raises(VerifierInputError):
            spec.build_config(options)


def test_registration() -> None:
    verifiers.load_builtin()
    spec = verifiers.get("language")
    assert spec.fn is verify_language
    assert (spec.component, spec.runs_in) == ("language", "pool")
    config = spec.build_config({"backend": "builtin", "scope": "completion"})
    assert spec.fn("我们先算和。", "zh", config).score == 1.0


def test_config_pickles() -> None:
    config = LanguageConfig(backend="langdetect", scope="completion", min_units=3)
    assert pickle.loads(pickle.dumps(config)) == config


def test_blanking_is_what_makes_math_neutral(monkeypatch: pytest.MonkeyPatch) -> None:
    import verifiers.language.counting as counting

    assert verify_language(ZH_WITH_MATH, "zh", BUILTIN).score == 1.0
    monkeypatch.setattr(counting, "blank_non_language", lambda text: text)
    assert verify_language(ZH_WITH_MATH, "zh", BUILTIN).score < 0.8  # LaTeX, code, URL count as foreign


# (chain of thought, target, expected) — how one sentence's evidence weighs against the whole text.
PRIOR_CASES = [
    # A short sentence with one ambiguous word ("also" is English and German) follows the text.
    ("Zuerst berechnen wir die Summe. Also x = 3. Dann prüfen wir das Ergebnis.", "de", 1.0),
    # A short sentence with clear evidence of its own keeps its language.
    (
        "Zuerst berechnen wir die Summe. Then we check the answer. Dann prüfen wir das Ergebnis.",
        "de",
        10 / 15,
    ),
    # Little evidence in the sentence, but more for German than the French text around it gives.
    ("Comme la fonction est croissante, son minimum est atteint. Weil die Funktion wächst.", "fr", 9 / 13),
    # Nothing to go on anywhere: undecided among the script's languages, which counts for each.
    ("Zürich Berlin Paris.", "de", 1.0),
    ("Zürich Berlin Paris.", "fr", 1.0),
]


@pytest.mark.parametrize(("cot", "target", "expected"), PRIOR_CASES)
def test_sentence_evidence_and_whole_text_prior(cot: str, target: str, expected: float) -> None:
    assert verify_language(cot, target, BUILTIN).score == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gets_a_share_or_none(text: str) -> None:
    verdict = verify_language(text, "en", BUILTIN)
    assert verdict.status == "ok"
    assert verdict.score is None or 0.0 <= verdict.score <= 1.0
    detect_target_language(text)

"""Language-consistency reward: our built-in detector against langdetect, same labelled set, same run.

The labelled set is built here from sentences we wrote: chains of thought in en, zh, es, fr, de,
ru and ja, pure or mixed with another language, plain, math-heavy (LaTeX) or code-heavy (fenced
and inline code). Each sentence carries its language, so the true share of target-language units
of an item is known; the units of a sentence (words, or Han/Kana characters) are counted once with
the verifier's own tokenizer, which both backends share: what differs is only who names the
language of each sentence.

Two sets: "tuned" (the sentences the built-in profiles were adjusted against while developing)
and "held-out" (written afterwards and never tuned on); trust the held-out figures.

Rows:
  builtin              the default (script counting + our stop-word profiles)
  langdetect           the same verifier with backend="langdetect" (per sentence)
  langdetect-naive     what many reward scripts do: detect_langs() on the raw chain of thought,
                       score = probability of the target (no blanking, no per-sentence split)

Prints accuracy (mean absolute error against the true share; share of items within 0.05 and
0.10 of it, per category), throughput (items/s) and median latency per item, and the ratios.

    python bench/language_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed

from verifiers.language import LanguageConfig, count_languages, verify_language

# Plain reasoning sentences. "{m}" is where a bit of math goes (plain, or LaTeX in math-heavy items).
SENTENCES: dict[str, list[str]] = {
    "en": [
        "First, let me understand what the problem is asking for {m}.",
        "We need to find the number of ways to arrange the remaining books on the shelf.",
        "Wait, that does not look right, so let me check the second case again.",
        "If we substitute {m} into the original equation, both sides are equal.",
        "Therefore the total is the sum of the two cases we computed above.",
        "Hmm, maybe there is a simpler approach using symmetry instead of brute force.",
        "Let me double check the arithmetic before I write the final answer.",
        "So the smallest positive value that works is exactly what we found, {m}.",
        "Each student shakes hands with every other student exactly once.",
        "Now I realise the question asks for the probability, not the count.",
    ],
    "es": [
        "Primero, vamos a entender lo que nos pide el problema {m}.",
        "Necesitamos encontrar el número de formas de ordenar los libros que quedan en la estantería.",
        "Espera, eso no parece correcto, así que voy a revisar el segundo caso otra vez.",
        "Si sustituimos {m} en la ecuación original, los dos lados son iguales.",
        "Por lo tanto, el total es la suma de los dos casos que calculamos antes.",
        "Quizás hay un camino más sencillo usando la simetría en lugar de la fuerza bruta.",
        "Voy a comprobar de nuevo las cuentas antes de escribir la respuesta final.",
        "Entonces el menor valor positivo que funciona es justamente el que encontramos, {m}.",
        "Cada estudiante le da la mano a todos los demás exactamente una vez.",
        "Ahora me doy cuenta de que la pregunta pide la probabilidad y no el número de casos.",
    ],
    "fr": [
        "D'abord, essayons de comprendre ce que demande le problème {m}.",
        "Nous devons trouver le nombre de façons de ranger les livres qui restent sur l'étagère.",
        "Attends, cela ne semble pas juste, donc je vais vérifier encore le deuxième cas.",
        "Si nous remplaçons {m} dans l'équation de départ, les deux membres sont égaux.",
        "Donc le total est la somme des deux cas que nous avons calculés plus haut.",
        "Il y a peut-être une méthode plus simple qui utilise la symétrie au lieu de tout essayer.",
        "Je vais revérifier les calculs avant d'écrire la réponse finale.",
        "Ainsi la plus petite valeur positive qui convient est bien celle que nous avons trouvée, {m}.",
        "Chaque élève serre la main de tous les autres élèves exactement une fois.",
        "Je me rends compte maintenant que la question demande la probabilité et pas le nombre.",
    ],
    "de": [
        "Zuerst überlegen wir, wonach die Aufgabe eigentlich fragt {m}.",
        "Wir müssen die Anzahl der Möglichkeiten finden, die restlichen Bücher im Regal anzuordnen.",
        "Moment, das sieht nicht richtig aus, also prüfe ich den zweiten Fall noch einmal.",
        "Wenn wir {m} in die ursprüngliche Gleichung einsetzen, sind beide Seiten gleich.",
        "Daher ist die Gesamtzahl die Summe der beiden Fälle, die wir oben berechnet haben.",
        "Vielleicht gibt es einen einfacheren Weg über die Symmetrie statt alles auszuprobieren.",
        "Ich rechne das noch einmal nach, bevor ich die endgültige Antwort aufschreibe.",
        "Also ist der kleinste positive Wert, der funktioniert, genau der gefundene, {m}.",
        "Jeder Schüler gibt jedem anderen Schüler genau einmal die Hand.",
        "Jetzt merke ich, dass nach der Wahrscheinlichkeit gefragt ist und nicht nach der Anzahl.",
    ],
    "ru": [
        "Сначала разберёмся, что именно спрашивается в задаче {m}.",
        "Нам нужно найти число способов расставить оставшиеся книги на полке.",
        "Подожди, это выглядит неправильно, поэтому проверю второй случай ещё раз.",
        "Если подставить {m} в исходное уравнение, то обе части будут равны.",
        "Значит, общее количество равно сумме двух случаев, которые мы посчитали выше.",
        "Возможно, есть более простой путь через симметрию вместо полного перебора.",
        "Перед тем как записать окончательный ответ, я ещё раз проверю вычисления.",
        "Итак, наименьшее положительное значение, которое подходит, это найденное нами {m}.",
        "Каждый ученик пожимает руку каждому другому ученику ровно один раз.",
        "Теперь я понимаю, что в вопросе нужна вероятность, а не количество.",
    ],
    "zh": [
        "首先，我们来理解题目到底在问什么 {m}。",
        "我们需要求出把剩下的书摆放在书架上的方法数。",
        "等一下，这看起来不对，所以我再检查一遍第二种情况。",
        "如果把 {m} 代入原方程，两边是相等的。",
        "因此总数就是上面算出的两种情况之和。",
        "也许可以利用对称性找到更简单的方法，而不是暴力枚举。",
        "在写出最终答案之前，我再核对一下计算。",
        "所以满足条件的最小正数正是我们找到的 {m}。",
        "每个学生都和其他每个学生恰好握手一次。",
        "现在我意识到题目问的是概率，而不是个数。",
    ],
    "ja": [
        "まず、問題が何を求めているのかを確認します {m}。",
        "残りの本を棚に並べる方法の数を求める必要があります。",
        "待ってください、これは正しくないようなので、二つ目の場合をもう一度確認します。",
        "元の方程式に {m} を代入すると、両辺は等しくなります。",
        "したがって、合計は上で計算した二つの場合の和になります。",
        "総当たりではなく、対称性を使えばもっと簡単に解けるかもしれません。",
        "最終的な答えを書く前に、計算をもう一度見直します。",
        "よって、条件を満たす最小の正の値は、見つけた {m} です。",
        "各生徒は他のすべての生徒とちょうど一回ずつ握手します。",
        "質問が求めているのは個数ではなく確率だと今気づきました。",
    ],
}
LANGUAGES = tuple(SENTENCES)

# Short interjections and clauses, as reasoning models write them between longer sentences.
SHORT: dict[str, list[str]] = {
    "en": ["Wait.", "Hmm, let me see.", "Okay, that works.", "No, that is wrong.", "Right.", "So {m}."],
    "es": ["Espera.", "Hmm, a ver.", "Vale, eso funciona.", "No, eso está mal.", "Bien.", "Entonces {m}."],
    "fr": ["Attends.", "Hmm, voyons.", "D'accord, ça marche.", "Non, c'est faux.", "Bien.", "Donc {m}."],
    "de": ["Moment.", "Hmm, mal sehen.", "Okay, das passt.", "Nein, das ist falsch.", "Gut.", "Also {m}."],
    "ru": [
        "Подожди.",
        "Хм, посмотрим.",
        "Хорошо, это работает.",
        "Нет, это неверно.",
        "Верно.",
        "Итак, {m}.",
    ],
    "zh": ["等等。", "嗯，我看看。", "好的，这样可以。", "不对，这是错的。", "对。", "所以 {m}。"],
    "ja": [
        "待って。",
        "うーん、見てみます。",
        "はい、これで大丈夫です。",
        "いいえ、これは間違いです。",
        "そうです。",
        "つまり {m}。",
    ],
}
LATIN = ("en", "es", "fr", "de")

# Held out: written after the profiles were tuned on the set above, and never tuned on.
HELDOUT_SENTENCES: dict[str, list[str]] = {
    "en": [
        "The triangle has sides of length {m}, so it must be a right triangle.",
        "I think the loop should stop as soon as the list becomes empty.",
        "Let's try small values first and look for a pattern.",
        "Because the function is increasing, its minimum is at the left endpoint.",
        "This means the remainder when dividing by seven is always the same.",
        "Actually, I made a mistake earlier when I copied the coefficient {m}.",
    ],
    "es": [
        "El triángulo tiene lados de longitud {m}, así que debe ser un triángulo rectángulo.",
        "Creo que el bucle debería terminar en cuanto la lista quede vacía.",
        "Probemos primero con valores pequeños y busquemos un patrón.",
        "Como la función es creciente, su mínimo está en el extremo izquierdo.",
        "Esto significa que el resto al dividir entre siete es siempre el mismo.",
        "En realidad, cometí un error antes al copiar el coeficiente {m}.",
    ],
    "fr": [
        "Le triangle a des côtés de longueur {m}, donc c'est forcément un triangle rectangle.",
        "Je pense que la boucle doit s'arrêter dès que la liste devient vide.",
        "Essayons d'abord de petites valeurs et cherchons une régularité.",
        "Comme la fonction est croissante, son minimum est atteint à la borne gauche.",
        "Cela veut dire que le reste de la division par sept est toujours le même.",
        "En fait, je me suis trompé tout à l'heure en recopiant le coefficient {m}.",
    ],
    "de": [
        "Das Dreieck hat die Seitenlängen {m}, also muss es rechtwinklig sein.",
        "Ich denke, die Schleife sollte aufhören, sobald die Liste leer ist.",
        "Probieren wir zuerst kleine Werte aus und suchen ein Muster.",
        "Weil die Funktion wächst, liegt ihr Minimum am linken Rand.",
        "Das bedeutet, dass der Rest bei Division durch sieben immer derselbe ist.",
        "Eigentlich habe ich vorhin beim Abschreiben des Koeffizienten {m} einen Fehler gemacht.",
    ],
    "ru": [
        "У треугольника стороны длины {m}, значит, он прямоугольный.",
        "Думаю, цикл должен остановиться, как только список станет пустым.",
        "Попробуем сначала небольшие значения и поищем закономерность.",
        "Поскольку функция возрастает, её минимум находится на левом конце.",
        "Это означает, что остаток от деления на семь всегда один и тот же.",
        "На самом деле я ошибся раньше, когда переписывал коэффициент {m}.",
    ],
    "zh": [
        "这个三角形的边长是 {m}，所以它一定是直角三角形。",
        "我觉得列表一旦变空，循环就应该停止。",
        "我们先试一些小的数值，看看有没有规律。",
        "因为函数是递增的，所以最小值在左端点取到。",
        "这说明除以七的余数总是相同的。",
        "其实我之前抄系数 {m} 的时候出错了。",
    ],
    "ja": [
        "この三角形の辺の長さは {m} なので、直角三角形のはずです。",
        "リストが空になったらすぐにループを止めるべきだと思います。",
        "まず小さい値で試して、規則性を探してみましょう。",
        "関数は増加しているので、最小値は左端でとります。",
        "これは、七で割った余りがいつも同じだということです。",
        "実は、さっき係数 {m} を写すときに間違えました。",
    ],
}
HELDOUT_SHORT: dict[str, list[str]] = {
    "en": ["Good.", "That's it.", "Let me recount.", "Not quite."],
    "es": ["Listo.", "Eso es todo.", "Vuelvo a contar.", "No del todo."],
    "fr": ["Parfait.", "C'est tout.", "Je recompte.", "Pas tout à fait."],
    "de": ["Passt.", "Das war's.", "Ich zähle nochmal.", "Nicht ganz."],
    "ru": ["Отлично.", "Вот и всё.", "Пересчитаю.", "Не совсем."],
    "zh": ["好。", "就是这样。", "我再数一遍。", "不完全对。"],
    "ja": ["よし。", "以上です。", "数え直します。", "少し違います。"],
}

PLAIN_MATH = ["x = 3", "n = 12", "a + b = 7", "k = 2"]
LATEX_MATH = [
    "$\\frac{n(n-1)}{2} = 45$",
    "$x^2 - 5x + 6 = 0$",
    "\\(\\sum_{k=1}^{n} k^2 = \\frac{n(n+1)(2n+1)}{6}\\)",
    "$\\binom{10}{3} \\cdot 3! = 720$",
]
DISPLAY_MATH = [
    "\n\\[\n\\int_0^1 x^2 \\, dx = \\left[ \\frac{x^3}{3} \\right]_0^1 = \\frac{1}{3}\n\\]\n",
    "\n$$P(A \\mid B) = \\frac{P(B \\mid A) P(A)}{P(B)} = \\frac{0.3 \\cdot 0.5}{0.4}$$\n",
    "\n\\begin{align} f(x) &= \\sin x \\cos x \\\\ &= \\tfrac{1}{2}\\sin 2x \\end{align}\n",
]
CODE_BLOCKS = [
    "\n```python\n# count the arrangements by brute force\nfrom itertools import permutations\n"
    "books = ['a', 'b', 'c', 'd']\ncount = sum(1 for p in permutations(books) if p[0] != 'a')\n"
    "print(count)  # should print 18\n```\n",
    "\n```python\ndef is_valid(n: int) -> bool:\n    # check the condition for every divisor\n"
    "    return all(n % d == 0 for d in range(1, 4))\n\nprint([n for n in range(1, 50) if is_valid(n)])\n```\n",
    " `np.linalg.solve(A, b)` → `total_count` ",
]


@dataclass(frozen=True)
class Item:
    category: str
    target: str
    completion: str
    truth: float


def _units(sentence: str) -> int:
    return count_languages(sentence).total


def _build(
    rng: random.Random,
    pool: dict[str, list[str]] | None = None,
    short_pool: dict[str, list[str]] | None = None,
) -> list[Item]:
    pool = SENTENCES if pool is None else pool
    short = SHORT if short_pool is None else short_pool
    items: list[Item] = []

    def make(category: str, target: str, parts: list[tuple[str, str]], extras: list[str]) -> None:
        # parts: (language, sentence); extras are inserted between sentences and count for nobody.
        chunks: list[str] = []
        target_units = total_units = 0
        for k, (lang, sentence) in enumerate(parts):
            units = _units(sentence)
            total_units += units
            target_units += units if lang == target else 0
            chunks.append(sentence)
            if extras and k < len(extras):
                chunks.append(extras[k])
        cot = " ".join(chunks)
        items.append(
            Item(
                category,
                target,
                f"<think>\n{cot}\n</think>\n<answer>\n18\n</answer>",
                target_units / total_units,
            )
        )

    def sentences(lang: str, count: int, maths: list[str]) -> list[tuple[str, str]]:
        picked = rng.sample(pool[lang], count)
        return [(lang, s.replace("{m}", rng.choice(maths))) for s in picked]

    for target in LANGUAGES:
        others = [lang for lang in LANGUAGES if lang != target]
        for _ in range(3):
            make("pure", target, sentences(target, 6, PLAIN_MATH), [])
        for _ in range(3):
            make("math-heavy", target, sentences(target, 5, LATEX_MATH), rng.sample(DISPLAY_MATH, 3))
        for _ in range(2):
            make("code-heavy", target, sentences(target, 5, PLAIN_MATH), rng.sample(CODE_BLOCKS, 3))
        for _ in range(4):
            other = rng.choice(others)
            parts = sentences(target, 4, PLAIN_MATH) + sentences(other, rng.choice((1, 2)), PLAIN_MATH)
            rng.shuffle(parts)
            make("mixed", target, parts, [])
        for _ in range(2):
            other = rng.choice(others)
            parts = sentences(target, 3, LATEX_MATH) + sentences(other, 2, LATEX_MATH)
            rng.shuffle(parts)
            make("mixed+math", target, parts, rng.sample(DISPLAY_MATH, 2))
        for _ in range(3):
            parts = sentences(target, 3, PLAIN_MATH) + [
                (target, s.replace("{m}", rng.choice(PLAIN_MATH))) for s in rng.sample(short[target], 4)
            ]
            rng.shuffle(parts)
            make("short-sentences", target, parts, [])
        if target in LATIN:
            for _ in range(4):
                other = rng.choice([lang for lang in LATIN if lang != target])
                parts = (
                    sentences(target, 3, PLAIN_MATH)
                    + [(target, rng.choice(short[target]).replace("{m}", "x = 1"))]
                    + [
                        (other, rng.choice(short[other]).replace("{m}", "x = 1")),
                        *sentences(other, 1, PLAIN_MATH),
                    ]
                )
                rng.shuffle(parts)
                make("mixed-latin", target, parts, [])
        for _ in range(2):
            make("foreign", target, sentences(rng.choice(others), 5, PLAIN_MATH), [])
    return items


def _naive_langdetect(completion: str, target: str) -> float:
    # The usual script: langdetect on the raw chain of thought, probability of the target language.
    from langdetect.lang_detect_exception import LangDetectException

    from verifiers.language.langdetect_backend import _factory

    cot = completion.split("<think>")[-1].split("</think>")[0]
    detector = _factory().create()
    detector.append(cot)
    try:
        probabilities = detector.get_probabilities()
    except LangDetectException:
        return 0.0
    aliases = {"zh-cn": "zh", "zh-tw": "zh"}
    return sum(p.prob for p in probabilities if aliases.get(p.lang, p.lang) == target)


def _verifier(backend: str) -> Callable[[str, str], float]:
    config = LanguageConfig(backend=backend)  # type: ignore[arg-type]

    def score(completion: str, target: str) -> float:
        value = verify_language(completion, target, config).score
        return 0.0 if value is None else value

    return score


def _run(name: str, fn: Callable[[str, str], float], items: list[Item], repeat: int) -> dict[str, object]:
    fn(items[0].completion, items[0].target)  # warm-up: profile loading, langdetect's 55 profiles
    latencies: list[float] = []
    scores: list[float] = []
    start = time.perf_counter()
    for r in range(repeat):
        for item in items:
            t0 = time.perf_counter()
            value = fn(item.completion, item.target)
            latencies.append(time.perf_counter() - t0)
            if r == 0:
                scores.append(value)
    elapsed = time.perf_counter() - start
    errors = [abs(s - it.truth) for s, it in zip(scores, items, strict=True)]
    by_category: dict[str, list[float]] = {}
    for err, item in zip(errors, items, strict=True):
        by_category.setdefault(item.category, []).append(err)
    return {
        "name": name,
        "mae": statistics.fmean(errors),
        "within05": sum(e <= 0.05 for e in errors) / len(errors),
        "within10": sum(e <= 0.10 for e in errors) / len(errors),
        "by_category": {c: sum(e <= 0.05 for e in errs) / len(errs) for c, errs in by_category.items()},
        "items_per_s": repeat * len(items) / elapsed,
        "median_ms": statistics.median(latencies) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes over the set for timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sets = {
        "tuned": _build(random.Random(args.seed)),
        "held-out": _build(random.Random(args.seed), HELDOUT_SENTENCES, HELDOUT_SHORT),
    }
    for set_name, items in sets.items():
        _report(set_name, items, args.repeat)


def _report(set_name: str, items: list[Item], repeat: int) -> None:
    categories = sorted({it.category for it in items})
    print(f"\n== {set_name} set: {len(items)} chains of thought in {', '.join(LANGUAGES)}")
    print("categories: " + ", ".join(f"{c}={sum(it.category == c for it in items)}" for c in categories))
    rows = [
        _run("builtin", _verifier("builtin"), items, repeat),
        _run("langdetect", _verifier("langdetect"), items, repeat),
        _run("langdetect-naive", _naive_langdetect, items, repeat),
    ]
    header = f"{'backend':<18}{'MAE':>7}{'<=0.05':>8}{'<=0.10':>8}{'items/s':>10}{'p50 ms':>9}  within 0.05 by category"
    print(header)
    for row in rows:
        cats = " ".join(f"{c}={row['by_category'][c]:.2f}" for c in categories)  # type: ignore[index]
        print(
            f"{row['name']:<18}{row['mae']:>7.3f}{row['within05']:>8.2f}{row['within10']:>8.2f}"
            f"{row['items_per_s']:>10.0f}{row['median_ms']:>9.3f}  {cats}"
        )
    base = rows[0]
    for row in rows[1:]:
        print(
            f"builtin vs {row['name']}: {base['items_per_s'] / row['items_per_s']:.1f}x items/s, "  # type: ignore[operator]
            f"{row['median_ms'] / base['median_ms']:.1f}x lower median latency, "  # type: ignore[operator]
            f"MAE {base['mae']:.3f} vs {row['mae']:.3f}"
        )


if __name__ == "__main__":
    main()

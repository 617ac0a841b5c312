from __future__ import annotations

import pytest

from verifiers.code.extract import canonical_language, extract_program


def test_last_python_block_wins() -> None:
    text = "```python\nprint(1)\n```\nbetter:\n```py\nprint(2)\n```\n"
    assert extract_program(text, "python") == "print(2)\n"
    assert extract_program(text, "python", "first_block") == "print(1)\n"


def test_blocks_of_another_language_are_ignored() -> None:
    text = "```python\nprint(1)\n```\n```cpp\nint main(){}\n```\n"
    assert extract_program(text, "python") == "print(1)\n"
    assert extract_program(text, "cpp") == "int main(){}\n"
    assert extract_program("```bash\nls\n```", "python") is None


def test_untagged_block_only_when_no_tagged_one() -> None:
    assert extract_program("```\nprint(3)\n```", "python") == "print(3)\n"
    assert extract_program("```\nprint(3)\n```\n```python3\nprint(4)\n```", "python") == "print(4)\n"


def test_answer_tag_is_searched_first() -> None:
    text = "```python\nprint('draft')\n```\n<answer>\n```python\nprint('final')\n```\n</answer>\n```python\nprint('after')\n```"
    assert extract_program(text, "python") == "print('final')\n"
    # An answer without a block falls back to the whole completion.
    assert extract_program("<answer>42</answer>\n```python\nprint(1)\n```", "python") == "print(1)\n"


def test_think_is_ignored() -> None:
    text = "<think>```python\nprint('scratch')\n```</think>no code here"
    assert extract_program(text, "python") is None
    assert extract_program("<think>```python\nx\n```</think>```python\ny\n```", "python") == "y\n"


def test_unclosed_or_empty_blocks_are_no_answer() -> None:
    assert extract_program("```python\nprint(1)\n", "python") is None
    assert extract_program("```python\n   \n```", "python") is None
    assert extract_program("just words", "python") is None


def test_answer_tag_and_raw_modes() -> None:
    assert extract_program("<answer>print(5)</answer>", "python", "answer_tag") == "print(5)"
    assert extract_program("```python\nprint(5)\n```", "python", "answer_tag") is None
    assert (
        extract_program("<answer>\n```js\nconsole.log(1)\n```\n</answer>", "javascript", "answer_tag")
        == "console.log(1)\n"
    )
    assert extract_program("<think>hm</think>print(6)", "python", "raw") == "print(6)"


def test_tilde_fences_and_info_strings() -> None:
    assert extract_program("~~~python title=x.py\nprint(7)\n~~~", "python") == "print(7)\n"
    assert extract_program("```{.python}\nprint(8)\n```", "python") == "print(8)\n"


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("py", "python"),
        ("Python3", "python"),
        ("c++", "cpp"),
        ("cxx", "cpp"),
        ("js", "javascript"),
        ("node", "javascript"),
        ("nodejs", "javascript"),
        ("cobol", None),
    ],
)
def test_language_aliases(alias: str, canonical: str | None) -> None:
    assert canonical_language(alias) == canonical

"""The ``format`` verifier (R1-Zero tags, R1 cold-start layout) and helpers others reuse.

``extract_answer_block`` gives accuracy verifiers the contents of ``<answer>`` with the same
code-aware tag rules the format verifier uses.
"""

from verifiers.format.code_regions import blank_code, code_spans
from verifiers.format.tags import chain_of_thought, extract_answer_block
from verifiers.format.verifier import FormatConfig, tag_count_score, verify_format

__all__ = [
    "FormatConfig",
    "blank_code",
    "chain_of_thought",
    "code_spans",
    "extract_answer_block",
    "tag_count_score",
    "verify_format",
]

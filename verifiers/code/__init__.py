"""The ``code`` verifier: program extraction, test shapes, the sandboxed judge harness, scoring.

Importing this package registers ``code``.
"""

from verifiers.code.verifier import CodeConfig, verify_code

__all__ = ["CodeConfig", "verify_code"]

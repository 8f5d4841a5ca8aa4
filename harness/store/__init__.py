"""Store: records on disk and back (JSON Lines, crash-safe; pytest-benchmark files; TensorBoard).

Imports ``harness.core`` and below. See docs/architecture.md.
"""

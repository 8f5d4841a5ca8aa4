"""Analysis: pure functions from stored results (DataFrames) to numbers and verdicts.

Statistics, seeds, compare (matching + verdicts), report tables, hardware comparison, replay
checks. Reads stored results only, never the runner's objects. See docs/architecture.md.
"""

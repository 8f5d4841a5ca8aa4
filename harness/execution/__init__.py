"""Execution: orchestrating runs (sweeps, torchrun launches, replay, the article's experiment,
same-job A/B between git trees, stored baselines).

Imports every layer below it, never ``harness.cli``. See docs/architecture.md.
"""

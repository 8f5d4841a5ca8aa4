"""Render: analysis results -> text, Markdown, HTML, PNG (terminal tables, verdicts, reports).

Imports ``harness.analysis`` and below. See docs/architecture.md.
"""

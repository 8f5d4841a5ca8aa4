"""Confirming a regression: the rule that judges fresh re-measurements, and how their verdicts
fold into the first one (``trainmark ab``, ``baseline check`` and ``compare --confirm``; the
re-measuring itself is ``execution.ab_run.confirm_batches``).

A confirmation re-measures a regression already seen, so its direction is known before it is
measured: one batch of fresh rounds reproduces it when it is slower by a one-sided test at 0.05
and by more than half the threshold. Two-sided at 0.01 *and* beyond the whole threshold again,
as before, missed 2 of 10 real 5% slowdowns: a true 5-6% drop measures below 5% in about half
of its fresh batches, and 8 fresh rounds had to fall on the same side every time. Half the
threshold still keeps a fluke out: an unchanged tree must first be flagged (p < 0.01, beyond the
threshold) and then measure a significant slowdown of half the threshold in fresh processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.analysis import stats
from harness.analysis.compare import Settings, summarize

CONFIRM_ALPHA = 0.05


def confirmation_settings(settings: Settings) -> Settings:
    """How one confirmation batch is judged on its own records: throughput one-sided at
    ``CONFIRM_ALPHA`` (or the gate's alpha, if larger) beyond half the threshold; memory and
    accuracy as the gate judges them."""
    return dataclasses.replace(settings, threshold=settings.threshold / 2, one_sided=True,
                               alpha=max(settings.alpha, CONFIRM_ALPHA))


def apply_confirmations(result: dict[str, Any], confirmations: list[dict[str, Any]],
                        allow_inconclusive: bool = False) -> dict[str, Any]:
    """Fold confirmation batches (``execution.ab_run.confirm_batches``: per regressed config,
    the verdict of each fresh re-measurement, judged with ``confirmation_settings``) into
    ``result``. A regression that every batch flagged again stays one, marked ``confirmed``;
    one that a batch did not flag becomes ``inconclusive`` (seen once, not reproduced: neither a
    pass nor a failure). The summary counts and the exit status follow."""
    if not confirmations:
        return result
    for row in result["rows"]:
        entry = next((c for c in confirmations if c["config"] == row["config"]), None)
        if entry is None or not entry["verdicts"] or row["verdict"] != stats.REGRESSION:
            continue  # not re-measured: the verdict stands
        verdicts = list(entry["verdicts"])
        row["confirmations"] = verdicts
        row["confirmed"] = all(v == stats.REGRESSION for v in verdicts)
        measured = ", ".join(f"{t['change']:+.1%}" + (f" p={t['p_value']:.2g}"
                                                      if t.get("p_value") is not None else "")
                             for t in entry.get("throughput", []) if t.get("change") is not None)
        size = f": {measured}" if measured else ""
        if row["confirmed"]:
            row["why"] += f"; confirmed by {len(verdicts)} fresh re-measurement(s){size}"
        else:
            row["verdict"], row["blocking"] = stats.INCONCLUSIVE, True
            row["why"] += ("; not confirmed when measured again in fresh rounds ("
                           + ", ".join(verdicts) + f"){size}")
    result["summary"].update(summarize(result["rows"], allow_inconclusive),
                             confirmed=sum(bool(r.get("confirmed")) for r in result["rows"]))
    return result

"""The test-only slowdown knob, ``TRAINMARK_INJECT_SLOWDOWN``: how gates are checked to detect a
slowdown. ``core.loop`` applies it (busy waiting after each timed step); this module only reads
it, without torch, so the command line can refuse a malformed value before any worker starts
(otherwise every config would crash in its worker with the same message).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from harness.errors import UserError

SLOWDOWN_ENV = "TRAINMARK_INJECT_SLOWDOWN"


def injected_slowdown(config: Mapping[str, object] | None = None) -> float:
    """The knob's fraction for ``config``. ``F`` slows every config; ``F@FIELD=VALUE`` only
    those whose config field has that value (e.g. ``0.087@optimizer=adam``), so one sweep holds
    slowed and unchanged series side by side, measured at the same moments (history evidence).
    Without ``config``, the fraction as set, whatever the filter."""
    text = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not text:
        return 0.0
    fraction, _, where = text.partition("@")
    field_name, eq, value = where.partition("=")
    try:
        slowdown = float(fraction)
    except ValueError:
        slowdown = -1.0
    if not slowdown >= 0 or (where and not (eq and field_name and value)):
        raise UserError(f"{SLOWDOWN_ENV}={text!r}: expected a fraction >= 0, optionally "
                        "followed by @FIELD=VALUE (e.g. 0.087 or 0.087@optimizer=adam)")
    if where and config is not None and str(config.get(field_name)) != value:
        return 0.0
    return slowdown

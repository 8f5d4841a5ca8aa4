"""``trainmark env``: this machine's provenance (what every record carries) as JSON."""

from __future__ import annotations

import argparse
import json


def configure(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=cmd_env)


def cmd_env(args: argparse.Namespace) -> int:
    from harness.core.devices import best_device, device_status
    from harness.probes import provenance

    info = dict(provenance.collect(best_device()))
    info["devices"] = [{"device": n, "present": ok, "detail": d} for n, ok, d in device_status()]
    print(json.dumps(info, indent=2))
    return 0

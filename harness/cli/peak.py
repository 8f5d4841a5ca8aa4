"""``trainmark peak``: measured GEMM peak FLOP/s per device and dtype (cached per machine) next
to the datasheet peak where one is listed (``probes.peak``)."""

from __future__ import annotations

import argparse
import os

from harness.errors import UserError

DEFAULT_BUDGET_S = 2.0  # probes.peak.DEFAULT_BUDGET_S, named here to keep --help light


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", default="auto", help="comma list: auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, tf32, bf16, fp16")
    p.add_argument("--refresh", action="store_true", help="measure again, replacing the cache")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                   help=f"seconds of measuring per device and dtype (default {DEFAULT_BUDGET_S})")
    p.set_defaults(func=cmd_peak)


def _items(flag: str, text: str) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{flag}: empty list {text!r}")
    return list(dict.fromkeys(items))


def cmd_peak(args: argparse.Namespace) -> int:
    from harness.core.devices import resolve_device
    from harness.probes.peak import DTYPES, cache_path, device_label, measured_peak
    from harness.probes.peak_table import lookup_gpu

    if not args.budget > 0:
        raise UserError(f"--budget must be a positive number of seconds, got {args.budget}")
    devices = [resolve_device(d) for d in _items("--devices", args.devices)]
    dtypes = _items("--dtypes", args.dtypes)
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        if dtype == "tf32" and any(not d.startswith("cuda") for d in devices):
            raise UserError("tf32 exists only on CUDA devices")
    rows = [("device", "name", "dtype", "measured TFLOP/s", "GEMM n", "measured at", "load 1m",
             "datasheet TFLOP/s")]
    for device in dict.fromkeys(devices):
        name = device_label(device)
        entry = lookup_gpu(name) if device.startswith("cuda") else None
        for dtype in dtypes:
            m = measured_peak(device, dtype, refresh=args.refresh, budget_s=args.budget)
            assert m is not None
            sheet = entry.tflops.get(dtype) if entry else None
            rows.append((device, name, dtype, f"{float(m['flops_per_s']) / 1e12:.4g}",
                         str(m["size"]), str(m["measured_at"]), _load(m.get("loadavg_1m")),
                         f"{sheet:g} ({entry.name})" if entry and sheet else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"\ncache: {cache_path()}\nMFU uses the datasheet peak where one is listed, "
          "else the measured one (best of several square GEMMs).\nA load average near or above "
          f"the {os.cpu_count()} CPUs means other work shared the cores: "
          "re-measure with --refresh.")
    return 0


def _load(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"

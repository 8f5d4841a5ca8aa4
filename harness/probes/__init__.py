"""Probes: what the hardware and software are and do, read without training anything.

Telemetry (NVML), memory, peak FLOP/s (measured GEMM + datasheet table) and provenance. Imports
only the foundation (``harness.schema``, ``harness.errors``). See docs/architecture.md.
"""
